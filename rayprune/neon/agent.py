"""NEON's agent on RLlib's new API stack: a custom RLModule around :class:`NeonPolicyNet`, PPO.

The method trained A2C; RLlib 2.60 has no A2C on its new API stack, so this is PPO with a
discrete action (the keep fraction), Monte-Carlo-style returns by default (GAE λ = 1, as the
method's A2C), an entropy bonus in place of the method's random-action warm-up, and Adam 1e-3.

``NeonTorchRLModule`` holds an actor and a critic of the same shape (per-feature-map encoders,
then an MLP); only the actor is exported (:func:`export_policy`), so applying a trained agent
needs plain PyTorch and no Ray (:func:`rayprune.neon.policy.load_policy`).

Example::

    register_env(ENV_NAME, make_env)
    algo = build_algorithm(source, cfg.neon.pretrain, seed=0)   # source: an EpisodeSource
    algo.train()
    export_policy(algo, "out/policy", settings=source.settings, meta={...})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.core.rl_module.apis import ValueFunctionAPI
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override

from rayprune.neon.env import EpisodeSource, NeonVectorEnv
from rayprune.neon.features import OBSERVATION_SEGMENTS
from rayprune.neon.policy import NeonPolicyNet, save_policy
from rayprune.neon.settings import EpisodeSettings

__all__ = ["ENV_NAME", "NeonTorchRLModule", "build_algorithm", "export_policy", "make_env"]

ENV_NAME = "rayprune-neon"

#: model_config keys of NeonTorchRLModule
SEGMENTS_KEY, HIDDEN_KEY, SEGMENT_HIDDEN_KEY = "segments", "hidden", "segment_hidden"


class NeonTorchRLModule(TorchRLModule, ValueFunctionAPI):
    """Actor and critic, each a :class:`NeonPolicyNet` (own weights, no sharing)."""

    @override(TorchRLModule)
    def setup(self) -> None:
        segments = [tuple(s) for s in self.model_config.get(SEGMENTS_KEY, OBSERVATION_SEGMENTS)]
        hidden = list(self.model_config.get(HIDDEN_KEY, [64, 64]))
        segment_hidden = int(self.model_config.get(SEGMENT_HIDDEN_KEY, 16))
        size = sum(s for _, s in segments)
        if self.observation_space.shape != (size,):
            raise ValueError(
                f"NeonTorchRLModule expects observations of shape ({size},) (its feature maps); "
                f"got {self.observation_space.shape}."
            )
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise ValueError(f"NeonTorchRLModule needs a Discrete action space; got {self.action_space}.")
        self.actor = NeonPolicyNet(segments, int(self.action_space.n), hidden=hidden, segment_hidden=segment_hidden,
                                   head_std=0.01)
        self.critic = NeonPolicyNet(segments, 1, hidden=hidden, segment_hidden=segment_hidden, head_std=0.01)

    @override(TorchRLModule)
    def _forward(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        return {Columns.ACTION_DIST_INPUTS: self.actor(batch[Columns.OBS])}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> Any:
        return self.critic(batch[Columns.OBS]).squeeze(-1)


def make_env(env_config: Mapping[str, Any]) -> NeonVectorEnv:
    """RLlib env creator (``VECTOR_ENTRY_POINT``): ``env_config`` holds the :class:`EpisodeSource`,
    ``parallel`` and RLlib's ``num_envs``."""
    return NeonVectorEnv(env_config["source"], num_envs=int(env_config.get("num_envs", 1)),
                         parallel=bool(env_config.get("parallel", False)), seed=int(env_config.get("seed", 0)))


def build_algorithm(source: EpisodeSource, pretrain, *, seed: int = 0):
    """PPO over :class:`NeonVectorEnv` per ``pretrain`` (a :class:`rayprune.config.NeonPretrainConfig`)."""
    from ray.tune.registry import register_env

    register_env(ENV_NAME, make_env)
    steps = int(pretrain.steps_per_iteration)
    config = (
        PPOConfig()
        .environment(env=ENV_NAME, env_config={"source": source, "parallel": pretrain.parallel_steps, "seed": seed})
        .env_runners(
            num_env_runners=pretrain.env_runners,
            num_envs_per_env_runner=pretrain.num_envs,
            gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
            # with parallel steps a runner only waits on its step tasks (one CPU each): reserving a CPU for
            # it too could leave none for the tasks (a hang on small clusters)
            num_cpus_per_env_runner=0 if (pretrain.env_runners == 0 or pretrain.parallel_steps) else 1,
        )
        .learners(num_learners=0)
        .training(
            lr=pretrain.lr, gamma=pretrain.gamma, lambda_=pretrain.gae_lambda, clip_param=pretrain.clip_param,
            num_epochs=pretrain.num_epochs, minibatch_size=min(pretrain.minibatch_size, steps),
            train_batch_size_per_learner=steps, entropy_coeff=pretrain.entropy_coeff, use_kl_loss=False,
        )
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=NeonTorchRLModule,
            model_config={SEGMENTS_KEY: [list(s) for s in OBSERVATION_SEGMENTS], HIDDEN_KEY: list(pretrain.hidden),
                          SEGMENT_HIDDEN_KEY: pretrain.segment_hidden},
        ))
        .debugging(seed=seed, log_level="ERROR")
    )
    return config.build_algo()


def export_policy(algo, directory: str | Path, *, settings: EpisodeSettings, pretrain,
                  meta: Mapping[str, Any] | None = None) -> Path:
    """Write the algorithm's actor as a policy directory (``policy.pt`` + ``policy.json``)."""
    module = algo.get_module()
    return save_policy(
        module.actor, directory, actions=settings.actions, hidden=pretrain.hidden,
        segment_hidden=pretrain.segment_hidden,
        meta={"episode": settings.to_meta(), **dict(meta or {})},
    )
