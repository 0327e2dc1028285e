"""Ray evaluator actors and the pool that keeps them busy.

Each :class:`Evaluator` actor holds one :class:`~rayprune.problem.PruningProblem`: the dataset and
base weights (shipped once through the object store), the pruning space traced once, and the
cost functions. :class:`EvaluatorPool` hands candidates to idle actors and gathers results with
``ray.wait`` as they finish, so K candidates are in flight at once.

Candidates travel in *chunks*: one actor call scores several candidates (data and base weights
stay resident in the actor), so Ray's per-call overhead is paid per chunk, not per candidate.

Reliability: actors restart on failure (``max_restarts``) and their calls are retried
(``max_task_retries``): *at-least-once*, so a candidate may be scored twice. That is harmless:
actors never write rows (the driver side that asked does, once per candidate it asked for), and a
score is a pure function of the candidate and the score spec. The problem is passed to actors as
a *nested* ``ObjectRef`` (inside a list), which the actor resolves itself; the pool keeps the
driver's ref alive so a restarted actor can fetch it again. A call that still fails after its
retries becomes ``error`` rows; when no evaluator is left alive the pool raises
:class:`PoolDeadError` instead of producing failures at full speed.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections import deque
from typing import Any, Optional, Sequence

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..config import TrainConfig
from ..problem import PruningProblem
from ..pruning.rounding import candidate_id, keep_counts
from .candidate import CandidateEvaluator
from .score import ScoreSpec

__all__ = ["EvaluationTimeout", "Evaluator", "EvaluatorPool", "PoolDeadError"]


class PoolDeadError(RuntimeError):
    """Every evaluator of the pool is dead (and out of restarts): nothing can be scored any more."""


class EvaluationTimeout(RuntimeError):
    """A call to an evaluator gave no result within ``evaluation.timeout_s`` (per candidate) or
    ``evaluation.final_timeout_s``; its candidates become ``error`` rows and the actor restarts."""


def _describe(exc: BaseException) -> str:
    """``Type: message`` of the user-level cause of a failed call (the exception raised in the
    actor, not Ray's wrapper with its remote traceback)."""
    cause = getattr(exc, "cause", None) if isinstance(exc, ray.exceptions.RayTaskError) else None
    err = cause if isinstance(cause, BaseException) else exc
    return f"{type(err).__name__}: {err}"[:2000]


def _next_deadline(deadlines: dict) -> Optional[float]:
    """Seconds until the earliest deadline (None: wait without a limit)."""
    return max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None


def _expired(deadlines: dict, done: list) -> list:
    """The refs past their deadline that have not finished."""
    now = time.monotonic()
    return [ref for ref, t in deadlines.items() if t <= now and ref not in done]


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

    def score_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Sequence[int]) -> list[dict[str, Any]]:
        """Score a chunk of candidates one after the other; rows in order, each with its wall interval."""
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

    def finalize(self, keep_ratios: Sequence[float], seed: int, export_dir: Optional[str],
                 extra: Optional[dict] = None, finetune: Optional[dict] = None) -> dict[str, Any]:
        """Long fine-tune of the chosen candidate, measured on val and test, exported to ``export_dir``."""
        from ..pruning import save_pruned

        ft = TrainConfig(**finetune) if finetune is not None else None
        t0 = time.time()
        model, summary = self.evaluator.finalize(list(keep_ratios), seed=seed, finetune=ft)
        summary.update(evaluator=self.index, wall_start=t0, wall_end=time.time())
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


class EvaluatorPool:
    """K evaluator actors for one problem; :meth:`score_batch` scores a batch of candidates on them.

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
        timeout_s: Optional[float] = None,
        final_timeout_s: Optional[float] = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"The evaluator pool 'size' must be >= 1; got {size}.")
        self.timeout_s = timeout_s
        self.final_timeout_s = final_timeout_s
        self._channels = [g.channels for g in problem.space.groups]
        self._min_channels = [g.min_channels for g in problem.space.groups]
        self._round_to = problem.space.round_to
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
        self._dead: set[int] = set()
        self._tags = dict(tags or {})
        self._telemetry = None
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self.evaluations = 0
        self.cache_hits = 0

    @classmethod
    def from_config(cls, problem: PruningProblem, evaluation, **kwargs: Any) -> "EvaluatorPool":
        """A pool sized by the config's ``evaluation`` section."""
        return cls(problem, size=evaluation.evaluators, num_cpus=evaluation.cpus, num_gpus=evaluation.gpus,
                   max_restarts=evaluation.max_restarts, max_task_retries=evaluation.max_task_retries,
                   timeout_s=evaluation.timeout_s, final_timeout_s=evaluation.final_timeout_s, **kwargs)

    def wait_ready(self, timeout: float = 600.0) -> list[dict[str, Any]]:
        """Block until every actor has built its problem; returns their info."""
        return ray.get([a.info.remote() for a in self.actors], timeout=timeout)

    @property
    def live(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self._dead]

    def counts(self, ratios: Sequence[float]) -> list[int]:
        return keep_counts(ratios, self._channels, self._min_channels, self._round_to)

    def score_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Optional[Sequence[int]] = None,
                    *, chunk_size: Optional[int] = None) -> list[dict[str, Any]]:
        """Score candidates on the actors; rows in input order.

        Identical candidates (same rounded channel counts, same score) are scored once per pool;
        repeats get the first row with ``cached=True``. The distinct ones go out in chunks of
        ``chunk_size`` (default: about two chunks per live actor, so a slow chunk is not waited on
        alone), gathered with ``ray.wait`` as they finish.
        """
        seeds = list(seeds) if seeds is not None else [0] * len(ratios)
        keys = [(candidate_id(self.counts(r)), spec.key) for r in ratios]
        todo: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i, key in enumerate(keys):
            if key not in self._cache and key not in seen:
                seen.add(key)
                todo.append(i)
        if todo:
            self._run(todo, ratios, spec, seeds, keys, chunk_size)
        results = []
        fresh = set(todo)
        for i, key in enumerate(keys):
            row = self._cache[key]
            if i in fresh:
                results.append(dict(row))
            else:
                self.cache_hits += 1
                results.append({**row, "cached": True})
        return results

    def _run(self, todo: list[int], ratios, spec: ScoreSpec, seeds, keys, chunk_size: Optional[int]) -> None:
        if not self.live:
            raise PoolDeadError("No evaluator is alive; the search cannot score candidates any more.")
        size = chunk_size or max(1, math.ceil(len(todo) / (2 * len(self.live))))
        chunks = deque(todo[i:i + size] for i in range(0, len(todo), size))
        idle = deque(self.live)
        in_flight: dict[ray.ObjectRef, tuple[list[int], int]] = {}
        deadlines: dict[ray.ObjectRef, float] = {}
        telemetry = self._get_telemetry()
        while chunks or in_flight:
            while chunks and idle:
                chunk, a = chunks.popleft(), idle.popleft()
                ref = self.actors[a].score_batch.remote([list(ratios[i]) for i in chunk], spec,
                                                        [int(seeds[i]) for i in chunk])
                in_flight[ref] = (chunk, a)
                if self.timeout_s is not None:
                    deadlines[ref] = time.monotonic() + self.timeout_s * len(chunk)
            telemetry.gauge("rayprune_evaluations_in_flight", sum(len(c) for c, _ in in_flight.values()))
            telemetry.gauge("rayprune_evaluations_queued", sum(len(c) for c in chunks))
            if not in_flight:  # every actor died with work left
                raise PoolDeadError(f"Every evaluator died; {sum(len(c) for c in chunks)} candidates were left "
                                    "unscored (rows already written are kept).")
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=_next_deadline(deadlines))
            for ref in done + _expired(deadlines, done):
                chunk, a = in_flight.pop(ref)
                deadlines.pop(ref, None)
                try:
                    if ref not in done:
                        raise self._hung(ref, a, f"{len(chunk)} candidate(s) x evaluation.timeout_s={self.timeout_s:g}")
                    rows = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.ObjectLostError,
                        EvaluationTimeout) as exc:
                    rows = [self._error_row(ratios[i], spec, exc, a) for i in chunk]
                    telemetry.count("rayprune_candidates_evaluated", len(chunk), status="error")
                    if not self._alive(a):
                        self._dead.add(a)
                        a = None
                if a is not None:
                    idle.append(a)
                for i, row in zip(chunk, rows):
                    self._cache[keys[i]] = row
                    self.evaluations += 1
        telemetry.gauge("rayprune_evaluations_in_flight", 0)
        telemetry.gauge("rayprune_evaluations_queued", 0)

    def _hung(self, ref: ray.ObjectRef, a: int, limit: str) -> "EvaluationTimeout":
        """Stop a call that ran past its deadline: cancel it (not retried) and restart its actor."""
        ray.cancel(ref)  # a cancelled actor task is not retried on the restarted actor
        ray.kill(self.actors[a], no_restart=False)  # a hung call cannot be interrupted; the actor restarts
        return EvaluationTimeout(f"evaluator #{a} gave no result within {limit}; it was restarted")

    def _alive(self, a: int, timeout: float = 120.0) -> bool:
        """Whether actor ``a`` answers (a restarting actor answers once it is back)."""
        try:
            ray.get(self.actors[a].info.remote(), timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - dead, or not back in time: either way not usable
            return False

    def _get_telemetry(self):
        if self._telemetry is None:
            from ..telemetry import Telemetry

            self._telemetry = Telemetry(self._tags)
        return self._telemetry

    def __getstate__(self) -> dict[str, Any]:
        # A copy shipped elsewhere shares the actors but not the driver's object ref (the driver
        # keeps that alive) nor its cache.
        state = dict(self.__dict__)
        state["_shared_ref"] = None
        state["_cache"] = {}
        state["_telemetry"] = None  # Ray metric objects are per process
        return state

    def _error_row(self, ratios: Sequence[float], spec: ScoreSpec, exc: Exception, actor: int) -> dict[str, Any]:
        counts = self.counts(ratios)
        row = {
            "candidate_id": candidate_id(counts),
            "keep_ratios": [k / c for k, c in zip(counts, self._channels)],
            "keep_counts": list(counts),
            "score_kind": spec.kind,
            "score_key": spec.key,
            "finetune_iterations": spec.finetune_iterations,
            "status": "error",
            "error": _describe(exc),
            "accuracy": None,
            "cached": False,
            "evaluator": actor,
        }
        row.update({name: None for name in self._cost_names})
        return row

    def finalize(self, keep_ratios: Sequence[float], *, seed: int = 0, export_dir: Optional[str] = None,
                 extra: Optional[dict] = None, finetune: Optional[dict] = None) -> dict[str, Any]:
        """Long fine-tune of one candidate on an evaluator, exported to ``export_dir``."""
        return self.finalize_many([dict(keep_ratios=keep_ratios, seed=seed, export_dir=export_dir, extra=extra,
                                        finetune=finetune)])[0]

    def finalize_many(self, jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Several final fine-tunes at once, spread over the live actors; summaries in order.

        Each job: ``keep_ratios``, ``seed``, ``export_dir`` and optionally ``extra``, ``finetune``
        (a TrainConfig as a dict; default: ``search.final_finetune``). A job that fails gives a
        summary with ``status="error"`` and the message.
        """
        if not self.live:
            raise PoolDeadError("No evaluator is alive to run the final fine-tune.")
        results: list[Optional[dict[str, Any]]] = [None] * len(jobs)
        queue, idle, in_flight = deque(range(len(jobs))), deque(self.live), {}
        deadlines: dict[ray.ObjectRef, float] = {}
        while queue or in_flight:
            while queue and idle:
                j, a = queue.popleft(), idle.popleft()
                job = jobs[j]
                ref = self.actors[a].finalize.remote(list(job["keep_ratios"]), int(job.get("seed", 0)),
                                                     job.get("export_dir"), job.get("extra"), job.get("finetune"))
                in_flight[ref] = (j, a)
                if self.final_timeout_s is not None:
                    deadlines[ref] = time.monotonic() + self.final_timeout_s
            if not in_flight:
                raise PoolDeadError("Every evaluator died during the final fine-tunes.")
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=_next_deadline(deadlines))
            for ref in done + _expired(deadlines, done):
                j, a = in_flight.pop(ref)
                deadlines.pop(ref, None)
                try:
                    if ref not in done:
                        raise self._hung(ref, a, f"evaluation.final_timeout_s={self.final_timeout_s:g}")
                    results[j] = {"status": "ok", "error": None, **ray.get(ref)}
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, EvaluationTimeout) as exc:
                    results[j] = {"status": "error", "error": _describe(exc)}
                    if not self._alive(a):
                        self._dead.add(a)
                        continue
                idle.append(a)
        return results  # type: ignore[return-value]

    def stats(self) -> list[dict[str, Any]]:
        """Each live actor's info (busy seconds, uptime, device, threads)."""
        return ray.get([self.actors[a].info.remote() for a in self.live])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []
