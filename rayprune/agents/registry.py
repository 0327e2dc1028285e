"""Search agents by name: ``make_agent("evolution", space, seed=0, search=cfg.search)``.

The RL agent (crl) imports Ray and RLlib, and tpe imports Optuna, only when asked for.
"""

from __future__ import annotations

from typing import Any, Callable

from .base import SearchAgent
from .space import SearchSpace

__all__ = ["AGENTS", "make_agent", "BUDGETED_AGENTS"]


def _uniform(space, *, seed, search, **_):
    from .baselines import UniformAgent

    return UniformAgent(space, seed=seed, batch_size=search.batch_size)


def _random(space, *, seed, search, **_):
    from .baselines import RandomAgent

    return RandomAgent(space, seed=seed, batch_size=search.batch_size)


def _sequential_random(space, *, seed, search, **_):
    from .baselines import SequentialRandomAgent

    return SequentialRandomAgent(space, seed=seed, batch_size=search.batch_size)


def _evolution(space, *, seed, search, **_):
    from .evolution import EvolutionAgent

    return EvolutionAgent(space, seed=seed, batch_size=search.batch_size, config=search.evolution)


def _tpe(space, *, seed, search, **_):
    from .tpe import TPEAgent

    return TPEAgent(space, seed=seed, batch_size=search.batch_size, config=search.tpe)


def _crl(space, *, seed, search, **kwargs):
    from .crl import CRLAgent  # Ray and RLlib only when this agent runs

    return CRLAgent(space, seed=seed, batch_size=search.batch_size, config=search.crl, **kwargs)


#: Agents that search under budgets through :class:`~rayprune.agents.base.SearchAgent`.
AGENTS: dict[str, Callable[..., SearchAgent]] = {
    "uniform": _uniform, "random": _random, "sequential_random": _sequential_random, "evolution": _evolution,
    "tpe": _tpe, "crl": _crl,
}
BUDGETED_AGENTS = tuple(AGENTS)


def make_agent(name: str, space: SearchSpace, *, seed: int, search: Any, **kwargs: Any) -> SearchAgent:
    """The agent ``name`` over ``space``; ``search`` is the config's ``search`` section.

    The batch is ``search.batch_size``, but never more than ``search.evaluations``."""
    if search.batch_size > search.evaluations:
        search = search.model_copy(update={"batch_size": search.evaluations})
    if name not in AGENTS:
        raise ValueError(f"Unknown search agent {name!r}; available: {', '.join(AGENTS)} (and neon, which "
                         "has no budget: `rayprune prune --agent neon`).")
    return AGENTS[name](space, seed=seed, search=search, **kwargs)
