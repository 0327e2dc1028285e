"""Baseline searches: one uniform keep ratio per level, global pruning per level, random search on the
budget boundary, and random search in crl's action space.

Both are plain NumPy over a :class:`~rayprune.agents.space.SearchSpace` (no Ray, no models): they
propose, the search loop scores. Random search is the field's strongest simple baseline
(SEARCH.md: EagleEye, "Revisiting Random Channel Pruning"): a uniform direction in
``[min_keep, 1]^G`` projected onto the level's budget boundary.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

from .base import Outcome, Proposal, SearchAgent

__all__ = ["UniformAgent", "GlobalAgent", "RandomAgent", "SequentialRandomAgent"]


class UniformAgent(SearchAgent):
    """One keep ratio for every group, the largest that meets each level (bisection): one proposal per level, then
    finished — where every budget is analytic (params, MACs).

    A level with a measured budget (latency, memory, a cost of the user's) is aimed at through a proxy that has
    seen no measurement before the first candidate, so one proposal can miss it (a peak-activation cost growing
    with width, not with MACs, ended with no model and 31 of 32 evaluations unused). There the agent bisects the
    MACs fraction it aims at on the measurements: the largest aim measured to fit and the smallest measured to
    miss bound the next, which is the proxy's refitted aim where that falls between them, else the midpoint. A
    level is done once a candidate fits and the bounds are within :attr:`AIM_TOL`, after :attr:`MAX_AIMS`
    proposals, or when an aim gives a candidate already measured; the agent is finished when every level is.
    A candidate that fails (an evaluator error or timeout: no measurement) is asked again once, as the failure
    may be transient; failing twice, its aim counts as a miss and the bisection goes on below it (a failure
    ended the level before, with no model where it was the first candidate).
    """

    name = "uniform"
    pipelined = True  # its proposals need no outcome of the batch before (not so while it bisects a measured budget)
    #: proposals per level, at most, on a measured budget
    MAX_AIMS = 6
    #: bounds (fractions of the base's MACs) close enough to stop bisecting, once a candidate fits
    AIM_TOL = 0.02

    def __init__(self, space, *, seed: int, batch_size: int) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size)
        self._aimed = [self.space.macs_aim(level) is not None for level in range(self.space.num_levels)]
        if any(self._aimed):
            self.pipelined = False  # the next aim needs the last measurement
        self._lo = [0.0] * self.space.num_levels  # the largest aim measured to fit
        self._hi = [math.inf] * self.space.num_levels  # the smallest aim measured to miss
        self._fits = [False] * self.space.num_levels
        self._tried: list[list[list[float]]] = [[] for _ in range(self.space.num_levels)]
        self._done = [False] * self.space.num_levels
        self._pending: dict[int, float] = {}  # level -> the aim of its proposal not yet told
        self._failed = [0] * self.space.num_levels  # failures of the level's current candidate
        self._retry: dict[int, tuple[list[float], float]] = {}  # level -> the failed candidate and its aim, asked again

    def candidate(self, level: int, limits=None) -> list[float]:
        return self.space.uniform(level, limits)

    def _next_aim(self, level: int) -> float:
        lo, hi = self._lo[level], self._hi[level]
        aim = self.space.macs_aim(level)
        if lo < aim < hi and (not self._tried[level] or abs(aim - lo) > self.AIM_TOL / 2):
            return aim
        return self._midpoint(level)

    def _midpoint(self, level: int) -> float:
        lo, hi = self._lo[level], self._hi[level]
        return (lo + min(hi, 1.0)) / 2 if hi < math.inf else min(1.0, lo + (1.0 - lo) / 2)

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        if self.finished:
            return []
        proposals = []
        for level in range(self.space.num_levels):
            if self._done[level] or level in self._pending:
                continue
            if not self._aimed[level]:
                proposals.append(Proposal(self.candidate(level), level))
                self._done[level] = True
                continue
            if level in self._retry:  # the same candidate, not one the proxy (refitted since) would aim at now
                ratios, aim = self._retry.pop(level)
                self._tried[level].append(ratios)
                self._pending[level] = aim
                proposals.append(Proposal(ratios, level))
                continue
            aim = self._next_aim(level)
            ratios = self.candidate(level, self.space.aimed_limits(level, aim))
            if ratios in self._tried[level] and aim != self._midpoint(level):  # the proxy aims at a tried one
                aim = self._midpoint(level)
                ratios = self.candidate(level, self.space.aimed_limits(level, aim))
            if ratios in self._tried[level]:  # the channel rounding leaves nothing new between the bounds
                self._done[level] = True
                continue
            self._tried[level].append(ratios)
            self._pending[level] = aim
            proposals.append(Proposal(ratios, level))
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        for proposal, outcome in zip(proposals, outcomes):
            aim = self._pending.pop(proposal.level, None)
            if aim is None:
                continue
            level = proposal.level
            if outcome.ok and outcome.feasible:
                self._lo[level], self._fits[level] = max(self._lo[level], aim), True
            elif outcome.ok:
                self._hi[level] = min(self._hi[level], aim)
            elif self._failed[level] == 0:  # no measurement, perhaps transient: the same candidate once more
                self._failed[level] = 1
                if list(proposal.keep_ratios) in self._tried[level]:
                    self._tried[level].remove(list(proposal.keep_ratios))
                self._retry[level] = (list(proposal.keep_ratios), aim)
                continue
            else:  # failed twice: judged too large to evaluate, the next aim is below it
                self._hi[level] = min(self._hi[level], aim)
            self._failed[level] = 0
            self._done[level] = (len(self._tried[level]) >= self.MAX_AIMS or (
                self._fits[level] and self._hi[level] - self._lo[level] <= self.AIM_TOL))

    @property
    def finished(self) -> bool:
        return all(self._done) and not self._pending

    def state_dict(self) -> dict:
        return {**super().state_dict(), "lo": self._lo, "hi": [h if h < math.inf else None for h in self._hi],
                "fits": self._fits, "tried": self._tried, "done": self._done, "failed": self._failed,
                "pending": {str(k): v for k, v in self._pending.items()},
                "retry": {str(k): [r, a] for k, (r, a) in self._retry.items()}}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        if "lo" not in state:  # a checkpoint from before the bisection: its one proposal per level was made
            self._done = [self.asked >= self.space.num_levels] * self.space.num_levels
            return
        self._lo, self._fits, self._done = list(state["lo"]), list(state["fits"]), list(state["done"])
        self._hi = [math.inf if h is None else h for h in state["hi"]]
        self._tried = [list(t) for t in state["tried"]]
        self._pending = {int(k): v for k, v in state["pending"].items()}
        self._failed = list(state.get("failed", [0] * self.space.num_levels))
        self._retry = {int(k): (list(r), float(a)) for k, (r, a) in state.get("retry", {}).items()}


class GlobalAgent(UniformAgent):
    """Global pruning, as Torch-Pruning's ``global_pruning=True`` does it but aimed at each level's budget:
    the network's least important channels (by the pruning space's normalised importance) dropped
    wherever they are, as few as fit (:meth:`~rayprune.agents.space.SearchSpace.global_candidate`).
    One proposal per level, then finished, where the budgets are analytic; a measured budget is bisected on
    measurements as :class:`UniformAgent` does."""

    name = "global"

    def candidate(self, level: int, limits=None) -> list[float]:
        return self.space.global_candidate(level, limits)


class RandomAgent(SearchAgent):
    """Random directions projected onto the budget boundary, levels in turn."""

    name = "random"
    pipelined = True  # its proposals need no outcome of the batch before

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        levels = self.levels_for(self.batch(n))
        directions = [self.rng.uniform(self.space.min_keep, 1.0, self.space.num_groups) for _ in levels]
        proposals = [Proposal(r, lvl) for r, lvl in zip(self.space.project_many(directions, levels), levels)]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        pass


class SequentialRandomAgent(SearchAgent):
    """Random search in crl's action space: each group's keep ratio drawn uniformly between the AMC cap
    and the budget-filling floor, group after group (the walls of :mod:`rayprune.agents.env`).

    The ablation that tells crl's learning apart from its parametrisation: same walls, same order,
    no policy. Candidates land on the budget boundary like random search's, but later groups get
    what earlier draws left, so the distribution differs from a projected uniform direction.
    """

    name = "sequential_random"
    pipelined = True  # its proposals need no outcome of the batch before

    def __init__(self, space, *, seed: int, batch_size: int) -> None:
        from .env import PruningEnvSpec

        super().__init__(space, seed=seed, batch_size=batch_size)
        self.spec = PruningEnvSpec.from_space(space, list(range(space.num_levels)))

    def _walk(self, level: int) -> list[float]:
        from .env import action_to_ratio

        self.spec.levels[level] = self.space.steering_limits(level)  # black-box proxies move
        ratios: list[float] = []
        for t in range(self.space.num_groups):
            ratios.append(action_to_ratio(self.spec, self.spec.levels[level], float(self.rng.uniform(-1.0, 1.0)),
                                          ratios, t))
        return self.space.rounded(ratios)

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        proposals = [Proposal(self._walk(lvl), lvl) for lvl in self.levels_for(self.batch(n))]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        pass
