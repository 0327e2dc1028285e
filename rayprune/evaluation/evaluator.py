"""The evaluator actor: one :class:`~rayprune.evaluation.candidate.CandidateEvaluator` per Ray actor.

Each actor builds its :class:`~rayprune.problem.PruningProblem` once (on its first call) from the
shared object the pool puts in the object store (dataset, base weights, cost functions), then
scores chunks of candidates and runs final fine-tunes for :class:`~rayprune.evaluation.pool.EvaluatorPool`, which
decides what runs where, with what timeout, and what a failure means.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional, Sequence

import ray

from ..config import TrainConfig
from ..problem import PruningProblem
from .candidate import CandidateEvaluator
from .score import ScoreSpec

__all__ = ["Evaluator"]


@ray.remote
class Evaluator:
    """A Ray actor wrapping a :class:`CandidateEvaluator` (build, fine-tune, evaluate, measure)."""

    def __init__(self, *, index: int, threads: int, device: Optional[str], tags: Optional[dict] = None) -> None:
        import torch

        from ..telemetry import Telemetry

        torch.set_num_threads(max(1, int(threads)))  # match the actor's CPU share: no oversubscription
        self.index = index
        self.device = device
        self.problem: Optional[PruningProblem] = None
        self.evaluator: Optional[CandidateEvaluator] = None
        self.busy_seconds = 0.0
        self.started = time.time()
        self.telemetry = Telemetry(tags or {})

    def _load(self, shared_box: list) -> None:
        """Build the problem from the shared object on this actor's first call (and after a restart).

        Every call carries the shared object's ref, boxed in a list so that Ray does not resolve it per
        call; the constructor carries none. The pool holds the ref for its lifetime, so a restarted
        actor finds it; with the ref among the constructor's arguments Ray logs an error-level line
        per pool about restarts (ray-project/ray#53727) that read like a failure to users.
        """
        if self.problem is None:
            self.problem = PruningProblem.from_shared(ray.get(shared_box[0]), device=self.device)
            self.evaluator = CandidateEvaluator(self.problem)

    def score_batch(self, shared_box: list, ratios: Sequence[Sequence[float]], spec: ScoreSpec,
                    seeds: Sequence[int]) -> list[dict[str, Any]]:
        """Score a chunk of candidates one after the other; rows in order, each with its wall interval."""
        self._load(shared_box)
        ctx = ray.get_runtime_context()
        node, pid = ctx.get_node_id(), os.getpid()
        rows = []
        for r, seed in zip(ratios, seeds):
            t0, wall0 = time.perf_counter(), time.time()
            row = self.evaluator.score(list(r), spec, seed=int(seed))
            self.busy_seconds += time.perf_counter() - t0
            row.update(evaluator=self.index, node_id=node, pid=pid, wall_start=wall0, wall_end=time.time())
            self._record(row)
            rows.append(row)
        return rows

    def _record(self, row: dict[str, Any]) -> None:
        t = self.telemetry
        t.count("rayprune_candidates_evaluated", status="cached" if row.get("cached") else row.get("status", "ok"))
        if not row.get("cached"):
            for phase, key in (("total", "t_total_s"), ("build", "t_build_s"), ("bn", "t_bn_s"),
                               ("finetune", "t_finetune_s"), ("evaluate", "t_eval_s"), ("costs", "t_costs_s")):
                t.observe("rayprune_evaluation_seconds", row.get(key), phase=phase)
        uptime = max(time.time() - self.started, 1e-9)
        t.gauge("rayprune_evaluator_busy_fraction", self.busy_seconds / uptime, evaluator=str(self.index))

    def finalize(self, shared_box: list, keep_ratios: Sequence[float], seed: int, export_dir: Optional[str],
                 extra: Optional[dict] = None, finetune: Optional[dict] = None) -> dict[str, Any]:
        """Long fine-tune of the chosen candidate, measured on val and test, exported to ``export_dir``."""
        self._load(shared_box)
        ft = TrainConfig(**finetune) if finetune is not None else None
        t0 = time.time()
        model, summary = self.evaluator.finalize(list(keep_ratios), seed=seed, finetune=ft)
        summary.update(evaluator=self.index, wall_start=t0, wall_end=time.time())
        if export_dir is not None:
            self.problem.export(model, export_dir, plan=self.problem.space.plan(list(keep_ratios)),
                                summary={**summary, **(extra or {})})
            summary["export_path"] = str(export_dir)
        return summary

    def measure(self, shared_box: list, keep_ratios: Sequence[float], names: Sequence[str],
                rounds: int = 1) -> dict[str, float]:
        """The costs ``names`` of the candidate ``keep_ratios`` (built afresh; weights do not matter),
        with the raw medians of paired timings (``latency_ms_measured``, ``latency_ms_base``), which
        take ``rounds`` turns with the base."""
        self._load(shared_box)
        values, raw = self.problem.measure_with_raw(self.problem.space.build(list(keep_ratios)), names,
                                                    rounds=rounds)
        return {**values, **raw}

    def info(self, shared_box: list) -> dict[str, Any]:
        """Who and where this actor is; the pool's readiness check (loads the problem first)."""
        import torch

        self._load(shared_box)
        return {
            "index": self.index,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
            "device": str(self.problem.device),
            "threads": torch.get_num_threads(),
            "busy_seconds": self.busy_seconds,
            "uptime_seconds": time.time() - self.started,
        }


def _driver_pythonpath() -> str:
    """The driver's import path (working directory and non-installed ``sys.path`` folders).

    Given to evaluator actors as ``PYTHONPATH`` so that a user model factory or cost function the
    driver can import (``mymodule:fn`` next to the config, say) imports in the actors too. On a
    remote cluster ship the code with the job's ``working_dir`` instead; folders that do not exist
    on a node are ignored there.
    """
    import sys
    import sysconfig

    installed = {os.path.realpath(p) for p in sysconfig.get_paths().values()}
    entries = [os.getcwd()] + [
        p for p in sys.path
        if p and os.path.isdir(p) and os.path.realpath(p) not in installed and "site-packages" not in p
        and not os.path.realpath(p).startswith(os.path.realpath(sys.base_prefix))
    ]
    existing = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(dict.fromkeys([*entries, *filter(None, existing.split(os.pathsep))]))
