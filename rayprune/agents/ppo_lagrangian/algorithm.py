"""The PPO-Lagrangian Algorithm: rollout, dual ascent before the policy update, PPO epochs."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.algorithms.ppo.ppo import PPO
from ray.rllib.execution.rollout_ops import synchronous_parallel_sample
from ray.rllib.utils.annotations import override
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rayprune.agents.cost_gae import EpisodeCostTracker
from rayprune.agents.lagrange import LagrangeSet
from rayprune.agents.ppo_lagrangian.config import PPOLagrangianConfig
from rayprune.agents.ppo_lagrangian.learner import PPOLagrangianTorchLearner
from rayprune.agents.ppo_lagrangian.loss import (
    EPISODE_COST_METRIC,
    LAGRANGE_METRIC,
    LAGRANGE_STATE_KEY,
    SET_MULTIPLIERS_METHOD,
    VIOLATION_RATE_METRIC,
    metric_name,
)

__all__ = ["PPOLagrangian"]


# --- algorithm ------------------------------------------------------------------------------
def _set_learner_multipliers(
    learner: PPOLagrangianTorchLearner, *, multipliers: list[float]
) -> None:
    learner.set_multipliers(multipliers)


def _set_env_multipliers(env_runner: Any, *, multipliers: dict[str, float]) -> None:
    """Hands ν to the env runner's env: the vector env itself, or each sub-env of a sync vector."""
    env = getattr(env_runner, "env", None)
    if env is None:  # e.g. a local runner without env next to remote runners
        return
    vector_env = env.unwrapped
    if hasattr(vector_env, SET_MULTIPLIERS_METHOD):
        getattr(vector_env, SET_MULTIPLIERS_METHOD)(dict(multipliers))
    elif isinstance(vector_env, gym.vector.SyncVectorEnv):
        for sub_env in vector_env.envs:
            if sub_env.has_wrapper_attr(SET_MULTIPLIERS_METHOD):
                sub_env.get_wrapper_attr(SET_MULTIPLIERS_METHOD)(dict(multipliers))


class PPOLagrangian(PPO):
    """PPO with one Lagrange multiplier per constraint, updated by dual ascent each iteration.

    ``self.lagranges`` (a :class:`LagrangeSet`) is part of the algorithm state, so
    ``algo.save()`` / ``Algorithm.from_checkpoint()`` / ``algo.restore()`` keep the multipliers
    (θ and Adam state) together with the iteration count.
    """

    @classmethod
    @override(PPO)
    def get_default_config(cls) -> PPOLagrangianConfig:
        return PPOLagrangianConfig()

    @override(PPO)
    def setup(self, config: AlgorithmConfig) -> None:
        super().setup(config)
        self.lagranges = LagrangeSet(
            self.config.cost_budget_map,
            init=self.config.lagrange_init,
            lr=self.config.lagrange_lr,
            min_value=self.config.lagrange_min,
        )
        self._episode_costs = EpisodeCostTracker(self.config.cost_keys)
        self._broadcast_multipliers()

    @override(PPO)
    def training_step(self) -> None:
        # 1. Rollout (as PPO.training_step).
        with self.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
            if self.config.count_steps_by == "agent_steps":
                batch_size = {"max_agent_steps": self.config.total_train_batch_size}
            else:
                batch_size = {"max_env_steps": self.config.total_train_batch_size}
            episodes, env_runner_results = synchronous_parallel_sample(
                worker_set=self.env_runner_group,
                sample_timeout_s=self.config.sample_timeout_s,
                _uses_new_env_runners=True,
                _return_metrics=True,
                **batch_size,
            )
            if not episodes:
                return
            self.metrics.aggregate(env_runner_results, key=ENV_RUNNER_RESULTS)
        if self.config.defer_learning:  # ask/tell: the caller fills in rewards, then learn_pending()
            self.pending_episodes = list(episodes)
            return
        self._learn(episodes)

    def learn_pending(self, replay: Sequence[Any] = ()) -> None:
        """Dual ascent and PPO update on the episodes of the last ``train()`` (``defer_learning``),
        once their rewards and costs have been written into them. Episodes whose last info says
        ``failed`` (their candidate could not be scored) do not move the multipliers.

        ``replay``: earlier episodes (fresh copies, rewards written) that join the PPO update but
        not the dual ascent, e.g. a search's best episodes so far (self-imitation); PPO's ratio to
        the policy that sampled them (their stored log-probabilities) is clipped as for any other."""
        episodes, self.pending_episodes = getattr(self, "pending_episodes", []), []
        if not episodes:
            raise RuntimeError("learn_pending() without pending episodes: call train() first (defer_learning=True).")
        self._learn(episodes, replay=list(replay))

    def _learn(self, episodes: list, replay: Sequence[Any] = ()) -> None:
        # 2. Dual ascent on this rollout's episode costs, before the policy update (OmniSafe).
        #    Must run before the Learner pipeline, which extends the (shared) episode objects.
        self._dual_update(self._episode_costs.add(episodes))

        # 3.+4. Advantages (Learner connector pipeline) and PPO epochs (as PPO.training_step).
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=list(episodes) + list(replay),
                timesteps={
                    NUM_ENV_STEPS_SAMPLED_LIFETIME: self.metrics.peek(
                        (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
                    ),
                    NUM_MODULE_STEPS_TRAINED_LIFETIME: self.metrics.peek(
                        (LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME),
                        default=0,
                    ),
                },
                num_epochs=self.config.num_epochs,
                minibatch_size=self.config.minibatch_size,
                shuffle_batch_per_epoch=self.config.shuffle_batch_per_epoch,
            )
            self.metrics.aggregate(learner_results, key=LEARNER_RESULTS)

        with self.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
            self.env_runner_group.sync_weights(
                from_worker_or_learner_group=self.learner_group,
                policies=set(learner_results[0].keys()) - {ALL_MODULES},
                inference_only=True,
            )

    def _dual_update(self, episode_costs: np.ndarray) -> None:
        """One dual-ascent step per constraint on ``episode_costs`` ``(num_episodes, num_costs)``.

        Skipped (multipliers unchanged) when no episode finished in this rollout.
        """
        keys, budgets = self.config.cost_keys, np.asarray(self.config.cost_budgets)
        if len(episode_costs):
            mean_costs = episode_costs.mean(axis=0)
            violation_rates = (episode_costs > budgets).mean(axis=0)
            self.lagranges.update(dict(zip(keys, mean_costs.tolist())))
            for i, key in enumerate(keys):
                self.metrics.log_value(
                    metric_name(EPISODE_COST_METRIC, key), float(mean_costs[i]), reduce="item"
                )
                self.metrics.log_value(
                    metric_name(VIOLATION_RATE_METRIC, key),
                    float(violation_rates[i]),
                    reduce="item",
                )
        for key, value in self.lagranges.values().items():
            self.metrics.log_value(metric_name(LAGRANGE_METRIC, key), value, reduce="item")
        self._broadcast_multipliers()

    def _broadcast_multipliers(self) -> None:
        """Sends ν to every learner (for the loss) and every env runner's env (for logging)."""
        values = self.lagranges.values()
        self.learner_group.foreach_learner(
            _set_learner_multipliers, multipliers=list(values.values())
        )
        for group in (self.env_runner_group, self.eval_env_runner_group):
            if group is not None:
                group.foreach_env_runner(
                    functools.partial(_set_env_multipliers, multipliers=values)
                )

    @override(PPO)
    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict[str, Any]:
        state = super().get_state(components, not_components=not_components, **kwargs)
        if self._check_component(LAGRANGE_STATE_KEY, components, not_components):
            state[LAGRANGE_STATE_KEY] = self.lagranges.state_dict()
        return state

    @override(PPO)
    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        if LAGRANGE_STATE_KEY in state:
            self.lagranges.load_state_dict(state[LAGRANGE_STATE_KEY])
            self._episode_costs.reset()
            self._broadcast_multipliers()
