"""``PPOLagrangianConfig``: PPOConfig plus the constraints (keys, budgets, multipliers, cost GAE)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ray.rllib.algorithms.algorithm_config import NotProvided
from ray.rllib.algorithms.ppo.ppo import PPOConfig
from ray.rllib.core.learner.learner import Learner
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.utils.annotations import override

from rayprune.agents.cost_module import NUM_COSTS_MODEL_KEY, PPOLagrangianTorchRLModule

__all__ = ["PPOLagrangianConfig"]


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
        if algo_class is None:
            from rayprune.agents.ppo_lagrangian.algorithm import PPOLagrangian  # the algorithm imports this module

            algo_class = PPOLagrangian
        super().__init__(algo_class=algo_class)
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
            lagrange_lr: Adam learning rate of the dual ascent on θ (ν = softplus(θ)); 0: a fixed penalty.
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
        _check_range("lagrange_lr", self.lagrange_lr, low=0.0)
        _check_range("lagrange_min", self.lagrange_min, low=0.0, high=self.lagrange_init)
        _check_range("cost_gamma", self.cost_gamma, low=0.0, high=1.0)
        _check_range("cost_gae_lambda", self.cost_gae_lambda, low=0.0, high=1.0)
        _check_range("cost_vf_loss_coeff", self.cost_vf_loss_coeff, low=0.0)

    @override(PPOConfig)
    def get_default_rl_module_spec(self) -> RLModuleSpec:
        return RLModuleSpec(module_class=PPOLagrangianTorchRLModule)

    @override(PPOConfig)
    def get_default_learner_class(self) -> type[Learner]:
        from rayprune.agents.ppo_lagrangian.learner import PPOLagrangianTorchLearner  # imports this module

        return PPOLagrangianTorchLearner

    @property
    @override(PPOConfig)
    def _model_config_auto_includes(self) -> dict[str, Any]:
        return super()._model_config_auto_includes | {NUM_COSTS_MODEL_KEY: len(self.cost_keys)}
