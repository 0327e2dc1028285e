"""The pruning environment: one step per prunable group, K episodes in lockstep.

An episode walks the prunable groups from input to output. At step ``t`` the agent sees group
``t``'s descriptors and the episode's budget context and picks a keep ratio; after the last
group the K candidates of the K lockstep episodes go to the evaluator pool *together*, and the
terminal reward of each is its accuracy after a short fine-tune.

Observation (all roughly in [0, 1]), for group ``t`` of ``T``::

    [ t/T, is_conv, is_linear, in/max_in, out/max_out, kh/7, kw/7, sh/4, sw/4, ph/4, pw/4,
      params share, MACs share, previous keep ratio,
      per constraint c: limit_c/base_c, min_reachable_c/limit_c, max_reachable_c/limit_c ]

"min/max reachable" keep the groups already decided at their ratios and put the remaining groups
(this one included) at ``min_keep`` or 1: the first is the cost committed so far, the gap between
them what is still to be decided. Analytic costs (params, MACs) use their exact model; any other cost (latency, memory, user
functions) uses MACs as its proxy in the observation and is steered by its multiplier.

Action: one number in [-1, 1], mapped linearly to a keep ratio in [floor, cap]: without walls
[min_keep, 1]; with ``action_wall`` (AMC) the cap is the largest ratio that keeps every analytic
budget reachable if the remaining groups go to ``min_keep``, and with ``budget_fill`` the floor is
the smallest ratio that can still *spend* the budget if the remaining groups keep everything (the
tightest analytic constraint reaches its limit). With both, every candidate lands on the budget
boundary (up to channel rounding) and the agent decides how the budget is shared between groups —
without the floor a policy that keeps little everywhere wastes budget, and nothing in a 64-episode
search teaches it otherwise (BENCHMARKS.md).

Reward and cost: 0 on every step but the last; at the last step the reward is the candidate's
accuracy (a fraction; 0 for an evaluation that failed) and ``info["costs"][c]`` its *measured*
cost divided by the limit, so every Lagrangian budget is 1.0 (a failed evaluation costs 2.0).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import gymnasium as gym
import numpy as np

from ..costs.analytic import AnalyticCosts
from ..pruning.rounding import keep_channels

__all__ = ["PruningEnvSpec", "LockstepPruningEnv", "finetune_iterations_for", "FAILED_COST"]

#: Normalised cost reported for a candidate whose evaluation failed (twice the budget).
FAILED_COST = 2.0

Evaluate = Callable[..., list[dict]]


@dataclass
class PruningEnvSpec:
    """What the env needs about the problem; small enough to ship to env runners."""

    channels: list[int]
    round_to: int
    min_keep: float
    group_features: np.ndarray  # (T, 13) static, normalised
    constraints: list[str]
    limits: dict[str, float]
    base_costs: dict[str, float]
    analytic: Optional[AnalyticCosts]  # exact params/MACs model, or None
    action_wall: bool = True
    budget_fill: bool = False
    min_channels: list[int] = field(default_factory=list)
    finetune_schedule: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])

    @property
    def num_groups(self) -> int:
        return len(self.channels)

    @property
    def observation_size(self) -> int:
        return self.group_features.shape[1] + 1 + 3 * len(self.constraints)

    def counts(self, ratios: Sequence[float]) -> list[int]:
        floors = self.min_channels or [1] * len(self.channels)
        return [max(keep_channels(min(1.0, max(r, 1e-6)), c, self.round_to), f)
                for r, c, f in zip(ratios, self.channels, floors)]

    def proxy_name(self, constraint: str) -> Optional[str]:
        """The analytic cost standing for ``constraint`` in observations and the action wall."""
        if self.analytic is None:
            return None
        return constraint if constraint in AnalyticCosts.NAMES else "macs"

    def proxy_cost(self, constraint: str, ratios: Sequence[float]) -> float:
        """Analytic (or proxy) cost of ``ratios`` as a fraction of the base value of that proxy."""
        name = self.proxy_name(constraint)
        if name is None:
            return float("nan")
        return self.analytic(name, self.counts(ratios)) / self.analytic.base[name]

    @classmethod
    def from_problem(cls, problem, *, action_wall: bool = True, budget_fill: bool = False,
                     finetune_schedule=((0, 0),)) -> "PruningEnvSpec":
        space = problem.space
        analytic = problem.analytic if problem.analytic.exact else None
        groups = space.groups
        max_in = max(g.in_channels for g in groups)
        max_out = max(g.channels for g in groups)
        shares = _cost_shares(problem) if analytic is not None else np.zeros((len(groups), 2))
        feats = []
        for i, g in enumerate(groups):
            feats.append([
                i / len(groups), float(g.root_type.startswith("Conv")), float(g.root_type == "Linear"),
                g.in_channels / max_in, g.channels / max_out,
                g.kernel_size[0] / 7, g.kernel_size[1] / 7, g.stride[0] / 4, g.stride[1] / 4,
                max(g.padding[0], 0) / 4, max(g.padding[1], 0) / 4, shares[i, 0], shares[i, 1],
            ])
        return cls(
            channels=[g.channels for g in groups], round_to=space.round_to,
            min_keep=problem.config.pruning.min_keep, group_features=np.asarray(feats, dtype=np.float32),
            constraints=[b.metric for b in problem.budgets], limits=dict(problem.limits),
            base_costs=dict(problem.base_costs), analytic=analytic, action_wall=action_wall,
            budget_fill=budget_fill, finetune_schedule=[tuple(x) for x in finetune_schedule],
            min_channels=[g.min_channels for g in groups],
        )


def _cost_shares(problem) -> np.ndarray:
    """Per group: fraction of the base params and MACs removed if that group alone went to min_keep."""
    a, groups = problem.analytic, problem.space.groups
    full = [g.channels for g in groups]
    out = np.zeros((len(groups), 2), dtype=np.float32)
    for i, g in enumerate(groups):
        counts = list(full)
        counts[i] = keep_channels(problem.config.pruning.min_keep, g.channels, problem.space.round_to)
        for j, name in enumerate(("params", "macs")):
            out[i, j] = 1.0 - a(name, counts) / a.base[name]
    return out


def _bisect(holds: Callable[[float], bool], lo: float, hi: float, steps: int = 20) -> tuple[float, float]:
    """Narrow ``[lo, hi]`` around the point where a monotone ``holds`` turns from true (at ``lo``)
    to false (at ``hi``); returns the last point known to hold and the first known not to."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
    return lo, hi


def finetune_iterations_for(schedule: Sequence[tuple[int, int]], episodes_done: int) -> int:
    """The fine-tune length for the next candidates: the last ``(episodes, iterations)`` entry reached.

    >>> finetune_iterations_for([(0, 0), (64, 32), (192, 128)], 100)
    32
    """
    iterations = 0
    for start, n in sorted(schedule):
        if episodes_done >= start:
            iterations = int(n)
    return iterations


class LockstepPruningEnv(gym.vector.VectorEnv):
    """``num_envs`` pruning episodes stepped together; candidates are evaluated as one batch.

    Args:
        spec: the problem as the env sees it.
        evaluate: ``evaluate(list_of_ratios, finetune_iterations=n, seeds=[...]) -> rows``; e.g.
            :meth:`rayprune.evaluation.pool.EvaluatorPool.evaluate_many`.
        num_envs: K lockstep episodes.
        on_rows: called with the evaluated rows (plus episode bookkeeping) after every batch.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, spec: PruningEnvSpec, evaluate: Evaluate, *, num_envs: int = 4,
                 on_rows: Optional[Callable[[list[dict]], None]] = None, seed: int = 0) -> None:
        self.pspec = spec
        self.evaluate = evaluate
        self.on_rows = on_rows
        self.num_envs = int(num_envs)
        obs_size = spec.observation_size
        self.single_observation_space = gym.spaces.Box(-10.0, 10.0, (obs_size,), np.float32)
        self.single_action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.multipliers: dict[str, float] = {}
        self.training_iteration = 0  # set by the driver before each iteration; rows carry it
        self.episodes_done = 0
        self.batches_done = 0
        self._seed = seed
        self._t = 0
        self._ratios = np.ones((self.num_envs, spec.num_groups))
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)
        self.id = uuid.uuid4().hex[:8]

    # -- hooks ---------------------------------------------------------------------------------
    def set_multipliers(self, multipliers: dict[str, float]) -> None:
        """Receive the Lagrange multipliers (PPO-Lagrangian pushes them every iteration)."""
        self.multipliers = dict(multipliers)

    # -- maths -----------------------------------------------------------------------------------
    def upper_bound(self, decided: Sequence[float], t: int) -> float:
        """Largest keep ratio for group ``t`` that keeps every analytic budget reachable."""
        s = self.pspec
        if not s.action_wall or s.analytic is None:
            return 1.0
        analytic = [c for c in s.constraints if c in AnalyticCosts.NAMES]
        if not analytic:
            return 1.0
        tail = [s.min_keep] * (s.num_groups - t - 1)

        def ok(r: float) -> bool:
            counts = s.counts([*decided, r, *tail])
            return all(s.analytic(c, counts) <= s.limits[c] * (1 + 1e-9) for c in analytic)

        if ok(1.0):
            return 1.0
        if not ok(s.min_keep):
            return s.min_keep
        return _bisect(ok, s.min_keep, 1.0)[0]

    def lower_bound(self, decided: Sequence[float], t: int) -> float:
        """Smallest keep ratio for group ``t`` from which the tightest analytic budget can still be
        reached if every later group keeps everything (``budget_fill``; else ``min_keep``)."""
        s = self.pspec
        if not (s.action_wall and s.budget_fill) or s.analytic is None:
            return s.min_keep
        analytic = [c for c in s.constraints if c in AnalyticCosts.NAMES]
        if not analytic:
            return s.min_keep
        tail = [1.0] * (s.num_groups - t - 1)

        def spends(r: float) -> bool:
            counts = s.counts([*decided, r, *tail])
            return any(s.analytic(c, counts) >= s.limits[c] for c in analytic)

        if spends(s.min_keep):
            return s.min_keep
        if not spends(1.0):
            return 1.0
        return _bisect(lambda r: not spends(r), s.min_keep, 1.0)[1]

    def _observation(self, i: int) -> np.ndarray:
        s, t = self.pspec, self._t
        decided = list(self._ratios[i, :t])
        rest = s.num_groups - t
        prev = self._ratios[i, t - 1] if t > 0 else 1.0
        ctx = []
        for c in s.constraints:
            rel_limit = s.limits[c] / s.base_costs[c] if s.base_costs[c] else 1.0
            lo = s.proxy_cost(c, [*decided, *[s.min_keep] * rest])
            hi = s.proxy_cost(c, [*decided, *[1.0] * rest])
            scale = rel_limit if s.proxy_name(c) == c else 1.0
            ctx += [rel_limit] + [0.0 if math.isnan(v) else v / max(scale, 1e-9) for v in (lo, hi)]
        obs = np.concatenate([s.group_features[min(t, s.num_groups - 1)], [prev], ctx]).astype(np.float32)
        return np.clip(obs, -10.0, 10.0)

    def _observations(self) -> np.ndarray:
        return np.stack([self._observation(i) for i in range(self.num_envs)])

    def action_to_ratio(self, action: float, decided: Sequence[float], t: int) -> float:
        a = float(np.clip(action, -1.0, 1.0))
        hi = self.upper_bound(decided, t)
        if not self.pspec.budget_fill:
            return min(self.pspec.min_keep + (a + 1.0) / 2.0 * (1.0 - self.pspec.min_keep), hi)
        lo = min(self.lower_bound(decided, t), hi)
        return lo + (a + 1.0) / 2.0 * (hi - lo)

    # -- gymnasium API --------------------------------------------------------------------------
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            self._seed = seed
        self._t = 0
        self._ratios[:] = 1.0
        self._needs_reset[:] = False
        return self._observations(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.float64).reshape(self.num_envs, -1)[:, 0]
        if self._needs_reset.all():  # NEXT_STEP autoreset: this call only resets
            obs, _ = self.reset()
            zeros = np.zeros(self.num_envs)
            return obs, zeros, zeros.astype(bool), zeros.astype(bool), {}
        t = self._t
        for i in range(self.num_envs):
            self._ratios[i, t] = self.action_to_ratio(actions[i], list(self._ratios[i, :t]), t)
        self._t += 1
        rewards = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        if self._t < self.pspec.num_groups:
            return self._observations(), rewards, terminated, terminated.copy(), infos
        # terminal step: evaluate the K candidates together
        n_ft = finetune_iterations_for(self.pspec.finetune_schedule, self.episodes_done)
        seeds = [self._seed * 100_003 + self.episodes_done + i for i in range(self.num_envs)]
        rows = self.evaluate([list(r) for r in self._ratios], finetune_iterations=n_ft, seeds=seeds)
        for i, row in enumerate(rows):
            ok = row.get("status") == "ok"
            rewards[i] = float(row["accuracy"]) if ok else 0.0
            costs = {c: (float(row[c]) / self.pspec.limits[c] if ok and row.get(c) is not None else FAILED_COST)
                     for c in self.pspec.constraints}
            info = {"costs": costs, "accuracy": rewards[i], "feasible": float(bool(row.get("feasible")))}
            infos = self._add_info(infos, info, i)
        if self.on_rows is not None:
            self.on_rows([{**row, "episode": self.episodes_done + i, "env_id": self.id,
                           "multipliers": dict(self.multipliers)} for i, row in enumerate(rows)])
        self.episodes_done += self.num_envs
        self.batches_done += 1
        terminated[:] = True
        self._needs_reset[:] = True
        # the observation after a terminal step is not used (the next step resets)
        return self._observations_terminal(), rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos

    def _observations_terminal(self) -> np.ndarray:
        t, self._t = self._t, self.pspec.num_groups - 1
        try:
            return self._observations()
        finally:
            self._t = t
