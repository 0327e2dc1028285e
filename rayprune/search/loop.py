"""The search loop every agent runs through: ask, score on the pool, tell, write rows, checkpoint.

Plain Python: the scorer is any ``score(ratios, spec, seeds) -> rows`` callable — the Ray
:class:`~rayprune.evaluation.pool.EvaluatorPool` in ``rayprune prune`` and in sweep trials, a
:class:`~rayprune.evaluation.candidate.CandidateEvaluator` in the bare-loop benchmark. One
:meth:`SearchRun.step` is one batch::

    proposals = agent.ask()                       # keep ratios, each for a budget level
    rows = score([p.keep_ratios ...], spec, seeds)
    rows get: level, feasible (for that level), batch number, agent   -> written as one Parquet shard
    agent.tell(proposals, outcomes)

With a ``submit`` (the pool's ``submit_batch``) and an agent that allows it
(:attr:`~rayprune.agents.base.SearchAgent.pipelined`), batches overlap: batch k+1 is asked for and
submitted before batch k's rows are read, so the evaluators score it while the driver writes and
tells batch k (the agent then proposes k+1 without k's outcomes).

Rows are written by this loop, once per proposal, before the agent hears about them; a
checkpoint (:meth:`SearchRun.save`) records the batch number, so a restart from it drops the rows
of later batches (:func:`rayprune.results.drop_rows_after`) and neither loses nor repeats one.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..agents.base import Outcome, Proposal, SearchAgent
from ..agents.space import SearchSpace
from ..costs.budget import fits
from ..evaluation.score import ScoreSpec
from ..names import (
    BEST,
    BEST_ACCURACY,
    EVALUATIONS,
    ITERATION,
    LAMBDA,
    STATUS_OK,
    VIOLATION_RATE,
    progress_key,
)
from ..results import CandidateWriter

__all__ = ["SearchRun", "Scorer", "Submitter"]

Scorer = Callable[[Sequence[Sequence[float]], ScoreSpec, Sequence[int]], list[dict[str, Any]]]
#: starts scoring a batch and returns a handle whose ``result()`` gives its rows (the pool's ``submit_batch``)
Submitter = Callable[[Sequence[Sequence[float]], ScoreSpec, Sequence[int]], Any]

_STATE_FILE = "search_state.json"


class SearchRun:
    """One agent's search over ``space``'s levels, ``evaluations`` candidates in batches.

    Args:
        agent: any :class:`~rayprune.agents.base.SearchAgent`.
        space: the levels and the projection the agent proposes through.
        score: scores a batch of keep ratios (see the module docstring).
        spec: how candidates are scored during the search.
        writer: where rows go (its constants tag them: sweep, trial, seed, stage ...).
        evaluations: candidates to score; the search stops at the first batch boundary at or past it.
        seed: seeds the fine-tunes of a ``finetune`` score.
    """

    def __init__(self, agent: SearchAgent, space: SearchSpace, score: Scorer, *, spec: ScoreSpec,
                 writer: CandidateWriter, evaluations: int, seed: int = 0,
                 log: Optional[Callable[[str], None]] = None, submit: Optional[Submitter] = None) -> None:
        self.agent = agent
        # overlap: the next batch is asked for and submitted before the current one is written and told
        self.submit = submit if submit is not None and agent.pipelined else None
        self._pending: Optional[_Launched] = None
        self._untold: Optional[tuple] = None  # a drained batch (proposals, outcomes, rows) not yet told
        self._asked = 0  # proposals asked for: evaluated + the batch in flight
        self.space = space
        self.score = score
        self.spec = spec
        self.writer = writer
        self.evaluations = int(evaluations)
        self.seed = int(seed)
        self.log = log
        self._warned: set[str] = set()
        self.batch = 0  # batches done; rows carry the batch number as ``iteration`` (1, 2, ...)
        self.evaluated = 0
        self.repeats = 0  # proposals that repeated a candidate already scored (its cached score): a small space
        self.best: list[Optional[float]] = [None] * space.num_levels  # best feasible score per level
        self.seconds = {"ask": 0.0, "score": 0.0, "tell": 0.0, "write": 0.0}

    @property
    def done(self) -> bool:
        return self._pending is None and (self.evaluated >= self.evaluations or self.agent.finished)

    @property
    def pipelined(self) -> bool:
        """Whether batches overlap (a ``submit`` was given and the agent allows it)."""
        return self.submit is not None

    def _launch(self) -> "_Launched":
        """Ask the agent for the next batch and start scoring it."""
        t0 = time.perf_counter()
        proposals = self.agent.ask(self.evaluations - self._asked)
        self.seconds["ask"] += time.perf_counter() - t0
        seeds = [self.seed * 1_000_003 + self._asked + i for i in range(len(proposals))]
        self._asked += len(proposals)
        ratios = [p.keep_ratios for p in proposals]
        if not proposals:
            return _Launched(proposals, lambda: [])
        if self.submit is not None:
            return _Launched(proposals, self.submit(ratios, self.spec, seeds).result)
        return _Launched(proposals, lambda: self.score(ratios, self.spec, seeds))

    def _warn_unsteerable(self) -> None:
        for name in self.space.unsteerable():
            if name not in self._warned and self.log is not None:
                self._warned.add(name)
                self.log(f"warning: the measured '{name}' of the candidates scored so far does not grow with "
                         f"MACs, so the search cannot aim at its budget through MACs; candidates that break it are "
                         f"only filtered out (expect many infeasible rows). With a timed cost such as latency_ms "
                         f"this usually means the timings are noisy next to the differences between candidates "
                         f"(a small model, a loaded machine): more costs.latency.repeats, or a budget further from "
                         f"the base model, help")

    def step(self, *, launch_next: bool = True) -> dict[str, Any]:
        """One batch: ask, score, write, tell. Returns progress metrics.

        Pipelined (:attr:`pipelined`), the batch was asked for and submitted by the step before;
        this step asks for and submits the next one (unless ``launch_next`` is false or the search
        has all it needs) before it waits for this one's rows, so the evaluators score the next
        batch while this one is written and told.
        """
        t0 = time.perf_counter()
        current, self._pending = self._pending or self._launch(), None
        if self._untold is not None:  # a drained batch's tell, where an overlapping run would have told it
            self._tell(*self._untold)
            self._untold = None
        # overlap, except while a black-box budget has no measurement: the next batch would aim on the same guess
        overlap = self.pipelined and not getattr(self.space, "aiming_blind", False)
        if overlap and launch_next and self._asked < self.evaluations and not self.agent.finished:
            self._pending = self._launch()
        t1 = time.perf_counter()
        self.batch += 1
        rows = current.result()
        t2 = time.perf_counter()
        proposals = current.proposals
        outcomes = [self._annotate(p, row) for p, row in zip(proposals, rows)]
        self.writer.extend(rows)
        self.writer.flush()
        t3 = time.perf_counter()
        if overlap and not launch_next:
            # drained: told only after the next batch is asked for, as when batches overlap, so that a run
            # proposes the same candidates however often it is checkpointed (the state keeps this batch)
            self._untold = (proposals, outcomes, rows)
        else:
            self._tell(proposals, outcomes, rows)
        t4 = time.perf_counter()
        self.evaluated += len(proposals)
        for name, dt in (("score", t2 - t1), ("write", t3 - t2), ("tell", t4 - t3)):
            self.seconds[name] += dt
        return self.progress(rows, batch_seconds=t4 - t0, score_seconds=t2 - t1)

    def _tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome], rows: Sequence[Mapping[str, Any]]) -> None:
        self.space.observe(rows)
        self._warn_unsteerable()
        self.agent.tell(proposals, outcomes)

    def drain(self) -> Optional[dict[str, Any]]:
        """Finish the batch in flight (pipelined), launching none after it; its metrics, or None."""
        return self.step(launch_next=False) if self._pending is not None else None

    def _annotate(self, proposal: Proposal, row: dict[str, Any]) -> Outcome:
        level = self.space.levels[proposal.level]
        ok = row.get("status") == STATUS_OK
        costs = {name: row.get(name) for name in self.space.base_costs}
        feasible = ok and fits(costs, level.limits)
        row.update(level=level.name, feasible=bool(feasible), iteration=self.batch, agent=self.agent.name)
        self.repeats += bool(row.get("cached"))
        if ok:  # any candidate counts for every level it fits
            for i, other in enumerate(self.space.levels):
                if fits(costs, other.limits) and (self.best[i] is None or row["accuracy"] > self.best[i]):
                    self.best[i] = float(row["accuracy"])
        return Outcome(score=row["accuracy"] if ok else None, costs=costs, feasible=bool(feasible))

    def progress(self, rows: Sequence[Mapping[str, Any]] = (), *, batch_seconds: float = 0.0,
                 score_seconds: float = 0.0) -> dict[str, Any]:
        errors = sum(1 for r in rows if r.get("status") != "ok")
        out: dict[str, Any] = {
            ITERATION: self.batch, EVALUATIONS: self.evaluated, "batch_errors": errors, "repeats": self.repeats,
            "evals_per_s": len(rows) / max(batch_seconds, 1e-9), "batch_seconds": batch_seconds,
            "overhead_fraction": (batch_seconds - score_seconds) / max(batch_seconds, 1e-9),
        }
        for level, best in zip(self.space.levels, self.best):
            out[progress_key(BEST, level.name)] = best
        known = [b for b in self.best if b is not None]
        out[BEST_ACCURACY] = max(known) if known else None
        out.update(self.agent.metrics() if hasattr(self.agent, "metrics") else {})
        return out

    def describe(self, metrics: Mapping[str, Any]) -> str:
        best = ", ".join(f"{lvl.name}: {'-' if b is None else f'{b:.4f}'}" for lvl, b in zip(self.space.levels, self.best))
        scored = (f"{metrics['evaluations']}/{self.evaluations} scored" if metrics["evaluations"] <= self.evaluations
                  else f"{metrics['evaluations']} scored (search.evaluations is {self.evaluations}: {self.agent.name} "
                       f"finishes its last round of episodes)")
        return (f"{self.agent.name} batch {metrics['iteration']}: {scored}, "
                f"best per level {best}; {metrics['evals_per_s']:.1f} candidates/s"
                + (f", {metrics['batch_errors']} errors" if metrics.get("batch_errors") else "")
                + (f"; {metrics['repeats']} of them repeated a candidate already scored (few distinct candidates "
                   "left to the agent: a small space, or a converged search)" if metrics.get("repeats", 0) * 4 >= max(1, metrics[
                       EVALUATIONS]) else ""))

    def run(self, *, on_step: Optional[Callable[[dict[str, Any]], None]] = None) -> dict[str, Any]:
        """Steps until done; ``on_step`` gets each batch's metrics (progress, checkpoints)."""
        metrics = self.progress()
        while not self.done:
            metrics = self.step()
            if self.log is not None:
                self.log(self.describe(metrics))
            if on_step is not None:
                on_step(metrics)
        return metrics

    def publish(self, telemetry, metrics: Mapping[str, Any]) -> None:
        """The search's Ray metrics after a batch: best feasible score per level, and for crl λ and the
        violation rate per constraint (names in :mod:`rayprune.telemetry`)."""
        for level in self.space.levels:
            telemetry.gauge("rayprune_best_feasible_accuracy", metrics.get(progress_key(BEST, level.name)),
                            budget=level.name)
        for name in {n for lvl in self.space.levels for n in lvl.limits}:
            telemetry.gauge("rayprune_lagrange_multiplier", metrics.get(progress_key(LAMBDA, name)), constraint=name)
            telemetry.gauge("rayprune_constraint_violation_rate", metrics.get(progress_key(VIOLATION_RATE, name)),
                            constraint=name)

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """The loop's counters, the agent's state and the proxies' data (restart: :meth:`restore`).

        Nothing may be in flight (:meth:`drain` first): the state is then exactly that of the
        batches written, and a restart from it proposes what this run would have."""
        if self._pending is not None:
            raise RuntimeError("SearchRun.save() with a batch in flight: call drain() first.")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.agent.save(directory / "agent")
        state = {"batch": self.batch, "evaluated": self.evaluated, "repeats": self.repeats, "best": self.best, "agent": self.agent.state_dict(),
                 "space": self.space.state_dict(), "agent_name": self.agent.name}
        if self._untold is not None:
            proposals, outcomes, rows = self._untold
            state["untold"] = {"proposals": [dataclasses.asdict(p) for p in proposals],
                               "outcomes": [dataclasses.asdict(o) for o in outcomes], "rows": list(rows)}
        (directory / _STATE_FILE).write_text(json.dumps(state, default=_json_default))

    def restore(self, directory: str | Path) -> None:
        directory = Path(directory)
        state = json.loads((directory / _STATE_FILE).read_text())
        if state.get("agent_name") != self.agent.name:
            raise ValueError(f"{directory}: a checkpoint of agent {state.get('agent_name')!r}, not {self.agent.name!r}.")
        self.batch, self.evaluated, self.best = int(state["batch"]), int(state["evaluated"]), list(state["best"])
        self.repeats = int(state.get("repeats", 0))
        self._asked, self._pending = self.evaluated, None
        untold = state.get("untold")
        self._untold = None if untold is None else (
            [Proposal(**p) for p in untold["proposals"]], [Outcome(**o) for o in untold["outcomes"]], untold["rows"])
        self.agent.load_state_dict(state["agent"])
        self.agent.restore(directory / "agent")
        self.space.load_state_dict(state["space"])


@dataclass
class _Launched:
    """A batch asked for: its proposals and how to get their rows (waits for them)."""

    proposals: list[Proposal]
    result: Callable[[], list[dict[str, Any]]]


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
