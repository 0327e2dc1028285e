"""NEON-style generic pruning agent (Hirsch & Katz 2022; METHODS.md §2), on Ray/RLlib.

Trained once offline on random dense networks across many datasets (``rayprune pretrain``),
applied to new networks and datasets with inference only (``rayprune prune --agent neon``).

One module per concept:

* :mod:`~rayprune.neon.suite` — the offline dataset suite (20 sets, 4 groups);
* :mod:`~rayprune.neon.networks` — random base networks, trained as Ray tasks, cached on disk;
* :mod:`~rayprune.neon.features` — the observation maths (statistics, pooling, topology);
* :mod:`~rayprune.neon.topology` — reading a dense network's layers and activations;
* :mod:`~rayprune.neon.reward` — the reward with tolerance τ;
* :mod:`~rayprune.neon.training` — retraining with early stopping;
* :mod:`~rayprune.neon.settings` — an episode's settings, defined once (:class:`EpisodeSettings`);
* :mod:`~rayprune.neon.episode` — the dynamics: prune a layer, retrain the touched layers;
* :mod:`~rayprune.neon.env` — gymnasium envs (single, and lockstep with parallel Ray-task steps);
* :mod:`~rayprune.neon.policy` — the policy network, saving and loading it without Ray;
* :mod:`~rayprune.neon.agent` — the RLModule and PPO on RLlib's new API stack (imports Ray);
* :mod:`~rayprune.neon.pretrain` — ``rayprune pretrain`` (imports Ray);
* :mod:`~rayprune.neon.apply` — ``--agent neon`` (zero-shot; no Ray).

Example:
    >>> from rayprune.neon import load_policy, neon_reward
    >>> neon_reward(30.0, -0.5, tolerance=1.0)
    30.0
    >>> len(load_policy().actions)
    5
"""

from rayprune.neon.apply import NeonResult, kept_neurons_plan, run_episode, search_neon
from rayprune.neon.env import EpisodeSource, NeonPruningEnv, NeonVectorEnv
from rayprune.neon.episode import PruningEpisode
from rayprune.neon.features import OBSERVATION_SEGMENTS, neuron_statistics, observation_size, pool_over_neurons
from rayprune.neon.networks import NetworkCache, NetworkSettings, NetworkSpec, ensure_networks, sample_network_specs
from rayprune.neon.policy import NeonPolicy, NeonPolicyNet, load_policy, save_policy, shipped_policy_dir
from rayprune.neon.reward import neon_reward, reward_regime, reward_scale
from rayprune.neon.settings import DEFAULT_ACTIONS, EpisodeSettings
from rayprune.neon.suite import GROUPS, SUITE, SuiteSplit, load_suite_dataset, resolve_datasets
from rayprune.neon.training import RetrainSettings, train_early_stopping

__all__ = [
    "DEFAULT_ACTIONS",
    "GROUPS",
    "OBSERVATION_SEGMENTS",
    "SUITE",
    "EpisodeSettings",
    "EpisodeSource",
    "NeonPolicy",
    "NeonPolicyNet",
    "NeonPruningEnv",
    "NeonResult",
    "NeonVectorEnv",
    "NetworkCache",
    "NetworkSettings",
    "NetworkSpec",
    "PruningEpisode",
    "RetrainSettings",
    "SuiteSplit",
    "ensure_networks",
    "kept_neurons_plan",
    "load_policy",
    "load_suite_dataset",
    "neon_reward",
    "neuron_statistics",
    "observation_size",
    "pool_over_neurons",
    "resolve_datasets",
    "reward_regime",
    "reward_scale",
    "run_episode",
    "sample_network_specs",
    "save_policy",
    "search_neon",
    "shipped_policy_dir",
    "train_early_stopping",
]
