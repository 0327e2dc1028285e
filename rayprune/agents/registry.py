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


def _global(space, *, seed, search, **_):
    from .baselines import GlobalAgent

    return GlobalAgent(space, seed=seed, batch_size=search.batch_size)


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
    "uniform": _uniform, "global": _global, "random": _random, "sequential_random": _sequential_random, "evolution": _evolution,
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
    warning = warmup_warning(name, search, space.num_levels)
    if warning and kwargs.get("log") is not None:
        kwargs["log"](warning)
    return AGENTS[name](space, seed=seed, search=search, **kwargs)


def warmup_warning(name: str, search: Any, levels: int) -> str | None:
    """A warning when each level gets no more candidates than the agent spends at random before it models anything
    (evolution's first population, TPE's startup trials): the search is then random search.

    >>> from rayprune.config.search import SearchConfig
    >>> warmup_warning("evolution", SearchConfig(evaluations=16), 1)[:60]
    'warning: evolution: each level gets 16 candidate(s), no more'
    >>> warmup_warning("evolution", SearchConfig(evaluations=512), 4) is None
    True
    """
    warmup = {"evolution": ("evolution.population", getattr(getattr(search, "evolution", None), "population", None)),
              "tpe": ("tpe.startup", getattr(getattr(search, "tpe", None), "startup", None))}.get(name)
    if warmup is None or warmup[1] is None:
        return None
    per_level = search.evaluations // max(levels, 1)
    if per_level > warmup[1]:
        return None
    return (f"warning: {name}: each level gets {per_level} candidate(s), no more than search.{warmup[0]} ({warmup[1]}) "
            f"that it draws at random before it models anything: this search is random search. Raise "
            f"search.evaluations or lower search.{warmup[0]}.")
