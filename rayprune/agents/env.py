"""The pruning environment of the constrained-RL agent: one step per prunable group, no scoring.

An episode walks the prunable groups in order and picks a keep ratio for each; its last step
emits the finished candidate in ``info`` (``keep_ratios``, ``level``) with a zero reward. The
agent (:class:`rayprune.agents.crl.CRLAgent`) collects a batch of episodes, has the search loop
score their candidates on the evaluator pool, and writes each score into the episode's last
reward (and each measured cost into its last ``info["costs"]``) before the PPO update. So the env
only does what is cheap: policy inference batched over ``num_envs`` lockstep episodes and the
analytic bounds on each action.

Each episode serves one budget level (round robin over the env's levels): the policy sees the
level's limits, so one *budget-conditioned* policy can serve every level of a sweep.

Observation (all roughly in [0, 1]), for group ``t`` of ``T``::

    [ t/T, is_conv, is_linear, in/max_in, out/max_out, kh/7, kw/7, sh/4, sw/4, ph/4, pw/4,
      params share, MACs share, previous keep ratio,
      per steering cost s (params, MACs): limit_s/base_s, min_reachable_s/limit_s, max_reachable_s/limit_s ]

"Steering" limits are the level's analytic budgets plus, for a black-box budget (latency, user
costs), the MACs limit its proxy predicts (:meth:`rayprune.agents.space.SearchSpace.steering_limits`).
"min/max reachable" keep the groups already decided at their ratios and put the rest (this one
included) at ``min_keep`` or 1.

Action: one number in [-1, 1] per group, read one of two ways (``action``):

* ``"direction"``: mapped linearly onto ``[min_keep, 1]`` with no bound: the episode draws a
  *direction*, and the agent projects it onto the level's budget boundary
  (:meth:`rayprune.agents.space.SearchSpace.project_many`), as random search and evolution do. An
  untrained policy (mean ≈ 0, wide Gaussian) then proposes what random search proposes, and the
  policy learns which directions score well.
* ``"ratio"`` (AMC's): mapped linearly to a keep ratio in [floor, cap]: the cap is AMC's action
  wall (the steering limits stay reachable if the remaining groups go to ``min_keep``), the floor
  (``budget_fill``) the smallest ratio from which the tightest limit can still be *spent* if the
  remaining groups keep everything. With both, every candidate lands on the budget boundary (up
  to channel rounding) and the policy decides how the budget is shared between groups, one group
  after another, each bounded by what the earlier ones took.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional, Sequence, Union

import gymnasium as gym
import numpy as np

from ..costs.analytic import AnalyticCosts
from ..costs.budget import within
from ..pruning.rounding import keep_counts

__all__ = ["PruningEnvSpec", "PruningVectorEnv", "CANDIDATE_INFO", "LEVEL_INFO", "STEERING_COSTS"]

#: ``info`` keys of an episode's last step: the candidate's keep ratios and its level index.
CANDIDATE_INFO = "keep_ratios"
LEVEL_INFO = "level"
#: The analytic costs the observation describes, for every level.
STEERING_COSTS = ("params", "macs")


@dataclass
class PruningEnvSpec:
    """What the env needs about the search space; small enough to ship to env runners.

    ``levels`` holds each level's steering limits (analytic names only); the agent refreshes them
    (:meth:`PruningVectorEnv.set_levels`) when the black-box proxies move.
    """

    channels: list[int]
    min_channels: list[int]
    round_to: Union[int, list[int]]  # one multiple, or one per group (PruningSpace.multiples)
    min_keep: float
    group_features: np.ndarray  # (T, 13) static, normalised
    analytic: Optional[AnalyticCosts]  # exact params/MACs model, or None
    levels: list[dict[str, float]] = field(default_factory=list)
    action_wall: bool = True
    budget_fill: bool = True
    action: Literal["ratio", "direction"] = "ratio"  # see the module docstring

    @property
    def num_groups(self) -> int:
        return len(self.channels)

    @property
    def observation_size(self) -> int:
        return self.group_features.shape[1] + 1 + 3 * len(STEERING_COSTS)

    def counts(self, ratios: Sequence[float]) -> list[int]:
        return keep_counts(ratios, self.channels, self.min_channels, self.round_to)

    def cost(self, name: str, ratios: Sequence[float]) -> float:
        return float(self.analytic(name, self.counts(ratios)))

    @classmethod
    def from_space(cls, space, level_indices: Sequence[int], *, action_wall: bool = True,
                   budget_fill: bool = True, action: Literal["ratio", "direction"] = "ratio") -> "PruningEnvSpec":
        """For the levels ``level_indices`` of a :class:`~rayprune.agents.space.SearchSpace`."""
        feats = space.group_features if space.group_features is not None else np.zeros((space.num_groups, 13))
        return cls(channels=list(space.channels), min_channels=list(space.min_channels), round_to=list(space.round_to) if np.ndim(space.round_to) else space.round_to,
                   min_keep=space.min_keep, group_features=np.asarray(feats, dtype=np.float32),
                   analytic=space.analytic, levels=[space.steering_limits(i) for i in level_indices],
                   action_wall=action_wall, budget_fill=budget_fill, action=action)


def _count_range(spec: PruningEnvSpec, t: int) -> tuple[int, int]:
    """The channel counts group ``t`` can keep: from ``min_keep``'s (rounded) to all."""
    step = spec.round_to if np.ndim(spec.round_to) == 0 else spec.round_to[t]
    lo = keep_counts([spec.min_keep], [spec.channels[t]], [spec.min_channels[t]], step)[0]
    return lo, spec.channels[t]


def _last_true(holds: Callable[[int], bool], lo: int, hi: int) -> int:
    """Largest integer ``k`` in ``[lo, hi]`` with ``holds(k)`` for a true-then-false predicate that holds at ``lo``."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if holds(mid) else (lo, mid - 1)
    return lo


def upper_bound(spec: PruningEnvSpec, limits: dict[str, float], decided: Sequence[float], t: int) -> float:
    """Largest keep ratio for group ``t`` that keeps every limit reachable (AMC's action wall).

    A bisection over the group's channel counts (a candidate is rounded to whole channels anyway):
    about log2(channels) analytic evaluations."""
    if not spec.action_wall or spec.analytic is None or not limits:
        return 1.0
    tail = [spec.min_keep] * (spec.num_groups - t - 1)
    channels = spec.channels[t]

    def ok(k: int) -> bool:
        counts = spec.counts([*decided, k / channels, *tail])
        return all(within(spec.analytic(c, counts), lim) for c, lim in limits.items())

    lo, hi = _count_range(spec, t)
    if ok(hi):
        return 1.0
    if not ok(lo):
        return spec.min_keep
    k = _last_true(ok, lo, hi)
    return spec.min_keep if k == lo else k / channels


def lower_bound(spec: PruningEnvSpec, limits: dict[str, float], decided: Sequence[float], t: int) -> float:
    """Smallest keep ratio for group ``t`` from which the tightest limit can still be reached if every
    later group keeps everything (``budget_fill``; else ``min_keep``)."""
    if not (spec.action_wall and spec.budget_fill) or spec.analytic is None or not limits:
        return spec.min_keep
    tail = [1.0] * (spec.num_groups - t - 1)
    channels = spec.channels[t]

    def spends(k: int) -> bool:
        counts = spec.counts([*decided, k / channels, *tail])
        return any(spec.analytic(c, counts) >= lim for c, lim in limits.items())

    lo, hi = _count_range(spec, t)
    if spends(lo):
        return spec.min_keep
    if not spends(hi):
        return 1.0
    return (_last_true(lambda k: not spends(k), lo, hi) + 1) / channels  # the first count that spends it


def action_to_ratio(spec: PruningEnvSpec, limits: dict[str, float], action: float, decided: Sequence[float],
                    t: int) -> float:
    """Map an action in [-1, 1] linearly onto [floor, cap], or onto [min_keep, 1] for a direction (see
    the module docstring)."""
    a = float(np.clip(action, -1.0, 1.0))
    unbounded = spec.min_keep + (a + 1.0) / 2.0 * (1.0 - spec.min_keep)
    if spec.action == "direction":
        return unbounded
    hi = upper_bound(spec, limits, decided, t)
    if not spec.budget_fill:
        return min(unbounded, hi)
    lo = min(lower_bound(spec, limits, decided, t), hi)
    return lo + (a + 1.0) / 2.0 * (hi - lo)


class PruningVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` pruning episodes stepped together (RLlib's ``VECTOR_ENTRY_POINT``).

    Episodes draw their level round robin over ``spec.levels``, so a batch of episodes gives each
    level an equal share. Nothing here is scored: the last step's ``info`` carries the candidate.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, spec: PruningEnvSpec, *, num_envs: int = 4, seed: int = 0) -> None:
        if not spec.levels:
            raise ValueError("PruningEnvSpec.levels is empty: the env needs at least one budget level.")
        self.pspec = spec
        self.num_envs = int(num_envs)
        obs_size = spec.observation_size
        self.single_observation_space = gym.spaces.Box(-10.0, 10.0, (obs_size,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.multipliers: dict[str, float] = {}
        self.episodes_started = 0
        self._seed = seed
        self._t = 0
        self._ratios = np.ones((self.num_envs, spec.num_groups))
        self._levels = np.zeros(self.num_envs, dtype=int)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    # -- hooks ---------------------------------------------------------------------------------
    def set_multipliers(self, multipliers: dict[str, float]) -> None:
        """Receive the Lagrange multipliers (PPO-Lagrangian pushes them every iteration)."""
        self.multipliers = dict(multipliers)

    def set_levels(self, levels: Sequence[dict[str, float]]) -> None:
        """New steering limits per level (same number and order of levels)."""
        if len(levels) != len(self.pspec.levels):
            raise ValueError(f"Expected {len(self.pspec.levels)} levels; got {len(levels)}.")
        self.pspec.levels = [dict(lvl) for lvl in levels]

    # -- maths -----------------------------------------------------------------------------------
    def _observation(self, i: int) -> np.ndarray:
        s, t = self.pspec, min(self._t, self.pspec.num_groups - 1)
        limits = s.levels[self._levels[i]]
        decided = list(self._ratios[i, :t])
        rest = s.num_groups - t
        prev = self._ratios[i, t - 1] if t > 0 else 1.0
        ctx: list[float] = []
        for name in STEERING_COSTS:
            if s.analytic is None:
                ctx += [1.0, 0.0, 0.0]
                continue
            base = s.analytic.base[name]
            limit = limits.get(name, base)
            lo = s.cost(name, [*decided, *[s.min_keep] * rest])
            hi = s.cost(name, [*decided, *[1.0] * rest])
            ctx += [limit / base, lo / max(limit, 1e-12), hi / max(limit, 1e-12)]
        obs = np.concatenate([s.group_features[t], [prev], ctx]).astype(np.float32)
        return np.clip(obs, -10.0, 10.0)

    def _observations(self) -> np.ndarray:
        return np.stack([self._observation(i) for i in range(self.num_envs)])

    def action_to_ratio(self, i: int, action: float) -> float:
        t = self._t
        return action_to_ratio(self.pspec, self.pspec.levels[self._levels[i]], action, list(self._ratios[i, :t]), t)

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._seed = seed
        self._t = 0
        self._ratios[:] = 1.0
        n = len(self.pspec.levels)
        self._levels = (self.episodes_started + np.arange(self.num_envs)) % n
        self.episodes_started += self.num_envs
        self._needs_reset[:] = False
        return self._observations(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)[:, 0]
        if self._needs_reset.all():  # NEXT_STEP autoreset: this call only resets
            obs, _ = self.reset()
            zeros = np.zeros(self.num_envs)
            return obs, zeros, zeros.astype(bool), zeros.astype(bool), {}
        for i in range(self.num_envs):
            self._ratios[i, self._t] = self.action_to_ratio(i, actions[i])
        self._t += 1
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if self._t < self.pspec.num_groups:
            return self._observations(), rewards, terminated, terminated.copy(), infos
        for i in range(self.num_envs):  # the candidates go out with the last step's info
            infos = self._add_info(infos, {CANDIDATE_INFO: np.asarray(self._ratios[i], dtype=np.float64),
                                           LEVEL_INFO: int(self._levels[i])}, i)
        terminated[:] = True
        self._needs_reset[:] = True
        return self._observations(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos

