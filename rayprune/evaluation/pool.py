"""The pool that keeps the Ray evaluator actors (:mod:`rayprune.evaluation.evaluator`) busy.

Each :class:`~rayprune.evaluation.evaluator.Evaluator` actor holds one :class:`~rayprune.problem.PruningProblem`: the dataset and
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
driver's ref alive so a restarted actor can fetch it again. A call whose actor is lost for good
(out of restarts, or its node removed) is moved to a live actor (:data:`MAX_MOVES` times at most); a
call that fails otherwise (the candidates' own error, a timeout) becomes ``error`` rows; when no
evaluator is left alive the pool raises :class:`PoolDeadError` instead of producing failures at
full speed.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..costs.registry import QUIET_TIMING_ROUNDS
from ..problem import PruningProblem
from ..pruning.rounding import candidate_id, keep_counts
from .evaluator import Evaluator, _driver_pythonpath
from .score import SCORE_CACHE_SIZE, ScoreSpec

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


#: Scoring calls queued on one actor at a time: the second starts as soon as the first ends, with no
#: round trip to the driver, and keeps the actor busy while the driver writes and tells a batch.
#: (Final fine-tunes go one per actor: a long call queued behind another could wait while an actor idles.)
CALLS_PER_ACTOR = 2

#: How often one call's candidates are moved to another evaluator after theirs was lost (a dead actor
#: out of retries, a removed node) before they become ``error`` rows.
MAX_MOVES = 2


def _lost_worker(exc: BaseException) -> bool:
    """Whether a call failed because its actor or node went away (its candidates are not at fault),
    as opposed to an exception raised while scoring them or a timeout."""
    return isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError))


def _next_deadline(deadlines: dict) -> Optional[float]:
    """Seconds until the earliest deadline (None: wait without a limit)."""
    return max(0.0, min(deadlines.values()) - time.monotonic()) if deadlines else None


def _expired(deadlines: dict, done: list) -> list:
    """The refs past their deadline that have not finished."""
    now = time.monotonic()
    return [ref for ref, t in deadlines.items() if t <= now and ref not in done]


class EvaluatorPool:
    """K evaluator actors for one problem; :meth:`score_batch` scores a batch of candidates on them.

    Args:
        problem: the driver's problem (its data and base weights are put in the object store once).
        size: number of actors.
        num_cpus, num_gpus: each actor's share (fractional GPUs allowed); torch's thread count in
            the actor is set to ``max(1, int(num_cpus))``.
        placement_group: optional placement group whose bundles ``bundle_offset ..`` hold the actors.
        name: the trial's label in the actors' names (``Evaluator[trial=<name>, #<i>] (<run id>)``).
        shared_ref: ``problem.shareable()`` already in the object store (a sweep's trials and its
            selection share the driver's one copy); default: put here.
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
        shared_ref: Optional[ray.ObjectRef] = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"The evaluator pool 'size' must be >= 1; got {size}.")
        self.timeout_s = timeout_s
        self.final_timeout_s = final_timeout_s
        self._channels = [g.channels for g in problem.space.groups]
        self._min_channels = [g.min_channels for g in problem.space.groups]
        self._round_to = problem.space.multiples
        self._cost_names = list(problem.costs)
        # kept alive for actor restarts
        self._shared_ref = shared_ref if shared_ref is not None else ray.put(problem.shareable())
        self._box = [self._shared_ref]  # every actor call carries it (see Evaluator._load)
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
            actor = Evaluator.options(**options).remote(index=i, threads=num_cpus, device=device,
                                                        tags=dict(tags or {}))
            self.actors.append(actor)
        self._dead: set[int] = set()
        self._tags = dict(tags or {})
        self._telemetry = None
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._scoring_keys: set[tuple[str, str]] = set()  # candidates being scored by a batch in flight
        self._pending: list["PendingBatch"] = []  # batches submitted and not yet read, oldest first
        self._scoring: Optional[_Dispatcher] = None
        self.evaluations = 0
        self.cache_hits = 0

    @classmethod
    def from_config(cls, problem: PruningProblem, evaluation, **kwargs: Any) -> "EvaluatorPool":
        """A pool sized by the config's ``evaluation`` section."""
        return cls(problem, size=evaluation.evaluators, num_cpus=evaluation.cpus_each, num_gpus=evaluation.gpus,
                   max_restarts=evaluation.max_restarts, max_task_retries=evaluation.max_task_retries,
                   timeout_s=evaluation.timeout_s, final_timeout_s=evaluation.final_timeout_s, **kwargs)

    def wait_ready(self, timeout: float = 600.0) -> list[dict[str, Any]]:
        """Block until every actor has built its problem; returns their info."""
        return ray.get([a.info.remote(self._box) for a in self.actors], timeout=timeout)

    @property
    def live(self) -> list[int]:
        return [i for i in range(len(self.actors)) if i not in self._dead]

    def counts(self, ratios: Sequence[float]) -> list[int]:
        return keep_counts(ratios, self._channels, self._min_channels, self._round_to)

    def score_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Optional[Sequence[int]] = None,
                    *, chunk_size: Optional[int] = None) -> list[dict[str, Any]]:
        """Score candidates on the actors; rows in input order (:meth:`submit_batch`, then its result)."""
        return self.submit_batch(ratios, spec, seeds, chunk_size=chunk_size).result()

    def submit_batch(self, ratios: Sequence[Sequence[float]], spec: ScoreSpec, seeds: Optional[Sequence[int]] = None,
                     *, chunk_size: Optional[int] = None) -> "PendingBatch":
        """Start scoring candidates; :meth:`PendingBatch.result` waits for their rows (input order).

        Identical candidates (same rounded channel counts, same score) are scored once per pool;
        repeats get the first row with ``cached=True`` (also across batches in flight together).
        The distinct ones go out in chunks of ``chunk_size`` (default: about two chunks per live
        actor, so a slow chunk is not waited on alone; one candidate per call when the score
        fine-tunes, seconds each, so that the last calls of a batch do not leave actors idle),
        in the order given. Batches submitted before the earlier ones'
        results are read share the actors: the next batch's chunks start as soon as an actor is
        free, so the actors do not wait while the driver writes and tells a finished batch.
        """
        seeds = list(seeds) if seeds is not None else [0] * len(ratios)
        keys = [(candidate_id(self.counts(r)), spec.key) for r in ratios]
        todo: list[int] = []
        seen: set[tuple[str, str]] = set()
        for i, key in enumerate(keys):
            if key not in self._cache and key not in self._scoring_keys and key not in seen:
                seen.add(key)
                todo.append(i)
        batch = PendingBatch(self, [list(r) for r in ratios], spec, [int(s) for s in seeds], keys, todo)
        if todo and not self.live:
            raise PoolDeadError("No evaluator is alive; the search cannot score candidates any more.")
        self._pending.append(batch)
        if todo:
            self._scoring_keys.update(keys[i] for i in todo)
            size = chunk_size or (1 if spec.finetune_iterations else max(1, math.ceil(len(todo) / (2 * len(self.live)))))
            self._scorer().add([_Chunk(batch, todo[i:i + size]) for i in range(0, len(todo), size)])
        return batch

    def _scorer(self) -> "_Dispatcher":
        """The dispatcher of every scoring call (kept across batches, so that they can overlap)."""
        if self._scoring is not None:
            return self._scoring
        telemetry = self._get_telemetry()

        def submit(chunk: _Chunk, a: int) -> ray.ObjectRef:
            b = chunk.batch
            return self.actors[a].score_batch.remote(self._box, [b.ratios[i] for i in chunk.indices], b.spec,
                                                     [b.seeds[i] for i in chunk.indices])

        def store(chunk: _Chunk, rows: list[dict[str, Any]]) -> None:
            for i, row in zip(chunk.indices, rows):
                key = chunk.batch.keys[i]
                self._cache[key] = row
                self._scoring_keys.discard(key)
                self.evaluations += 1
                for pending in self._pending:  # a later batch waiting on this candidate keeps its row now:
                    if key in pending.awaiting:  # reading an earlier batch trims the cache, maybe of this row
                        pending.known[key] = row

        def failed(chunk: _Chunk, exc: Exception, a: int) -> None:
            b = chunk.batch
            store(chunk, [self._error_row(b.ratios[i], b.spec, exc, a) for i in chunk.indices])
            telemetry.count("rayprune_candidates_evaluated", len(chunk.indices), status="error")

        def tick(in_flight: dict, queued: deque) -> None:
            telemetry.gauge("rayprune_evaluations_in_flight", sum(len(c.indices) for c, _ in in_flight.values()))
            telemetry.gauge("rayprune_evaluations_queued", sum(len(c.indices) for c in queued))

        self._scoring = _Dispatcher(
            self, submit, store, failed,
            timeout=lambda chunk: None if self.timeout_s is None else self.timeout_s * len(chunk.indices),
            limit=lambda chunk: f"{len(chunk.indices)} candidate(s) x evaluation.timeout_s={self.timeout_s:g}",
            dead=lambda queued: (f"Every evaluator died; {sum(len(c.indices) for c in queued)} candidates were left "
                                 "unscored (rows already written are kept)."),
            tick=tick, per_actor=CALLS_PER_ACTOR)
        return self._scoring

    def _rows(self, batch: "PendingBatch") -> list[dict[str, Any]]:
        """A finished batch's rows from the cache, in input order; then the cache is trimmed."""
        results = []
        fresh = set(batch.todo)
        for i, key in enumerate(batch.keys):
            row = self._cache[key] if key in self._cache else batch.known[key]
            if i in fresh:
                results.append(dict(row))
            else:
                self.cache_hits += 1
                results.append({**row, "cached": True})
        if batch in self._pending:
            self._pending.remove(batch)
        while len(self._cache) > SCORE_CACHE_SIZE:  # after the batch has read its rows: oldest first
            del self._cache[next(iter(self._cache))]
        if self._scoring is not None and not self._scoring.busy:
            telemetry = self._get_telemetry()
            telemetry.gauge("rayprune_evaluations_in_flight", 0)
            telemetry.gauge("rayprune_evaluations_queued", 0)
        return results

    def _dispatch(self, items: list, submit: Callable, done: Callable, failed: Callable, *,
                  timeout: Callable, limit: Callable, dead: Callable, tick: Optional[Callable] = None) -> None:
        """Run every item on the live actors (a :class:`_Dispatcher` of its own) until all are done."""
        dispatcher = _Dispatcher(self, submit, done, failed, timeout=timeout, limit=limit, dead=dead, tick=tick)
        dispatcher.add(items)
        dispatcher.run_until(lambda: not dispatcher.busy)

    def _hung(self, ref: ray.ObjectRef, a: int, limit: str) -> "EvaluationTimeout":
        """Stop a call that ran past its deadline: cancel it (not retried) and restart its actor."""
        ray.cancel(ref)  # a cancelled actor task is not retried on the restarted actor
        ray.kill(self.actors[a], no_restart=False)  # a hung call cannot be interrupted; the actor restarts
        return EvaluationTimeout(f"evaluator #{a} gave no result within {limit}; it was restarted (a call's time is "
                                 "building, scoring and measuring its candidates: every cost, yours included; "
                                 "candidates.parquet's t_costs_s says how long the costs took on those that finished)")

    def _alive(self, a: int, timeout: float = 120.0) -> bool:
        """Whether actor ``a`` answers (a restarting actor answers once it is back)."""
        try:
            ray.get(self.actors[a].info.remote(self._box), timeout=timeout)
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
        state["_scoring_keys"] = set()
        state["_pending"] = []
        state["_scoring"] = None  # calls in flight belong to the driver
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

        def submit(j: int, a: int) -> ray.ObjectRef:
            job = jobs[j]
            return self.actors[a].finalize.remote(self._box, list(job["keep_ratios"]), int(job.get("seed", 0)),
                                                  job.get("export_dir"), job.get("extra"), job.get("finetune"))

        def done(j: int, summary: dict[str, Any]) -> None:
            results[j] = {"status": "ok", "error": None, **summary}

        def failed(j: int, exc: Exception, a: int) -> None:
            results[j] = {"status": "error", "error": _describe(exc)}

        self._dispatch(list(range(len(jobs))), submit, done, failed,
                       timeout=lambda j: self.final_timeout_s,
                       limit=lambda j: f"evaluation.final_timeout_s={self.final_timeout_s:g}",
                       dead=lambda queued: "Every evaluator died during the final fine-tunes.")
        return results  # type: ignore[return-value]

    def measure_sequentially(self, ratios: Sequence[Sequence[float]], names: Sequence[str], *,
                             rounds: int = QUIET_TIMING_ROUNDS) -> list[dict[str, float]]:
        """The costs ``names`` of each candidate, measured one at a time on one evaluator while the
        others do nothing (latency measured while another evaluator trains on the same cores is noise);
        paired timings take ``rounds`` turns with the base, the lowest of each kept, and come with their
        raw values (:func:`~rayprune.costs.paired_columns`)."""
        if not self.live:
            raise PoolDeadError("No evaluator is alive to measure the exported models.")
        actor = self.actors[self.live[0]]
        return [ray.get(actor.measure.remote(self._box, list(r), list(names), rounds)) for r in ratios]

    def stats(self) -> list[dict[str, Any]]:
        """Each live actor's info (busy seconds, uptime, device, threads)."""
        return ray.get([self.actors[a].info.remote(self._box) for a in self.live])

    def shutdown(self) -> None:
        for a in self.actors:
            ray.kill(a, no_restart=True)
        self.actors = []


class PendingBatch:
    """A batch submitted with :meth:`EvaluatorPool.submit_batch`; :meth:`result` waits for its rows."""

    def __init__(self, pool: EvaluatorPool, ratios: list[list[float]], spec: ScoreSpec, seeds: list[int],
                 keys: list[tuple[str, str]], todo: list[int]) -> None:
        self.pool, self.ratios, self.spec, self.seeds, self.keys, self.todo = pool, ratios, spec, seeds, keys, todo
        # rows scored before: kept here, so that trimming the cache meanwhile cannot lose them; the rows
        # of candidates another batch in flight is scoring arrive here as they are stored (``awaiting``)
        self.known = {key: pool._cache[key] for key in keys if key in pool._cache}
        self.awaiting = {key for key in keys if key not in self.known}
        self._rows: Optional[list[dict[str, Any]]] = None

    def ready(self) -> bool:
        """Whether every candidate of the batch has its row (scored here or by a batch before it)."""
        return all(key in self.known or key in self.pool._cache for key in self.keys)

    def result(self) -> list[dict[str, Any]]:
        """The rows in input order, once every candidate is scored; the actors keep working on any
        batch submitted after this one meanwhile."""
        if self._rows is None:
            if not self.ready():
                self.pool._scorer().run_until(self.ready)
            self._rows = self.pool._rows(self)
        return self._rows


@dataclass
class _Chunk:
    """Candidates ``indices`` of ``batch``: one actor call."""

    batch: PendingBatch
    indices: list[int]


class _Dispatcher:
    """Items run on the pool's live actors, up to ``per_actor`` calls queued on each, results as they come.

    ``submit(item, actor) -> ref`` starts a call; ``done(item, result)`` or ``failed(item, exc,
    actor)`` takes its outcome. A call past ``timeout(item)`` seconds (None: no limit) is stopped
    (:meth:`EvaluatorPool._hung`, the message naming ``limit(item)``) and fails. A call whose actor
    or node was lost is moved to a live actor (:data:`MAX_MOVES` times at most); an actor that no
    longer answers is dropped; with none left and work queued, :class:`PoolDeadError`
    (``dead(queued)``) stops the run. Items may be added while others run (:meth:`add`), which is
    how batches overlap.
    """

    def __init__(self, pool: EvaluatorPool, submit: Callable, done: Callable, failed: Callable, *,
                 timeout: Callable, limit: Callable, dead: Callable, tick: Optional[Callable] = None,
                 per_actor: int = 1) -> None:
        self.pool, self.submit, self.done, self.failed = pool, submit, done, failed
        self.timeout, self.limit, self.dead, self.tick = timeout, limit, dead, tick
        self.per_actor = per_actor
        self.queued: deque = deque()
        self.in_flight: dict[ray.ObjectRef, tuple[Any, int]] = {}
        self.deadlines: dict[ray.ObjectRef, float] = {}
        self.moves: dict[int, int] = {}  # id(item) -> times it was moved off a lost actor

    @property
    def busy(self) -> bool:
        return bool(self.queued or self.in_flight)

    def add(self, items: Sequence[Any]) -> None:
        """Queue ``items`` and start what the actors have room for at once."""
        self.queued.extend(items)
        self._fill()

    def _fill(self) -> None:
        """Start queued items on the live actors, up to ``per_actor`` calls each, one per actor per pass
        (so work spreads before any actor gets a second call). A call queued behind others on its actor
        gets their time limits added to its own."""
        calls: dict[int, int] = {}
        for _, a in self.in_flight.values():
            calls[a] = calls.get(a, 0) + 1
        for depth in range(self.per_actor):
            for a in self.pool.live:
                if not self.queued:
                    return
                if calls.get(a, 0) > depth:
                    continue
                item = self.queued.popleft()
                ref = self.submit(item, a)
                if (seconds := self.timeout(item)) is not None:
                    ahead = [self.deadlines[r] for r, (_, b) in self.in_flight.items() if b == a and r in self.deadlines]
                    self.deadlines[ref] = max([time.monotonic(), *ahead]) + seconds
                self.in_flight[ref] = (item, a)
                calls[a] = calls.get(a, 0) + 1

    def run_until(self, finished: Callable[[], bool]) -> None:
        """Dispatch and gather until ``finished()``."""
        while not finished():
            if not self.busy:
                raise RuntimeError("internal: waiting on work that was never queued")
            self._round()

    def _round(self) -> None:
        """Start calls on idle live actors, then take the outcome of the first call(s) to finish."""
        pool = self.pool
        self._fill()
        if self.tick is not None:
            self.tick(self.in_flight, self.queued)
        if not self.in_flight:  # every actor died with work left
            raise PoolDeadError(self.dead(self.queued))
        finished, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=_next_deadline(self.deadlines))
        for ref in finished + _expired(self.deadlines, finished):
            item, a = self.in_flight.pop(ref)
            self.deadlines.pop(ref, None)
            try:
                if ref not in finished:
                    raise pool._hung(ref, a, self.limit(item))
                self.done(item, ray.get(ref))
            except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError, ray.exceptions.ObjectLostError,
                    EvaluationTimeout) as exc:
                # a call that raised in the actor leaves it alive; otherwise ask it (a restart answers when back;
                # asking an actor whose other call raised would wait behind that actor's next call)
                if a not in pool._dead and not isinstance(exc, ray.exceptions.RayTaskError) and not pool._alive(a):
                    pool._dead.add(a)
                if _lost_worker(exc) and pool.live and self.moves.get(id(item), 0) < MAX_MOVES:
                    # the actor or its node went away (not the candidates' fault): score them elsewhere
                    self.moves[id(item)] = self.moves.get(id(item), 0) + 1
                    self.queued.appendleft(item)
                else:
                    self.failed(item, exc, a)
