"""``evolution``: a population per budget level, tournament selection, crossover and mutation.

MetaPruning and EagleEye-style evolutionary search over keep-ratio vectors (SEARCH.md). For each
level, the population holds the best ``population`` scored candidates (elitist: parents and
children compete). A child of two tournament winners takes each gene from either parent
(uniform crossover, with probability ``crossover``; else it copies the first parent), then each
gene moves by ``N(0, mutation_sd)`` with probability ``mutation_prob``; the child is clipped to
``[min_keep, 1]`` and projected onto the level's budget boundary, so every child spends its budget.
While a level's population is not full its children are random candidates.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..config import EvolutionConfig
from .base import Outcome, Proposal, SearchAgent
from .space import SearchSpace

__all__ = ["EvolutionAgent", "crossover", "mutate", "tournament"]

#: the second word of evolution's seed sequence (random search draws from the seed alone)
EVOLUTION_STREAM = 0x6576


def tournament(scores: Sequence[float], k: int, rng: np.random.Generator) -> int:
    """Index of the best of ``k`` members drawn at random (with replacement).

    >>> tournament([0.1, 0.9, 0.5], k=50, rng=np.random.default_rng(0))
    1
    """
    picks = rng.integers(0, len(scores), size=k)
    return int(picks[np.argmax(np.asarray(scores)[picks])])


def crossover(a: Sequence[float], b: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    """Uniform crossover: each gene from ``a`` or ``b`` with equal probability."""
    take_a = rng.random(len(a)) < 0.5
    return np.where(take_a, np.asarray(a, dtype=float), np.asarray(b, dtype=float))


def mutate(genes: Sequence[float], *, prob: float, sd: float, low: float, rng: np.random.Generator) -> np.ndarray:
    """Each gene plus ``N(0, sd)`` with probability ``prob``, clipped to ``[low, 1]``."""
    g = np.asarray(genes, dtype=float).copy()
    hit = rng.random(len(g)) < prob
    g[hit] += rng.normal(0.0, sd, size=int(hit.sum()))
    return np.clip(g, low, 1.0)


class EvolutionAgent(SearchAgent):
    name = "evolution"
    pipelined = True  # breeds from the population it has: one batch behind when batches overlap

    def __init__(self, space: SearchSpace, *, seed: int, batch_size: int, config: EvolutionConfig) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size)
        # its own stream: at the same seed its random warm-up would otherwise propose exactly random search's
        # candidates, so `agents: [evolution, random]` in one sweep would score them twice (session 24)
        self.rng = np.random.default_rng([self.seed, EVOLUTION_STREAM])
        self.config = config
        # per level: members as (score, keep ratios)
        self.populations: list[list[tuple[float, list[float]]]] = [[] for _ in range(space.num_levels)]

    def _direction(self, level: int) -> np.ndarray:
        """A child's genes before projection: a random direction while the population is not full."""
        pop, c = self.populations[level], self.config
        if len(pop) < c.population:
            direction = self.rng.uniform(self.space.min_keep, 1.0, self.space.num_groups)
        else:
            scores = [s for s, _ in pop]
            a = pop[tournament(scores, c.tournament, self.rng)][1]
            b = pop[tournament(scores, c.tournament, self.rng)][1]
            genes = crossover(a, b, self.rng) if self.rng.random() < c.crossover else np.asarray(a, dtype=float)
            direction = mutate(genes, prob=c.mutation_prob, sd=c.mutation_sd, low=self.space.min_keep, rng=self.rng)
        return direction

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        levels = self.levels_for(self.batch(n))
        directions = [self._direction(lvl) for lvl in levels]  # every draw first, in order; then one projection
        proposals = [Proposal(r, lvl) for r, lvl in zip(self.space.project_many(directions, levels), levels)]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        for p, o in zip(proposals, outcomes):
            if not (o.ok and o.feasible):  # an over-budget or failed child never becomes a parent
                continue
            pop = self.populations[p.level]
            if any(r == p.keep_ratios for _, r in pop):
                continue  # a repeat adds no information and would crowd the population
            pop.append((float(o.score), list(p.keep_ratios)))
            pop.sort(key=lambda m: -m[0])
            del pop[self.config.population:]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "populations": [[[s, r] for s, r in pop] for pop in self.populations]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.populations = [[(float(s), list(r)) for s, r in pop] for pop in state["populations"]]
