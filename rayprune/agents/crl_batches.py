"""How many candidates crl proposes per rollout and per search: PPO's batch is fixed, so each policy's share of
``search.batch_size`` is rounded up to whole lockstep rounds of ``search.crl.num_envs`` episodes, and a search ends
with a whole rollout. Light on purpose (no Ray or RLlib): headers count with it before any agent is made."""

from __future__ import annotations

import math
from typing import Any

from ..config import CRLConfig

__all__ = ["crl_rollout_size", "crl_evaluations", "policy_groups", "rounds_note", "scored_by", "whole_rounds"]


def policy_groups(num_levels: int, config: CRLConfig) -> list[list[int]]:
    """The levels each policy serves: one budget-conditioned policy for all, or one policy per level."""
    return [list(range(num_levels))] if config.budget_conditioned else [[i] for i in range(num_levels)]


def whole_rounds(episodes: int, num_envs: int) -> int:
    """``episodes`` rounded up to whole lockstep rounds of the policy's vectorised envs."""
    num_envs = max(1, min(num_envs, episodes))
    return int(math.ceil(episodes / num_envs) * num_envs)


def crl_rollout_size(batch_size: int, num_levels: int, config: CRLConfig) -> int:
    """Candidates one crl rollout proposes for ``search.batch_size``: every policy's share of the batch, rounded
    up to whole lockstep rounds of ``num_envs`` episodes (PPO's batch is fixed).

    >>> from rayprune.config import CRLConfig
    >>> crl_rollout_size(32, 3, CRLConfig()), crl_rollout_size(30, 3, CRLConfig())  # one policy, rounds of 8
    (32, 32)
    >>> crl_rollout_size(32, 3, CRLConfig(budget_conditioned=False))  # 3 policies of 10 -> 16 episodes each
    48
    """
    groups = policy_groups(num_levels, config)
    per_policy = max(1, batch_size // len(groups))
    return len(groups) * whole_rounds(per_policy, config.num_envs)


def rounds_note(agent: str, search: Any, num_levels: int) -> str:
    """What a header says beside ``search.evaluations`` when ``agent`` scores more (crl's whole rollouts); ''
    otherwise. ``search``: the config's :class:`~rayprune.config.SearchConfig`."""
    if agent != "crl":
        return ""
    n = crl_evaluations(search.evaluations, search.batch_size, num_levels, search.crl)
    if n == search.evaluations:
        return ""
    rollout = crl_rollout_size(search.batch_size, num_levels, search.crl)
    why = (f"{num_levels} policies (search.crl.budget_conditioned: false), each" if not search.crl.budget_conditioned
           and num_levels > 1 else "its policy")
    return (f"crl: {n}, whole rollouts of {rollout} ({why} rounding search.batch_size's share up to whole rounds of "
            f"search.crl.num_envs={search.crl.num_envs} episodes)")


def scored_by(agent: str, search: Any, num_levels: int) -> int:
    """Candidates one trial of ``agent`` scores, at most, for ``search.evaluations`` (crl: whole rollouts, maybe
    more; uniform and global stop earlier, after a few candidates per level), the total a sweep's progress counts to.

    >>> from rayprune.config import SearchConfig
    >>> search = SearchConfig(evaluations=40, batch_size=32)
    >>> scored_by("random", search, 3), scored_by("crl", search, 3)
    (40, 64)
    """
    if agent != "crl":
        return int(search.evaluations)
    return crl_evaluations(search.evaluations, search.batch_size, num_levels, search.crl)


def crl_evaluations(evaluations: int, batch_size: int, num_levels: int, config: CRLConfig) -> int:
    """Candidates a crl search scores for ``search.evaluations``: whole rollouts, so the last one may go past it.

    >>> from rayprune.config import CRLConfig
    >>> crl_evaluations(512, 32, 3, CRLConfig()), crl_evaluations(40, 32, 3, CRLConfig())
    (512, 64)
    """
    rollout = crl_rollout_size(batch_size, num_levels, config)
    return int(math.ceil(evaluations / rollout) * rollout)
