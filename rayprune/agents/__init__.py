"""Search agents: each proposes candidates through one interface (:class:`SearchAgent`), the search
loop scores them. ``uniform``, ``random``, ``evolution`` are plain NumPy; ``tpe`` needs Optuna and
``crl`` (PPO-Lagrangian) needs Ray and RLlib, so they are imported only when made
(:func:`make_agent`). The NEON-style agent is budgetless and lives in :mod:`rayprune.neon`."""

from .base import Outcome, Proposal, SearchAgent
from .registry import AGENTS, make_agent
from .space import SearchSpace

__all__ = ["AGENTS", "Outcome", "Proposal", "SearchAgent", "SearchSpace", "make_agent"]
