"""Score one candidate: build it, measure its costs, score it (adaptive BN or a short fine-tune).

Plain PyTorch; the Ray actors of :mod:`rayprune.evaluation.pool` wrap a
:class:`CandidateEvaluator`, and the bare-loop benchmark calls it directly. A score never raises
for a bad candidate: an exception or a non-finite accuracy becomes a row with ``status="error"``
and the message, so one broken candidate cannot crash a search. Every row has the same columns
whatever its status (:data:`rayprune.results.ROW_SCHEMA`).

Params and MACs come from the exact analytic model when it verified itself on this model
(:attr:`rayprune.costs.AnalyticCosts.exact`; it is the same count a built model gives, tested on
the zoo and on concat/residual models) and are measured otherwise; latency, memory and user costs
are always measured on the built candidate.
"""

from __future__ import annotations

import math
import os
import socket
import time
import traceback
from typing import Any, Optional, Sequence

from torch import nn

from ..config import TrainConfig
from ..costs import ANALYTIC_COSTS
from ..engine import channels_last, fine_tune, recalibrate_batchnorm, wants_channels_last
from ..problem import PruningProblem
from ..pruning.rounding import candidate_id
from ..pruning.space import KeepRatios
from .score import SCORE_CACHE_SIZE, ScoreSpec

__all__ = ["CandidateEvaluator", "candidate_id"]

#: The time split every row records (seconds).
TIMING_COLUMNS = ("t_build_s", "t_costs_s", "t_bn_s", "t_finetune_s", "t_eval_s")


class CandidateEvaluator:
    """Builds and scores candidates of one :class:`PruningProblem`.

    Identical candidates (same channel counts after rounding) scored the same way are measured
    once; later requests get the first row with ``cached=True`` (the last ``cache_size`` distinct
    ones: an older repeat is scored again).
    """

    def __init__(self, problem: PruningProblem, *, cache_size: int = SCORE_CACHE_SIZE) -> None:
        self.problem = problem
        self.cache_size = max(1, int(cache_size))
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        analytic = problem.analytic if problem.analytic.exact else None
        self._analytic_names = [n for n in problem.costs if analytic is not None and n in ANALYTIC_COSTS]
        self._measured = {n: f for n, f in problem.costs.items() if n not in self._analytic_names}
        # pruning removes channels, never layers: the base model decides for every candidate
        self._channels_last = wants_channels_last(problem.base_model, problem.config.evaluation.channels_last)

    def build(self, keep_ratios: KeepRatios) -> nn.Module:
        """The physically pruned candidate (fast path)."""
        return self.problem.space.build(keep_ratios)

    def costs(self, model: nn.Module, counts: Sequence[int]) -> dict[str, float]:
        """Every configured cost of a built candidate (analytic params/MACs where exact; timed costs
        paired with the base model, :meth:`PruningProblem.measure <rayprune.problem.PruningProblem.measure>`)."""
        return self.costs_with_raw(model, counts)[0]

    def costs_with_raw(self, model: nn.Module, counts: Sequence[int]) -> tuple[dict[str, float], dict[str, float]]:
        """:meth:`costs`, and the raw medians of paired timings (the row's ``<cost>_measured`` and
        ``<cost>_base`` columns)."""
        out = {n: float(self.problem.analytic(n, counts)) for n in self._analytic_names}
        raw: dict[str, float] = {}
        if self._measured:
            measured, raw = self.problem.measure_with_raw(model, list(self._measured))
            out.update(measured)
        return {n: out[n] for n in self.problem.costs}, raw

    def score(self, keep_ratios: KeepRatios, spec: ScoreSpec, *, seed: int = 0) -> dict[str, Any]:
        """A result row for ``keep_ratios`` scored by ``spec`` (columns: ``docs/results.md``)."""
        p = self.problem
        counts = p.space.keep_counts(keep_ratios)
        cid = candidate_id(counts)
        key = (cid, spec.key)
        if key in self._cache:
            return {**self._cache[key], "cached": True}
        row: dict[str, Any] = {
            "candidate_id": cid,
            "keep_ratios": [c / g.channels for c, g in zip(counts, p.space.groups)],
            "keep_counts": list(counts),
            "score_kind": spec.kind,
            "score_key": spec.key,
            "finetune_iterations": spec.finetune_iterations,
            "status": "ok",
            "error": None,
            "cached": False,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        timings = dict.fromkeys(TIMING_COLUMNS, 0.0)
        try:
            t = time.perf_counter()
            model = p.space.build(row["keep_ratios"])
            t, timings["t_build_s"] = _lap(t)
            costs, raw = self.costs_with_raw(model, counts)
            t, timings["t_costs_s"] = _lap(t)
            fast = self._channels_last
            if spec.recalibrate_bn or spec.kind == "adaptive_bn":
                with channels_last(model, fast):
                    recalibrate_batchnorm(model, p.data.source("train"), batch_size=spec.bn_batch_size,
                                          max_batches=spec.bn_batches)
                t, timings["t_bn_s"] = _lap(t)
            if spec.kind != "adaptive_bn":
                if (spec.finetune.iterations or 0) > 0 or (spec.finetune.epochs or 0) > 0:
                    fine_tune(model, p.data, spec.finetune, seed=seed, loss_fn=p.objective.loss)
                t, timings["t_finetune_s"] = _lap(t)
            with channels_last(model, fast):
                accuracy = p.accuracy(model, "val", spec.eval_samples)
            t, timings["t_eval_s"] = _lap(t)
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"accuracy is {accuracy}")
            row.update(costs)
            row.update(raw)
            row["accuracy"] = float(accuracy)
        except Exception as exc:  # a broken candidate is a row, not a crashed run
            row.update(status="error", error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
                       accuracy=None)
            for name in [*p.costs, *p.paired_raw_columns]:
                row.setdefault(name, None)
        row.update(timings)
        row["t_total_s"] = sum(timings.values())
        self._cache[key] = row
        if len(self._cache) > self.cache_size:  # dicts keep insertion order: drop the oldest
            del self._cache[next(iter(self._cache))]
        return dict(row)

    def score_many(self, ratios: Sequence[KeepRatios], spec: ScoreSpec, seeds: Sequence[int]) -> list[dict[str, Any]]:
        """:meth:`score` of each candidate, in order (the bare loop the pool is measured against)."""
        return [self.score(r, spec, seed=int(s)) for r, s in zip(ratios, seeds)]

    def finalize(
        self, keep_ratios: KeepRatios, *, finetune: Optional[TrainConfig] = None, seed: int = 0, progress: bool = False
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Build the chosen candidate, fine-tune it for the final budget and measure it on val and test."""
        p = self.problem
        ft = finetune if finetune is not None else p.config.search.final_finetune
        model = p.space.build(keep_ratios)
        fast = self._channels_last
        if p.config.pruning.recalibrate_bn:
            bn = p.config.search.adaptive_bn
            with channels_last(model, fast):
                recalibrate_batchnorm(model, p.data.source("train"), batch_size=bn.batch_size, max_batches=bn.batches)
        stats = fine_tune(model, p.data, ft.engine_config(), seed=seed, progress=progress, loss_fn=p.objective.loss)
        counts = p.space.keep_counts(keep_ratios)
        costs, raw = p.measure_with_raw(model)  # the exported model: every cost measured
        with channels_last(model, fast):
            accuracy_val, accuracy_test = p.accuracy(model, "val"), p.accuracy(model, "test")
        summary = {
            "candidate_id": candidate_id(counts),
            "accuracy_val": accuracy_val,
            "accuracy_test": accuracy_test,
            "finetune_seconds": stats.get("seconds"),
            "finetune_iterations": stats.get("iterations"),
            **costs,
            **raw,
        }
        return model, summary


def _lap(t0: float) -> tuple[float, float]:
    t = time.perf_counter()
    return t, t - t0
