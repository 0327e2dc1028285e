"""Ray evaluator actors and the pool that keeps them busy.

Each :class:`Evaluator` actor holds one :class:`~rayprune.problem.PruningProblem`: the dataset and
base weights (shipped once through the object store), the pruning space traced once, and the
cost functions. :class:`EvaluatorPool` hands candidates to idle actors and gathers results with
``ray.wait`` as they finish, so K candidates are in flight at once.

Reliability: actors restart on failure (``max_restarts``) and their calls are retried
(``max_task_retries``): *at-least-once*, so a candidate may run twice; rows carry deterministic
keys and readers deduplicate. The problem is passed to actors as a *nested* ``ObjectRef`` (inside
a list), which the actor resolves itself; the pool keeps the driver's ref alive so a restarted
actor can fetch it again. A call that still fails after its retries becomes an ``error`` row.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import deque
from typing import Any, Optional, Sequence

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..config import TrainConfig
from ..problem import PruningProblem
from ..pruning.rounding import keep_channels
from .candidate import CandidateEvaluator, candidate_id

__all__ = ["Evaluator", "EvaluatorPool"]


@ray.remote
class Evaluator:
    """A Ray actor wrapping a :class:`CandidateEvaluator` (build, fine-tune, evaluate, measure)."""

    def __init__(self, shared_box: list, *, index: int, threads: int, device: Optional[str],
                 tags: Optional[dict] = None) -> None:
        import torch

        from ..telemetry import Telemetry

        torch.set_num_threads(max(1, int(threads)))  # match the actor's CPU share: no oversubscription
        shared = ray.get(shared_box[0])
        self.index = index
        self.problem = PruningProblem.from_shared(shared, device=device)
        self.evaluator = CandidateEvaluator(self.problem)
        self.busy_seconds = 0.0
        self.started = time.time()
        self.telemetry = Telemetry(tags or {})

    def evaluate(self, keep_ratios: Sequence[float], finetune: Optional[dict], seed: int) -> dict[str, Any]:
        t0, wall0 = time.perf_counter(), time.time()
        ft = TrainConfig(**finetune) if finetune is not None else None
        row = self.evaluator.evaluate(list(keep_ratios), finetune=ft, seed=seed)
        self.busy_seconds += time.perf_counter() - t0
        ctx = ray.get_runtime_context()
        row.update(evaluator=self.index, node_id=ctx.get_node_id(), pid=os.getpid(),
                   wall_start=wall0, wall_end=time.time())
        self._record(row)
        return row

    def _record(self, row: dict[str, Any]) -> None:
        t = self.telemetry
        t.count("rayprune_candidates_evaluated", status="cached" if row.get("cached") else row.get("status", "ok"))
        if not row.get("cached"):
            for phase, key in (("total", "t_total_s"), ("build", "t_build_s"), ("finetune", "t_finetune_s"),
                               ("evaluate", "t_eval_s"), ("costs", "t_costs_s")):
                t.observe("rayprune_evaluation_seconds", row.get(key), phase=phase)
        uptime = max(time.time() - self.started, 1e-9)
        t.gauge("rayprune_evaluator_busy_fraction", self.busy_seconds / uptime, evaluator=str(self.index))

    def finalize(self, keep_ratios: Sequence[float], seed: int, export_dir: Optional[str],
                 extra: Optional[dict] = None) -> dict[str, Any]:
        """Long fine-tune of the chosen candidate, measured on val and test, exported to ``export_dir``."""
        from ..pruning import save_pruned

        model, summary = self.evaluator.finalize(list(keep_ratios), seed=seed)
        if export_dir is not None:
            save_pruned(model, export_dir, architecture=self.problem.architecture,
                        plan=self.problem.space.plan(list(keep_ratios)), input_shape=self.problem.data.input_shape,
                        extra={"summary": {**summary, **(extra or {})}})
            summary["export_path"] = str(export_dir)
        return summary

    def info(self) -> dict[str, Any]:
        import torch

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


def _finetune_dict(base: TrainConfig, iterations: Optional[int]) -> Optional[dict]:
    if iterations is None:
        return None
    return {**base.model_dump(mode="json"), "iterations": int(iterations), "epochs": None}


class EvaluatorPool:
    """K evaluator actors for one problem; :meth:`evaluate_many` runs a batch of candidates on them.

    Args:
        problem: the driver's problem (its data and base weights are put in the object store once).
        size: number of actors.
        num_cpus, num_gpus: each actor's share (fractional GPUs allowed); torch's thread count in
            the actor is set to ``max(1, int(num_cpus))``.
        placement_group: optional placement group whose bundles ``bundle_offset ..`` hold the actors.
        name: the trial's label in the actors' names (``Evaluator[trial=<name>, #<i>] (<run id>)``).
    """

    def __init__(
        self,
        problem: PruningProblem,
        *,
        size: int = 2,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_restarts: int = 3,
        max_task_retries: int = 3,
        placement_group=None,
        bundle_offset: int = 0,
        name: str = "prune",
        tags: Optional[dict[str, str]] = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"The evaluator pool 'size' must be >= 1; got {size}.")
        # Only light facts are kept, so the pool pickles cheaply into remote env runners.
        self._channels = [g.channels for g in problem.space.groups]
        self._min_channels = [g.min_channels for g in problem.space.groups]
        self._round_to = problem.space.round_to
        self._finetune_base = problem.config.search.finetune
        self._cost_names = list(problem.costs)
        self._shared_ref = ray.put(problem.shareable())  # kept alive for actor restarts
        device = "cuda" if num_gpus > 0 else "cpu"
        self.actors = []
        run = uuid.uuid4().hex[:6]
        pythonpath = _driver_pythonpath()
        for i in range(size):
            options: dict[str, Any] = dict(
                num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts,
                max_task_retries=max_task_retries,
                name=f"Evaluator[trial={name}, #{i}] ({run})",  # how the actor reads in the Ray dashboard
                runtime_env={"env_vars": {"PYTHONPATH": pythonpath}},
            )
            if placement_group is not None:
                options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    placement_group=placement_group, placement_group_bundle_index=bundle_offset + i
                )
            actor = Evaluator.options(**options).remote([self._shared_ref], index=i, threads=num_cpus, device=device,
                                                        tags=dict(tags or {}))
            self.actors.append(actor)
        self._label = name
        self._tags = dict(tags or {})
        self._telemetry = None
        self._cache: dict[tuple[str, Optional[int]], dict[str, Any]] = {}
        self.evaluations = 0
        self.cache_hits = 0

    def wait_ready(self, timeout: float = 600.0) -> list[dict[str, Any]]:
        """Block until every actor has built its problem; returns their info."""
        return ray.get([a.info.remote() for a in self.actors], timeout=timeout)

    def evaluate_many(
        self,
        ratios: Sequence[Sequence[float]],
        *,
        finetune_iterations: Optional[int] = None,
        seeds: Optional[Sequence[int]] = None,
    ) -> list[dict[str, Any]]:
        """Evaluate candidates on idle actors, gathering with ``ray.wait``; rows in input order.

        Identical candidates (same rounded channel counts and fine-tune length) are evaluated
        once per pool; repeats get the first row with ``cached=True``.
        """
        seeds = list(seeds) if seeds is not None else [0] * len(ratios)
        ft = _finetune_dict(self._finetune_base, finetune_iterations)
        keys = [(candidate_id(self._counts(r)), finetune_iterations) for r in ratios]
        results: list[Optional[dict[str, Any]]] = [None] * len(ratios)
        first_of: dict[tuple, int] = {}
        queue: deque[int] = deque()
        for i, key in enumerate(keys):
            if key in self._cache:
                results[i] = {**self._cache[key], "cached": True}
                self.cache_hits += 1
            elif key in first_of:
                continue  # filled from its first occurrence below
            else:
                first_of[key] = i
                queue.append(i)
        idle = deque(range(len(self.actors)))
        in_flight: dict[ray.ObjectRef, tuple[int, int]] = {}
        telemetry = self._get_telemetry()
        while queue or in_flight:
            while queue and idle:
                i, a = queue.popleft(), idle.popleft()
                ref = self.actors[a].evaluate.remote(list(ratios[i]), ft, int(seeds[i]))
                in_flight[ref] = (i, a)
            telemetry.gauge("rayprune_evaluations_in_flight", len(in_flight))
            telemetry.gauge("rayprune_evaluations_queued", len(queue))
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                i, a = in_flight.pop(ref)
                idle.append(a)
                try:
                    row = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.ObjectLostError) as exc:
                    row = self._error_row(ratios[i], exc, a)
                    telemetry.count("rayprune_candidates_evaluated", status="error")
                self.evaluations += 1
                self._cache[keys[i]] = row
                results[i] = row
        for i, key in enumerate(keys):
            if results[i] is None:
                results[i] = {**self._cache[key], "cached": True}
                self.cache_hits += 1
        cached = sum(1 for r in results if r and r.get("cached"))
        if cached:
            telemetry.count("rayprune_candidates_evaluated", cached, status="cached")
        telemetry.gauge("rayprune_evaluations_in_flight", 0)
        telemetry.gauge("rayprune_evaluations_queued", 0)
        return results  # type: ignore[return-value]

    def _get_telemetry(self):
        if self._telemetry is None:
            from ..telemetry import Telemetry

            self._telemetry = Telemetry(self._tags)
        return self._telemetry

    def _counts(self, ratios: Sequence[float]) -> list[int]:
        return [max(keep_channels(min(1.0, max(float(r), 1e-9)), c, self._round_to), f)
                for r, c, f in zip(ratios, self._channels, self._min_channels)]

    def __getstate__(self) -> dict[str, Any]:
        # A copy shipped to an env runner shares the actors but not the driver's object ref
        # (the driver keeps that alive) nor its cache.
        state = dict(self.__dict__)
        state["_shared_ref"] = None
        state["_cache"] = {}
        state["_telemetry"] = None  # Ray metric objects are per process
        return state

    def _error_row(self, ratios: Sequence[float], exc: Exception, actor: int) -> dict[str, Any]:
        counts = self._counts(ratios)
        row = {
            "candidate_id": candidate_id(counts),
            "keep_ratios": [k / c for k, c in zip(counts, self._channels)],
            "keep_counts": list(counts),
            "status": "error",
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "accuracy": 0.0,
            "feasible": False,
            "cached": False,
            "evaluator": actor,
        }
        row.update({name: None for name in self._cost_names})
        return row

    def finalize(self, keep_ratios: Sequence[float], *, seed: int = 0, export_dir: Optional[str] = None,
                 extra: Optional[dict] = None) -> dict[str, Any]:
        """Run :meth:`Evaluator.finalize` on an evaluator (the first one)."""
        return ray.get(self.actors[0].finalize.remote(list(keep_ratios), int(seed), export_dir, extra))

    def stats(self) -> list[dict[str, Any]]:
        """Each actor's info (busy seconds, uptime, device, threads)."""
        return ray.get([a.info.remote() for a in self.actors])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []
