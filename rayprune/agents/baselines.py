"""Baseline searches: one uniform keep ratio per level, global pruning per level, random search on the
budget boundary, and random search in crl's action space.

Both are plain NumPy over a :class:`~rayprune.agents.space.SearchSpace` (no Ray, no models): they
propose, the search loop scores. Random search is the field's strongest simple baseline
(SEARCH.md: EagleEye, "Revisiting Random Channel Pruning"): a uniform direction in
``[min_keep, 1]^G`` projected onto the level's budget boundary.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .base import Outcome, Proposal, SearchAgent

__all__ = ["UniformAgent", "GlobalAgent", "RandomAgent", "SequentialRandomAgent"]


class UniformAgent(SearchAgent):
    """One keep ratio for every group, the largest that meets each level (bisection): one proposal
    per level, then finished."""

    name = "uniform"
    pipelined = True  # its proposals need no outcome of the batch before

    def candidate(self, level: int) -> list[float]:
        return self.space.uniform(level)

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        if self.finished:
            return []
        proposals = [Proposal(self.candidate(level), level) for level in range(self.space.num_levels)]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        pass

    @property
    def finished(self) -> bool:
        return self.asked >= self.space.num_levels


class GlobalAgent(UniformAgent):
    """Global pruning, as Torch-Pruning's ``global_pruning=True`` does it but aimed at each level's budget:
    the network's least important channels (by the pruning space's normalised importance) dropped
    wherever they are, as few as fit (:meth:`~rayprune.agents.space.SearchSpace.global_candidate`).
    One proposal per level, then finished."""

    name = "global"

    def candidate(self, level: int) -> list[float]:
        return self.space.global_candidate(level)


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
