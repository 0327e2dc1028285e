"""The one interface every search agent implements: propose a batch, take its scores, save, restore.

An agent never builds or scores a model. The search loop (:mod:`rayprune.search.loop`) asks it
for a batch of :class:`Proposal` s, scores them on the evaluator pool (any agent, the same way),
tells it the :class:`Outcome` s, writes the rows and checkpoints the agent's state::

    agent = make_agent("evolution", space, seed=0, config=cfg)
    while not done:
        proposals = agent.ask()
        outcomes = score(proposals)           # evaluator pool: adaptive BN or a short fine-tune
        agent.tell(proposals, outcomes)
    state = agent.state_dict()                # JSON-able (crl: plus a directory, see save/restore)

Each proposal is made *for* one budget level (``level``, an index into ``space.levels``); the
loop records it, and the candidate store later counts it for every level it fits.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from .space import SearchSpace

__all__ = ["Proposal", "Outcome", "SearchAgent"]


@dataclass
class Proposal:
    """A candidate to score: keep ratios (one per group), the level it was made for, agent notes."""

    keep_ratios: list[float]
    level: int = 0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """What scoring a proposal gave: the score (None if it failed), measured costs, feasibility for
    the proposal's level."""

    score: Optional[float]
    costs: dict[str, Optional[float]]
    feasible: bool

    @property
    def ok(self) -> bool:
        return self.score is not None


class SearchAgent(abc.ABC):
    """Base class of the search agents (see the module docstring).

    Subclasses implement :meth:`ask` and :meth:`tell`; agents with state beyond their RNG extend
    :meth:`state_dict` / :meth:`load_state_dict` (JSON-able values) and, for big state, :meth:`save`
    / :meth:`restore` (a directory).
    """

    #: the name users pick it by (``search.agent``)
    name: str = ""
    #: whether :meth:`ask` may be called again before the previous batch is told (the loop then
    #: overlaps batches: the next is scored while the last is written and told); tells still come
    #: in the order of the asks
    pipelined: bool = False

    def __init__(self, space: SearchSpace, *, seed: int, batch_size: int) -> None:
        import numpy as np

        self.space = space
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(self.seed)
        self.asked = 0  # proposals made so far

    @abc.abstractmethod
    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        """The next batch of proposals: ``min(n, batch_size)`` of them (an agent with a fixed batch,
        crl, may return its whole batch); empty when the agent has no more."""

    @abc.abstractmethod
    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        """The outcomes of the last :meth:`ask`, in the same order."""

    @property
    def finished(self) -> bool:
        """True when the agent has nothing more to propose (e.g. uniform after one batch)."""
        return False

    def batch(self, n: Optional[int]) -> int:
        """How many proposals the next :meth:`ask` makes."""
        return self.batch_size if n is None else max(0, min(int(n), self.batch_size))

    def levels_for(self, n: int) -> list[int]:
        """Levels for the next ``n`` proposals: round robin over the space's levels, so each gets an
        equal share of the candidates."""
        return [(self.asked + i) % self.space.num_levels for i in range(n)]

    # -- state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"asked": self.asked, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.asked = int(state["asked"])
        self.rng.bit_generator.state = state["rng"]

    def save(self, directory: str | Path) -> None:
        """Write state that does not fit :meth:`state_dict` (a policy, an optimiser) under ``directory``."""

    def restore(self, directory: str | Path) -> None:
        """Inverse of :meth:`save`."""

    def close(self) -> None:
        """Release resources (RL algorithms, actors)."""
