"""Constraint costs read from episodes, and their GAE advantages for PPO-Lagrangian.

An env reports the cost of a step in that step's ``info``, either grouped or flat::

    info = {"costs": {"params": 0.3, "latency": 0.01}}     # grouped under COSTS_INFO_KEY
    info = {"params": 0.3, "latency": 0.01}                 # flat, one float per cost key

A key that is absent costs 0 on that step (the pruning env reports cost only at the last step).

In an RLlib episode chunk, ``infos[0]`` comes from ``reset()`` (or is the last info of the previous
chunk) and ``infos[t + 1]`` from the step that took action ``a_t``, so the cost of step ``t`` is
read from ``infos[t + 1]``.

For constraint ``i`` the advantages follow the reward's (Schulman et al. 2016), with the cost
critic ``V_Ci`` and their own ``γ_c, λ_c`` (METHODS.md: λ_c = 1, γ = 0.99)::

    δ_t  = c_t + γ_c · (1 - terminated_t) · V_Ci(s_{t+1}) - V_Ci(s_t)
    A_Ci,t = δ_t + γ_c · λ_c · A_Ci,t+1          (not propagated across episode or chunk ends)
    target_Ci,t = A_Ci,t + V_Ci(s_t)

and are standardised per constraint over the train batch, as RLlib does for the reward.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from ray.rllib.connectors.common.numpy_to_tensor import NumpyToTensor
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.columns import Columns
from ray.rllib.utils.annotations import override
from ray.rllib.utils.numpy import convert_to_numpy
from ray.rllib.utils.postprocessing.value_predictions import compute_value_targets

__all__ = [
    "COSTS_INFO_KEY",
    "FAILED_INFO_KEY",
    "COST_ADVANTAGES",
    "COST_VALUE_TARGETS",
    "CostGeneralAdvantageEstimation",
    "EpisodeCostTracker",
    "cost_value_targets",
    "episode_step_costs",
    "standardize",
    "step_costs",
]

#: ``info`` key under which an env may group its per-step costs by constraint name.
COSTS_INFO_KEY = "costs"
#: ``info`` flag of an episode's last step whose cost could not be measured (left out of the dual ascent).
FAILED_INFO_KEY = "failed"
#: Train-batch column: standardised cost advantages, shape ``(B, num_costs)``.
COST_ADVANTAGES = "cost_advantages"
#: Train-batch column: cost-critic regression targets, shape ``(B, num_costs)``.
COST_VALUE_TARGETS = "cost_value_targets"


def step_costs(info: Mapping[str, Any] | None, cost_keys: Sequence[str]) -> np.ndarray:
    """The cost of one step for each key, read from the step's ``info`` (absent → 0).

    Example:
        >>> step_costs({"costs": {"params": 0.3}}, ["params", "latency"]).tolist()
        [0.3, 0.0]
    """
    info = info or {}
    grouped = info.get(COSTS_INFO_KEY)
    source = grouped if isinstance(grouped, Mapping) else info
    costs = np.zeros(len(cost_keys), dtype=np.float64)
    for i, key in enumerate(cost_keys):
        if key in source:
            value = float(source[key])
            if not math.isfinite(value):
                raise ValueError(
                    f"The cost '{key}' reported in an env step's info must be finite; got {value}. "
                    "Report failed evaluations as a finite (penalty) cost."
                )
            costs[i] = value
    return costs


def episode_step_costs(episode: Any, cost_keys: Sequence[str]) -> np.ndarray:
    """Per-step costs ``c_t`` of a single-agent episode chunk, ``(len(episode), num_costs)``."""
    step_infos = episode.get_infos()[1:]  # infos[t + 1] belongs to step t
    costs = np.zeros((len(step_infos), len(cost_keys)), dtype=np.float64)
    for t, info in enumerate(step_infos):
        costs[t] = step_costs(info, cost_keys)
    return costs


def cost_value_targets(
    values: np.ndarray,
    costs: np.ndarray,
    terminateds: np.ndarray,
    truncateds: np.ndarray,
    *,
    gamma: float,
    lambda_: float,
) -> np.ndarray:
    """GAE value targets for every constraint: column ``i`` of ``values``/``costs`` is one critic.

    Uses RLlib's own reward recursion (``compute_value_targets``) column by column, so cost and
    reward targets follow the same episode/chunk-boundary conventions. Shapes: ``(N, num_costs)``
    for values and costs, ``(N,)`` for the flags.
    """
    targets = np.empty_like(values, dtype=np.float32)
    for i in range(values.shape[1]):
        targets[:, i] = compute_value_targets(
            values=values[:, i],
            rewards=costs[:, i],
            terminateds=terminateds,
            truncateds=truncateds,
            gamma=gamma,
            lambda_=lambda_,
        )
    return targets


def standardize(x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(x - mean) / max(1e-4, std)`` per column, statistics over the rows where ``mask`` holds."""
    rows = x if mask is None else x[mask]
    return (x - rows.mean(axis=0)) / np.maximum(1e-4, rows.std(axis=0))


class EpisodeCostTracker:
    """Sums per-step costs over episodes that may arrive in several chunks.

    ``add(chunks)`` returns the total cost of every episode that finished in ``chunks``, shape
    ``(num_finished, num_costs)``; the costs of unfinished chunks are held (by episode id) until
    their episode's last chunk arrives. An episode whose last info is flagged
    :data:`FAILED_INFO_KEY` is left out.
    """

    def __init__(self, cost_keys: Sequence[str]) -> None:
        self.cost_keys = list(cost_keys)
        self._partial: dict[str, np.ndarray] = {}

    def add(self, episodes: Sequence[Any]) -> np.ndarray:
        finished = []
        for episode in episodes:
            total = self._partial.pop(episode.id_, 0.0) + episode_step_costs(
                episode, self.cost_keys
            ).sum(axis=0)
            if episode.is_done:
                last = episode.get_infos(-1) if len(episode) else None
                if isinstance(last, Mapping) and last.get(FAILED_INFO_KEY):
                    continue  # a candidate that could not be measured says nothing about its cost
                finished.append(total)
            else:
                self._partial[episode.id_] = total
        return np.asarray(finished, dtype=np.float64).reshape(-1, len(self.cost_keys))

    def reset(self) -> None:
        """Forgets unfinished episodes (e.g. after the env runners were re-created)."""
        self._partial.clear()


class CostGeneralAdvantageEstimation(ConnectorV2):
    """Learner connector piece adding cost advantages and cost-critic targets to the train batch.

    The cost counterpart of RLlib's ``GeneralAdvantageEstimation`` and placed right after it, at
    the end of the Learner pipeline: the episodes have already been extended by one artificial
    timestep (``AddOneTsToEpisodesAndTruncate``), so the batch holds ``len(episode)`` rows per
    episode, the last one a masked-out bootstrap row whose cost is zeroed here.

    Adds ``COST_ADVANTAGES`` (standardised per constraint) and ``COST_VALUE_TARGETS``, both of
    shape ``(B, num_costs)``, for every module implementing ``compute_cost_values``.
    """

    def __init__(
        self,
        input_observation_space=None,
        input_action_space=None,
        *,
        cost_keys: Sequence[str],
        gamma: float,
        lambda_: float,
    ) -> None:
        super().__init__(input_observation_space, input_action_space)
        self.cost_keys = list(cost_keys)
        self.gamma = gamma
        self.lambda_ = lambda_
        self._numpy_to_tensor = None

    @override(ConnectorV2)
    def __call__(self, *, rl_module, episodes, batch, **kwargs):
        sa_episodes = list(
            self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False)
        )
        cost_values = rl_module.foreach_module(
            func=lambda mid, module: (
                module.compute_cost_values(batch[mid])
                if mid in batch and hasattr(module, "compute_cost_values")
                else None
            ),
            return_dict=True,
        )
        results, device = {}, None
        for module_id, values in cost_values.items():
            if values is None:
                continue
            if rl_module[module_id].is_stateful():
                raise NotImplementedError(
                    "PPO-Lagrangian's cost advantages do not support stateful (RNN) modules."
                )
            device = values.device
            module_batch = batch[module_id]
            module_episodes = [e for e in sa_episodes if e.module_id in (None, module_id)]
            costs = np.concatenate(
                [episode_step_costs(e, self.cost_keys) for e in module_episodes]
            )
            values = convert_to_numpy(values).astype(np.float32)
            if costs.shape != values.shape:
                raise RuntimeError(
                    f"Cost rows {costs.shape} do not line up with cost-critic rows {values.shape}; "
                    "the Learner pipeline must extend episodes by one timestep before this piece."
                )
            valid = convert_to_numpy(module_batch[Columns.LOSS_MASK]).astype(bool)
            costs[~valid] = 0.0  # the artificial bootstrap step costs nothing, like its reward
            costs = costs.astype(np.float32)
            targets = cost_value_targets(
                values,
                costs,
                convert_to_numpy(module_batch[Columns.TERMINATEDS]).astype(np.float32),
                convert_to_numpy(module_batch[Columns.TRUNCATEDS]).astype(np.float32),
                gamma=self.gamma,
                lambda_=self.lambda_,
            )
            # Statistics over real steps only (RLlib's reward GAE also counts bootstrap rows).
            results[module_id] = {
                COST_ADVANTAGES: standardize(targets - values, valid).astype(np.float32),
                COST_VALUE_TARGETS: targets,
            }

        if not results:
            return batch
        if self._numpy_to_tensor is None:
            self._numpy_to_tensor = NumpyToTensor(as_learner_connector=True, device=device)
        tensors = self._numpy_to_tensor(rl_module=rl_module, batch=results, episodes=episodes)
        for module_id, columns in tensors.items():
            batch[module_id].update(columns)
        return batch
