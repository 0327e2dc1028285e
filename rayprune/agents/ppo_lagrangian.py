"""PPO-Lagrangian on RLlib's new API stack (RLModule + Learner + connectors).

The method of Malik et al. 2022 (METHODS.md §1), for any gymnasium env that reports per-step
costs in ``info`` (see :mod:`rayprune.agents.cost_gae`). One iteration, in the order it runs:

1. sample episodes with the current policy (env runners);
2. dual ascent: each multiplier ``ν_i`` takes one Adam step on the mean episode cost of the
   episodes that finished in this rollout vs its budget ``b_i`` — *before* the policy update, as
   in OmniSafe — and the new ``ν`` go to the learners and to envs that have ``set_multipliers``;
3. the Learner pipeline computes reward GAE (λ, γ) and, per constraint, cost GAE (λ_c, γ_c) with
   a separate cost critic; both advantages are standardised;
4. PPO epochs on the penalised, renormalised surrogate::

       L_π = [ -min(ρ·A_R, clip(ρ, 1±ε)·A_R) + Σ_i ν_i·ρ·A_Ci ] / (1 + Σ_i ν_i)
       L   = E[ L_π + c_vf·(V_R - target_R)² + c_cvf·mean_i (V_Ci - target_Ci)² - c_H·H(π) ]

   (squared errors clamped at ``vf_clip_param`` as in RLlib's PPO; plus RLlib's KL term if
   ``use_kl_loss``, off by default here).

Example (``MyEnv`` reports ``info["costs"] = {"params": ...}`` at its last step)::

    config = (
        PPOLagrangianConfig()
        .environment(MyEnv)                       # a gym.Env class, or a registered name
        .env_runners(num_env_runners=0)
        .training(cost_keys=["params"], cost_budgets=[0.3])
    )
    algo = config.build_algo()
    result = algo.train()
    result["lagrange/params"], result["cost/params"], result["cost_violation_rate/params"]

Vector envs (K lockstep episodes per env runner), as RLlib 2.60 wants them::

    def make_env(config: dict) -> gymnasium.vector.VectorEnv:
        # config is a *plain dict*: env_config plus "num_envs" (= num_envs_per_env_runner);
        # EnvContext attributes such as worker_index do not survive. Distinct runners are told
        # apart by the seed of the first reset(seed=config.seed + worker_index).
        return MyVectorEnv(num_envs=config["num_envs"])  # metadata["autoreset_mode"] must be
                                                         # AutoresetMode.NEXT_STEP
    register_env("my-vector-env", make_env)   # a bare function is not a valid `env`
    config.environment("my-vector-env").env_runners(
        num_envs_per_env_runner=K, gym_env_vectorize_mode=gymnasium.VectorizeMode.VECTOR_ENTRY_POINT
    )

The vector env returns gymnasium's dict-of-arrays infos (e.g. built with ``self._add_info``);
RLlib splits them per sub-env (``DictInfoToList``), so each episode sees its own costs. If the
vector env (or, for RLlib's own sync vectorisation, each sub-env) has ``set_multipliers``, it is
called with ``{cost_key: ν}`` at setup and after every dual update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig, NotProvided
from ray.rllib.algorithms.ppo.ppo import (
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
    PPO,
    PPOConfig,
)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY, Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.evaluation.postprocessing import Postprocessing
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
from ray.rllib.utils.torch_utils import explained_variance

from rayprune.agents.cost_gae import (
    COST_ADVANTAGES,
    COST_VALUE_TARGETS,
    CostGeneralAdvantageEstimation,
    EpisodeCostTracker,
)
from rayprune.agents.cost_module import (
    NUM_COSTS_MODEL_KEY,
    CostValueFunctionAPI,
    PPOLagrangianTorchRLModule,
)
from rayprune.agents.lagrange import LagrangeSet

__all__ = [
    "EPISODE_COST_METRIC",
    "LAGRANGE_METRIC",
    "LAGRANGE_STATE_KEY",
    "SET_MULTIPLIERS_METHOD",
    "VIOLATION_RATE_METRIC",
    "PPOLagrangian",
    "PPOLagrangianConfig",
    "PPOLagrangianTorchLearner",
    "clipped_surrogate",
    "lagrangian_policy_loss",
    "metric_name",
]

# --- names shared with the Tune reporter, Parquet rows and dashboards -------------------------
#: ``result["lagrange/<key>"]``: the multiplier ν used in this iteration's policy update.
LAGRANGE_METRIC = "lagrange"
#: ``result["cost/<key>"]``: mean episode cost (sum over steps) of the episodes that finished in
#: this iteration's rollout; ``None`` in an iteration where no episode finished.
EPISODE_COST_METRIC = "cost"
#: ``result["cost_violation_rate/<key>"]``: fraction of those episodes with cost > budget.
VIOLATION_RATE_METRIC = "cost_violation_rate"
#: Learner results, per module: the cost critic's (clamped) squared error and the cost term.
COST_VF_LOSS_KEY = "cost_vf_loss"
COST_VF_EXPLAINED_VAR_KEY = "cost_vf_explained_var"
COST_SURROGATE_KEY = "cost_surrogate"
REWARD_SURROGATE_KEY = "reward_surrogate"
#: Algorithm-state entry holding the multipliers (θ and Adam state) in checkpoints.
LAGRANGE_STATE_KEY = "lagrange"
#: Envs (vector or sub-envs) defining this method receive ``{cost_key: ν}`` every iteration.
SET_MULTIPLIERS_METHOD = "set_multipliers"


def metric_name(prefix: str, cost_key: str) -> str:
    """``metric_name(LAGRANGE_METRIC, "params") == "lagrange/params"``."""
    return f"{prefix}/{cost_key}"


# --- the maths ------------------------------------------------------------------------------
def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip_param: float) -> torch.Tensor:
    """PPO's per-sample objective ``min(ρ·A, clip(ρ, 1-ε, 1+ε)·A)`` (to be maximised)."""
    return torch.min(ratio * adv, torch.clamp(ratio, 1.0 - clip_param, 1.0 + clip_param) * adv)


def lagrangian_policy_loss(
    ratio: torch.Tensor,
    adv_r: torch.Tensor,
    adv_c: torch.Tensor,
    multipliers: torch.Tensor,
    clip_param: float,
) -> torch.Tensor:
    """Per-sample policy loss of PPO-Lagrangian (METHODS.md §1), to be minimised::

        L = [ -min(ρ·A_R, clip(ρ, 1±ε)·A_R) + Σ_i ν_i·ρ·A_Ci ] / (1 + Σ_i ν_i)

    Shapes: ``ratio``, ``adv_r`` ``(B,)``; ``adv_c`` ``(B, num_costs)``; ``multipliers``
    ``(num_costs,)``. With ``ν = 0`` this is PPO's clipped loss; the cost term is not clipped.
    """
    cost_term = ratio * (adv_c @ multipliers)
    return (-clipped_surrogate(ratio, adv_r, clip_param) + cost_term) / (1.0 + multipliers.sum())


def _check_range(
    name: str, value: Any, *, low: float, high: float = math.inf, low_inclusive: bool = True
) -> None:
    """Raises ValueError naming ``name`` unless ``value`` is a finite real in the range."""
    ok = isinstance(value, (int, float)) and math.isfinite(value) and value <= high
    ok = ok and (value >= low if low_inclusive else value > low)
    if not ok:
        bounds = f"{'[' if low_inclusive else '('}{low}, {high}]"
        raise ValueError(f"The '{name}' of PPOLagrangianConfig must be in {bounds}; got {value!r}.")


# --- config ---------------------------------------------------------------------------------
class PPOLagrangianConfig(PPOConfig):
    """PPOConfig plus the constraints; defaults follow METHODS.md §1 where it gives a value.

    Reward side (changed from PPOConfig): ``lr=3e-4, lambda_=0.95, gamma=0.99, clip_param=0.2,
    num_epochs=10, minibatch_size=64, train_batch_size_per_learner=128, use_kl_loss=False``.

    Example:
        >>> config = PPOLagrangianConfig().training(
        ...     cost_keys=["params"], cost_budgets=[0.3], lagrange_init=1.0, lagrange_lr=1.0
        ... )
        >>> config.cost_gae_lambda, config.cost_gamma
        (1.0, 0.99)
    """

    def __init__(self, algo_class=None) -> None:
        super().__init__(algo_class=algo_class or PPOLagrangian)
        self.lr = 3e-4
        self.lambda_ = 0.95
        self.gamma = 0.99
        self.clip_param = 0.2
        self.num_epochs = 10
        self.minibatch_size = 64
        self.train_batch_size_per_learner = 128
        self.use_kl_loss = False

        self.cost_keys: list[str] = []
        self.cost_budgets: list[float] = []
        self.lagrange_init = 1.0
        self.lagrange_lr = 1.0
        self.lagrange_min = 0.0
        self.cost_gamma = 0.99
        self.cost_gae_lambda = 1.0
        self.cost_vf_loss_coeff = 1.0
        self.defer_learning = False

    @override(PPOConfig)
    def training(
        self,
        *,
        cost_keys: Sequence[str] = NotProvided,
        cost_budgets: Sequence[float] = NotProvided,
        lagrange_init: float = NotProvided,
        lagrange_lr: float = NotProvided,
        lagrange_min: float = NotProvided,
        cost_gamma: float = NotProvided,
        cost_gae_lambda: float = NotProvided,
        cost_vf_loss_coeff: float = NotProvided,
        defer_learning: bool = NotProvided,
        **kwargs,
    ) -> PPOLagrangianConfig:
        """PPO's training settings plus the constraints.

        Args:
            cost_keys: Names of the constraints, as the env reports them in ``info`` (either
                ``info["costs"][key]`` or ``info[key]``).
            cost_budgets: One budget per key on the mean episode cost (sum over steps).
            lagrange_init: Starting multiplier ν₀ > 0 of every constraint.
            lagrange_lr: Adam learning rate of the dual ascent on θ (ν = softplus(θ)).
            lagrange_min: Floor of every multiplier (the authors' ``-pmv``; 0 in METHODS.md).
            cost_gamma: Discount γ_c of the costs.
            cost_gae_lambda: GAE λ_c of the cost advantages.
            cost_vf_loss_coeff: Weight of the cost critic's loss.
            defer_learning: Ask/tell mode. ``train()`` only samples and keeps the episodes
                (:attr:`PPOLagrangian.pending_episodes`); the caller writes each episode's
                reward and costs into them (e.g. after scoring its candidate elsewhere) and calls
                :meth:`PPOLagrangian.learn_pending` for the dual ascent and the PPO update.
        """
        super().training(**kwargs)
        if cost_keys is not NotProvided:
            self.cost_keys = [str(key) for key in cost_keys]
        if cost_budgets is not NotProvided:
            self.cost_budgets = [float(budget) for budget in cost_budgets]
        if lagrange_init is not NotProvided:
            self.lagrange_init = lagrange_init
        if lagrange_lr is not NotProvided:
            self.lagrange_lr = lagrange_lr
        if lagrange_min is not NotProvided:
            self.lagrange_min = lagrange_min
        if cost_gamma is not NotProvided:
            self.cost_gamma = cost_gamma
        if cost_gae_lambda is not NotProvided:
            self.cost_gae_lambda = cost_gae_lambda
        if cost_vf_loss_coeff is not NotProvided:
            self.cost_vf_loss_coeff = cost_vf_loss_coeff
        if defer_learning is not NotProvided:
            self.defer_learning = bool(defer_learning)
        return self

    @property
    def cost_budget_map(self) -> dict[str, float]:
        return dict(zip(self.cost_keys, self.cost_budgets))

    @override(PPOConfig)
    def validate(self) -> None:
        super().validate()
        if not (self.enable_rl_module_and_learner and self.enable_env_runner_and_connector_v2):
            raise ValueError("PPOLagrangian runs on RLlib's new API stack only.")
        if self.framework_str != "torch":
            raise ValueError(
                f"The 'framework' of PPOLagrangian must be 'torch'; got {self.framework_str!r}."
            )
        if self.is_multi_agent:
            raise ValueError("PPOLagrangian supports single-agent envs only.")
        if not self.cost_keys or len(set(self.cost_keys)) != len(self.cost_keys):
            raise ValueError(
                "The 'cost_keys' of PPOLagrangianConfig must name at least one constraint, each "
                f"once; got {self.cost_keys}."
            )
        if len(self.cost_budgets) != len(self.cost_keys):
            raise ValueError(
                f"The 'cost_budgets' of PPOLagrangianConfig must hold one budget per cost key "
                f"{self.cost_keys}; got {self.cost_budgets}."
            )
        for key, budget in self.cost_budget_map.items():
            if not math.isfinite(budget):
                raise ValueError(f"The budget of constraint '{key}' must be finite; got {budget}.")
        _check_range("lagrange_init", self.lagrange_init, low=0.0, low_inclusive=False)
        _check_range("lagrange_lr", self.lagrange_lr, low=0.0, low_inclusive=False)
        _check_range("lagrange_min", self.lagrange_min, low=0.0, high=self.lagrange_init)
        _check_range("cost_gamma", self.cost_gamma, low=0.0, high=1.0)
        _check_range("cost_gae_lambda", self.cost_gae_lambda, low=0.0, high=1.0)
        _check_range("cost_vf_loss_coeff", self.cost_vf_loss_coeff, low=0.0)

    @override(PPOConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=PPOLagrangianTorchRLModule)

    @override(PPOConfig)
    def get_default_learner_class(self) -> type[Learner]:
        return PPOLagrangianTorchLearner

    @property
    @override(PPOConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {NUM_COSTS_MODEL_KEY: len(self.cost_keys)}


# --- learner --------------------------------------------------------------------------------
class PPOLagrangianTorchLearner(PPOTorchLearner):
    """PPO's torch Learner with cost GAE in its pipeline and the Lagrangian policy loss.

    The multipliers are set from outside (the Algorithm's dual ascent) with
    :meth:`set_multipliers` before every update.
    """

    @override(PPOTorchLearner)
    def build(self) -> None:
        super().build()
        self._multipliers = torch.full(
            (len(self.config.cost_keys),),
            float(self.config.lagrange_init),
            dtype=torch.float32,
            device=self._device,
        )
        # Mirrors PPOLearner.build(), which appends the reward GAE piece: ours goes right after.
        if (
            self._learner_connector is not None
            and self.config.add_default_connectors_to_learner_pipeline
        ):
            self._learner_connector.append(
                CostGeneralAdvantageEstimation(
                    cost_keys=self.config.cost_keys,
                    gamma=self.config.cost_gamma,
                    lambda_=self.config.cost_gae_lambda,
                )
            )

    def set_multipliers(self, multipliers: Sequence[float]) -> None:
        """Sets ν (one value per cost key, in ``config.cost_keys`` order) for the next updates."""
        if len(multipliers) != self._multipliers.numel():
            raise ValueError(
                f"The 'multipliers' must hold one value per cost key "
                f"({self._multipliers.numel()}); got {list(multipliers)}."
            )
        self._multipliers = torch.as_tensor(
            list(multipliers), dtype=torch.float32, device=self._device
        )

    @property
    def multipliers(self) -> list[float]:
        return self._multipliers.tolist()

    @classmethod
    @override(PPOTorchLearner)
    def rl_module_required_apis(cls) -> list[type]:
        return super().rl_module_required_apis() + [CostValueFunctionAPI]

    @override(PPOTorchLearner)
    def compute_loss_for_module(
        self,
        *,
        module_id: str,
        config: PPOLagrangianConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        module = self.module[module_id].unwrapped()
        if Columns.LOSS_MASK in batch:  # masks the artificial bootstrap step of each episode
            mask = batch[Columns.LOSS_MASK]
            num_valid = torch.sum(mask)

            def masked_mean(x: torch.Tensor) -> torch.Tensor:
                return torch.sum(x[mask]) / num_valid

        else:
            masked_mean = torch.mean

        curr_dist = module.get_train_action_dist_cls().from_logits(
            fwd_out[Columns.ACTION_DIST_INPUTS]
        )
        ratio = torch.exp(curr_dist.logp(batch[Columns.ACTIONS]) - batch[Columns.ACTION_LOGP])

        adv_r = batch[Postprocessing.ADVANTAGES]
        adv_c = batch[COST_ADVANTAGES]
        nu = self._multipliers
        policy_loss = lagrangian_policy_loss(ratio, adv_r, adv_c, nu, config.clip_param)

        values = module.compute_values(batch, embeddings=fwd_out.get(Columns.EMBEDDINGS))
        vf_loss = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
        vf_loss_clipped = torch.clamp(vf_loss, 0, config.vf_clip_param)

        cost_values = module.compute_cost_values(batch)
        cost_vf_loss = torch.pow(cost_values - batch[COST_VALUE_TARGETS], 2.0)
        cost_vf_loss_clipped = torch.clamp(cost_vf_loss, 0, config.vf_clip_param).mean(dim=-1)

        entropy = curr_dist.entropy()
        entropy_coeff = self.entropy_coeff_schedulers_per_module[module_id].get_current_value()

        total_loss = masked_mean(
            policy_loss
            + config.vf_loss_coeff * vf_loss_clipped
            + config.cost_vf_loss_coeff * cost_vf_loss_clipped
            - entropy_coeff * entropy
        )
        if config.use_kl_loss:
            prev_dist = module.get_exploration_action_dist_cls().from_logits(
                batch[Columns.ACTION_DIST_INPUTS]
            )
            mean_kl_loss = masked_mean(prev_dist.kl(curr_dist))
            total_loss = total_loss + self.curr_kl_coeffs_per_module[module_id] * mean_kl_loss
        else:
            mean_kl_loss = torch.tensor(0.0, device=ratio.device)

        cost_targets = batch[COST_VALUE_TARGETS]
        self.metrics.log_dict(
            {
                POLICY_LOSS_KEY: masked_mean(policy_loss),
                REWARD_SURROGATE_KEY: masked_mean(
                    clipped_surrogate(ratio, adv_r, config.clip_param)
                ),
                COST_SURROGATE_KEY: masked_mean(ratio * (adv_c @ nu)),
                VF_LOSS_KEY: masked_mean(vf_loss_clipped),
                LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: masked_mean(vf_loss),
                LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(
                    batch[Postprocessing.VALUE_TARGETS], values
                ),
                COST_VF_LOSS_KEY: masked_mean(cost_vf_loss_clipped),
                **{
                    metric_name(COST_VF_EXPLAINED_VAR_KEY, key): explained_variance(
                        cost_targets[:, i], cost_values[:, i]
                    )
                    for i, key in enumerate(config.cost_keys)
                },
                ENTROPY_KEY: masked_mean(entropy),
                LEARNER_RESULTS_KL_KEY: mean_kl_loss,
            },
            key=module_id,
            window=1,
        )
        return total_loss


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

    def learn_pending(self) -> None:
        """Dual ascent and PPO update on the episodes of the last ``train()`` (``defer_learning``),
        once their rewards and costs have been written into them. Episodes whose last info says
        ``failed`` (their candidate could not be scored) do not move the multipliers."""
        episodes, self.pending_episodes = getattr(self, "pending_episodes", []), []
        if not episodes:
            raise RuntimeError("learn_pending() without pending episodes: call train() first (defer_learning=True).")
        self._learn(episodes)

    def _learn(self, episodes: list) -> None:
        # 2. Dual ascent on this rollout's episode costs, before the policy update (OmniSafe).
        #    Must run before the Learner pipeline, which extends the (shared) episode objects.
        self._dual_update(self._episode_costs.add(episodes))

        # 3.+4. Advantages (Learner connector pipeline) and PPO epochs (as PPO.training_step).
        with self.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
            learner_results = self.learner_group.update(
                episodes=episodes,
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
