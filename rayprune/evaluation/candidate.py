"""Evaluate one candidate: build it, fine-tune briefly, measure accuracy and every cost.

Plain PyTorch; the Ray actors of :mod:`rayprune.evaluation.pool` wrap a
:class:`CandidateEvaluator`. An evaluation never raises for a bad candidate: an exception or a
non-finite accuracy becomes a row with ``status="error"``, the message, and accuracy 0 (the
lowest reward), so one broken candidate cannot crash a search.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
import traceback
from typing import Any, Optional, Sequence

from torch import nn

from ..config import TrainConfig
from ..engine import fine_tune, recalibrate_batchnorm
from ..problem import PruningProblem
from ..pruning.space import KeepRatios

__all__ = ["CandidateEvaluator", "candidate_id"]


def candidate_id(counts: Sequence[int]) -> str:
    """Stable id of a candidate: a hash of its rounded channel counts.

    >>> candidate_id([8, 16])
    '4866b446ad243d7e'
    """
    return hashlib.sha1(",".join(str(int(c)) for c in counts).encode()).hexdigest()[:16]


class CandidateEvaluator:
    """Builds, fine-tunes and evaluates candidates of one :class:`PruningProblem`.

    Identical candidates (same channel counts after rounding, same fine-tune length) are
    evaluated once; later requests get the cached row with ``cached=True``.
    """

    def __init__(self, problem: PruningProblem) -> None:
        self.problem = problem
        self._cache: dict[tuple[str, Optional[int]], dict[str, Any]] = {}

    def build(self, keep_ratios: KeepRatios) -> nn.Module:
        """The physically pruned candidate (fast path)."""
        return self.problem.space.build(keep_ratios)

    def evaluate(
        self,
        keep_ratios: KeepRatios,
        *,
        finetune: Optional[TrainConfig] = None,
        seed: int = 0,
        eval_samples: Optional[int] = None,
    ) -> dict[str, Any]:
        """A result row for ``keep_ratios`` (see ``docs/results.md`` for the columns)."""
        p = self.problem
        ft = finetune if finetune is not None else p.config.search.finetune
        eval_samples = eval_samples if eval_samples is not None else p.config.search.eval_samples
        counts = p.space.keep_counts(keep_ratios)
        cid = candidate_id(counts)
        key = (cid, ft.iterations if ft.iterations is not None else -int(1000 * (ft.epochs or 0)))
        if key in self._cache:
            return {**self._cache[key], "cached": True}
        row: dict[str, Any] = {
            "candidate_id": cid,
            "keep_ratios": [c / g.channels for c, g in zip(counts, p.space.groups)],
            "keep_counts": list(counts),
            "finetune_iterations": ft.iterations,
            "status": "ok",
            "error": None,
            "cached": False,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        timings = {"t_build_s": 0.0, "t_finetune_s": 0.0, "t_eval_s": 0.0, "t_costs_s": 0.0}
        try:
            t0 = time.perf_counter()
            model = p.space.build([c / g.channels for c, g in zip(counts, p.space.groups)])
            t1 = time.perf_counter()
            timings["t_build_s"] = t1 - t0
            costs = p.measure(model)
            t2 = time.perf_counter()
            timings["t_costs_s"] = t2 - t1
            if p.config.pruning.recalibrate_bn:
                recalibrate_batchnorm(model, p.data.x_train)
            if (ft.iterations or 0) > 0 or (ft.epochs or 0) > 0:
                fine_tune(model, p.data, ft.engine_config(), seed=seed)
            t3 = time.perf_counter()
            timings["t_finetune_s"] = t3 - t2
            accuracy = p.accuracy(model, "val", eval_samples)
            timings["t_eval_s"] = time.perf_counter() - t3
            if not math.isfinite(accuracy):
                raise FloatingPointError(f"accuracy is {accuracy}")
            row.update(costs)
            row.update(accuracy=float(accuracy), feasible=p.feasible(costs))
        except Exception as exc:  # a broken candidate is a row, not a crashed run
            row.update(
                status="error",
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}",
                accuracy=0.0,
                feasible=False,
            )
            for name in p.costs:
                row.setdefault(name, None)
        row.update(timings)
        row["t_total_s"] = sum(timings.values())
        self._cache[key] = row
        return dict(row)

    def finalize(
        self, keep_ratios: KeepRatios, *, finetune: Optional[TrainConfig] = None, seed: int = 0, progress: bool = False
    ) -> tuple[nn.Module, dict[str, Any]]:
        """Build the chosen candidate, fine-tune it for the final budget and measure it on val and test."""
        p = self.problem
        ft = finetune if finetune is not None else p.config.search.final_finetune
        model = p.space.build(keep_ratios)
        if p.config.pruning.recalibrate_bn:
            recalibrate_batchnorm(model, p.data.x_train)
        stats = fine_tune(model, p.data, ft.engine_config(), seed=seed, progress=progress)
        costs = p.measure(model)
        summary = {
            "candidate_id": candidate_id(p.space.keep_counts(keep_ratios)),
            "accuracy_val": p.accuracy(model, "val"),
            "accuracy_test": p.accuracy(model, "test"),
            "finetune_seconds": stats.get("seconds"),
            "finetune_iterations": stats.get("iterations"),
            **costs,
            "feasible": p.feasible(costs),
        }
        return model, summary
