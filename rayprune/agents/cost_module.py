"""RLlib's default PPO torch module plus a cost critic, separate from the reward critic.

The cost critic ``V_C(s) ∈ R^{num_costs}`` has its own encoder (same architecture as the reward
critic's: ``model_config["fcnet_hiddens"]`` etc.) and its own head with one output per
constraint, so reward and cost value regressions never share weights (Malik et al. 2022 keep
separate reward and cost critics). It is training-only: inference-only copies on the env runners
drop it, like the reward critic.
"""

from __future__ import annotations

import abc
from typing import Any

from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.models.base import ENCODER_OUT
from ray.rllib.core.models.configs import MLPHeadConfig, RecurrentEncoderConfig
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI
from ray.rllib.core.rl_module.rl_module import RLModule
from ray.rllib.utils.annotations import override

__all__ = ["NUM_COSTS_MODEL_KEY", "INITIAL_LOG_STD_KEY", "CostValueFunctionAPI", "PPOLagrangianTorchRLModule"]

#: ``model_config`` entry with the number of constraints (filled in by PPOLagrangianConfig).
NUM_COSTS_MODEL_KEY = "num_costs"
#: optional ``model_config`` entry: the policy's initial log standard deviation (see ``_init_policy_output``).
INITIAL_LOG_STD_KEY = "initial_log_std"


class CostValueFunctionAPI(abc.ABC):
    """An RLModule that estimates the expected discounted cost of every constraint."""

    @abc.abstractmethod
    def compute_cost_values(self, batch: dict[str, Any]) -> Any:
        """Cost-value estimates, a tensor of shape ``(B, num_costs)``."""


class PPOLagrangianTorchRLModule(DefaultPPOTorchRLModule, CostValueFunctionAPI):
    """``DefaultPPOTorchRLModule`` + ``cost_encoder`` → ``cost_vf`` (one output per cost)."""

    @override(RLModule)
    def setup(self) -> None:
        super().setup()
        self.num_costs = int(self.model_config.get(NUM_COSTS_MODEL_KEY, 0))
        if self.num_costs < 1:
            raise ValueError(
                f"The model_config['{NUM_COSTS_MODEL_KEY}'] of PPOLagrangianTorchRLModule must be "
                f">= 1; got {self.num_costs}. Build the module through PPOLagrangianConfig."
            )
        base_encoder_config = self.catalog.actor_critic_encoder_config.base_encoder_config
        if isinstance(base_encoder_config, RecurrentEncoderConfig):
            raise NotImplementedError("PPOLagrangianTorchRLModule supports no recurrent encoder.")
        self._init_policy_output(self.model_config.get(INITIAL_LOG_STD_KEY))
        if self.inference_only:
            return  # acting needs no critic
        self.cost_encoder = base_encoder_config.build(framework=self.framework)
        self.cost_vf = MLPHeadConfig(
            input_dims=self.catalog.latent_dims,
            hidden_layer_dims=self.catalog.pi_and_vf_head_hiddens,
            hidden_layer_activation=self.catalog.pi_and_vf_head_activation,
            output_layer_activation="linear",
            output_layer_dim=self.num_costs,
        ).build(framework=self.framework)

    def _init_policy_output(self, log_std: Any) -> None:
        """Start the Gaussian policy near the middle of the action range with std ``exp(log_std)``.

        RLlib's default initialisation gives std ≈ 1 on a [-1, 1] action: most actions clip to the
        bounds. Scaling the output layer down (CleanRL/PPO practice: 0.01) and setting the log-std
        bias gives a policy whose first candidates are spread but not saturated.
        """
        if log_std is None:
            return
        import torch
        from torch import nn

        linears = [m for m in self.pi.modules() if isinstance(m, nn.Linear)]
        if not linears or linears[-1].out_features % 2:
            return  # a free log-std or an unexpected head: leave RLlib's initialisation
        last, half = linears[-1], linears[-1].out_features // 2
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias[:half] = 0.0
            last.bias[half:] = float(log_std)

    @override(CostValueFunctionAPI)
    def compute_cost_values(self, batch: dict[str, Any]) -> Any:
        return self.cost_vf(self.cost_encoder(batch)[ENCODER_OUT])

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> list[str]:
        return super().get_non_inference_attributes() + ["cost_encoder", "cost_vf"]
