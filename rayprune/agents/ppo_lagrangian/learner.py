"""The torch Learner of PPO-Lagrangian: cost GAE in the pipeline, the Lagrangian policy loss."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from ray.rllib.algorithms.ppo.ppo import (
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import ENTROPY_KEY, POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import explained_variance

from rayprune.agents.cost_gae import COST_ADVANTAGES, COST_VALUE_TARGETS, CostGeneralAdvantageEstimation
from rayprune.agents.cost_module import CostValueFunctionAPI
from rayprune.agents.ppo_lagrangian.loss import (
    COST_SURROGATE_KEY,
    COST_VF_EXPLAINED_VAR_KEY,
    COST_VF_LOSS_KEY,
    REWARD_SURROGATE_KEY,
    clipped_surrogate,
    lagrangian_policy_loss,
    metric_name,
)

if TYPE_CHECKING:
    from rayprune.agents.ppo_lagrangian.config import PPOLagrangianConfig

__all__ = ["PPOLagrangianTorchLearner"]


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
