"""The evaluator pool's interface in one process, without Ray: the bare loop.

:class:`LocalPool` scores and fine-tunes with a :class:`~rayprune.evaluation.candidate.CandidateEvaluator`
in the calling process, one candidate after the other. It is what the Ray pool is measured against
(benchmarks), and it runs the same search and selection code where Ray is not wanted (tests,
notebooks on one core). Same methods, same rows as :class:`~rayprune.evaluation.pool.EvaluatorPool`.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

from ..config import TrainConfig
from ..costs.registry import QUIET_TIMING_ROUNDS
from ..problem import PruningProblem
from .candidate import CandidateEvaluator
from .score import ScoreSpec

__all__ = ["LocalPool", "DeferredBatch"]


class DeferredBatch:
    """A batch handed to :meth:`LocalPool.submit_batch`: scored on the first :meth:`result`."""

    def __init__(self, score: Callable[[], list[dict[str, Any]]]) -> None:
        self._score: Optional[Callable[[], list[dict[str, Any]]]] = score
        self._rows: list[dict[str, Any]] = []

    def result(self) -> list[dict[str, Any]]:
        if self._score is not None:
            self._rows, self._score = self._score(), None
        return self._rows


class LocalPool:
    """``score_batch`` / ``finalize_many`` of :class:`~rayprune.evaluation.pool.EvaluatorPool`, in process."""

    def __init__(self, problem: PruningProblem) -> None:
        self.problem = problem
        self.evaluator = CandidateEvaluator(problem)
        self.actors = [None]  # one "evaluator", for callers that report the pool's size

    def wait_ready(self) -> list[dict[str, Any]]:
        return []

    def score_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Optional[Sequence[int]] = None,
                    **_: Any) -> list[dict[str, Any]]:
        seeds = list(seeds) if seeds is not None else [0] * len(ratios)
        rows = []
        for r, seed in zip(ratios, seeds):
            wall0 = time.time()
            row = self.evaluator.score(list(r), spec, seed=int(seed))
            row.update(evaluator=0, wall_start=wall0, wall_end=time.time())
            rows.append(row)
        return rows

    def submit_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Optional[Sequence[int]] = None,
                     **_: Any) -> "DeferredBatch":
        """The Ray pool's ``submit_batch`` order without its concurrency: the batch is scored when its
        ``result()`` is first read. A search loop given this as ``submit`` asks for batch k+1 before it
        tells batch k, exactly as it does on the Ray pool, so an overlapping search proposes the same
        candidates in one process as on a cluster."""
        ratios, seeds = [list(r) for r in ratios], (list(seeds) if seeds is not None else None)
        return DeferredBatch(lambda: self.score_batch(ratios, spec, seeds))

    def measure_sequentially(self, ratios: Sequence[Sequence[float]], names: Sequence[str], *,
                             rounds: int = QUIET_TIMING_ROUNDS) -> list[dict[str, float]]:
        p = self.problem
        out = []
        for r in ratios:
            values, raw = p.measure_with_raw(p.space.build(list(r)), names, rounds=rounds)
            out.append({**values, **raw})
        return out

    def finalize_many(self, jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        p = self.problem
        out = []
        for job in jobs:
            t0 = time.time()
            try:
                ft = TrainConfig(**job["finetune"]) if job.get("finetune") else None
                model, summary = self.evaluator.finalize(list(job["keep_ratios"]), seed=int(job.get("seed", 0)),
                                                         finetune=ft)
                if job.get("export_dir"):
                    p.export(model, job["export_dir"], plan=p.space.plan(list(job["keep_ratios"])),
                             summary={**summary, **(job.get("extra") or {})}, torchscript=False)
                    summary["export_path"] = str(job["export_dir"])
                out.append({"status": "ok", "error": None, **summary, "evaluator": 0, "wall_start": t0,
                            "wall_end": time.time()})
            except Exception as exc:  # noqa: BLE001 - reported like the Ray pool reports a failed job
                out.append({"status": "error", "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return out

    def shutdown(self) -> None:
        pass
