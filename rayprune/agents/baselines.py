"""Baseline searches: one uniform keep ratio per level, and random search on the budget boundary.

Both are plain NumPy over a :class:`~rayprune.agents.space.SearchSpace` (no Ray, no models): they
propose, the search loop scores. Random search is the field's strongest simple baseline
(SEARCH.md: EagleEye, "Revisiting Random Channel Pruning"): a uniform direction in
``[min_keep, 1]^G`` projected onto the level's budget boundary.
"""

from __future__ import annotations

from typing import Optional, Sequence

from .base import Outcome, Proposal, SearchAgent

__all__ = ["UniformAgent", "RandomAgent"]


class UniformAgent(SearchAgent):
    """One keep ratio for every group, the largest that meets each level (bisection): one proposal
    per level, then finished."""

    name = "uniform"

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        if self.finished:
            return []
        proposals = [Proposal(self.space.uniform(level), level) for level in range(self.space.num_levels)]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        pass

    @property
    def finished(self) -> bool:
        return self.asked >= self.space.num_levels


class RandomAgent(SearchAgent):
    """Random directions projected onto the budget boundary, levels in turn."""

    name = "random"

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        levels = self.levels_for(self.batch(n))
        proposals = [Proposal(self.space.project(self.rng.uniform(self.space.min_keep, 1.0, self.space.num_groups), lvl),
                              lvl) for lvl in levels]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        pass
