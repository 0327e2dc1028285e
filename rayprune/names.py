"""Names shared across layers, defined once: row stages and statuses, and the search's progress keys.

The same quantity is a key in the search loop's progress dict, in ``tune.report``, a column of the
sweep's ``tune/*/result.json`` and (through :mod:`rayprune.telemetry`, which keeps the Ray metric
names) a series in the Ray dashboard. Import these instead of spelling the strings.

>>> progress_key(LAMBDA, "params"), progress_key(BEST, "params=0.25")
('lambda/params', 'best/params=0.25')
"""

from __future__ import annotations

__all__ = [
    "STAGE_SEARCH", "STAGE_RERANK", "STAGE_FINAL", "STAGE_SELECT", "STATUS_OK", "STATUS_ERROR", "STATUS_SUPERSEDED",
    "EVALUATIONS", "ITERATION", "BEST", "BEST_ACCURACY", "LAMBDA", "VIOLATION_RATE", "progress_key",
    "SELECTION_TRIAL", "IN_MEMORY", "in_memory_name", "is_in_memory",
]

# -- objects handed over in memory (the Python API) -------------------------------------------------
#: prefix of ``model.name`` / ``data.name`` for a model or dataset passed as an object, not a name: it
#: cannot be rebuilt from the config, so it travels with the problem (never imported by name)
IN_MEMORY = "<in-memory>"


def in_memory_name(what: str = "") -> str:
    """``<in-memory> Net`` for an object of class ``Net`` (``<in-memory>`` alone without a label)."""
    return f"{IN_MEMORY} {what}".strip()


def is_in_memory(name: object) -> bool:
    """Whether a config name stands for an object handed over in memory.

    >>> is_in_memory(in_memory_name("Net")), is_in_memory("small_cnn")
    (True, False)
    """
    return isinstance(name, str) and name.startswith(IN_MEMORY)

# -- rows (candidates.parquet: the ``stage`` and ``status`` columns) --------------------------------
#: a candidate scored by a search (the cheap score)
STAGE_SEARCH = "search"
#: a shortlisted candidate re-scored after a short fine-tune
STAGE_RERANK = "rerank"
#: an exported model after the long fine-tune (one row per level)
STAGE_FINAL = "final"
#: the constant stage of the selection writer (its rows carry rerank/final themselves)
STAGE_SELECT = "select"
#: the ``trial_id`` of the rows written by the selection (re-rank and finals) of a run
SELECTION_TRIAL = "selection"
STATUS_OK = "ok"
STATUS_ERROR = "error"
#: a final fine-tune that ran and is not exported: a model at least as good on validation serves its level(s)
STATUS_SUPERSEDED = "superseded"

# -- progress (the search loop's metrics, tune.report, result.json) ---------------------------------
EVALUATIONS = "evaluations"
ITERATION = "iteration"
#: best feasible search score over all levels
BEST_ACCURACY = "best_accuracy"
#: per level: ``best/<level>``
BEST = "best"
#: per constraint: the Lagrange multiplier (crl), ``lambda/<constraint>``
LAMBDA = "lambda"
#: per constraint: share of the last batch over its budget (crl), ``violation_rate/<constraint>``
VIOLATION_RATE = "violation_rate"


def progress_key(prefix: str, name: str) -> str:
    """``<prefix>/<name>``: a per-level or per-constraint progress key."""
    return f"{prefix}/{name}"
