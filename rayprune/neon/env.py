"""Gymnasium environments for pretraining NEON across many random networks and datasets.

An :class:`EpisodeSource` is the pool: trained networks (:class:`~rayprune.neon.networks.NetworkRecord`),
how their datasets are split, the episode settings and the tolerances to draw from. Every reset
draws a dataset uniformly, then one of its networks, then a tolerance τ, and starts a
:class:`~rayprune.neon.episode.PruningEpisode` on it.

* :class:`NeonPruningEnv` — one episode at a time (a plain ``gym.Env``; tests, debugging).
* :class:`NeonVectorEnv` — ``num_envs`` episodes in lockstep (a ``gymnasium.vector.VectorEnv`` for
  RLlib's ``VECTOR_ENTRY_POINT``). The prune-and-retrain steps of one lockstep step are independent,
  so with ``parallel=True`` they run as Ray tasks side by side (one CPU each), datasets shipped once
  per env by object reference; episodes of different depths end at different steps and reset on
  their next step (gymnasium's ``NEXT_STEP`` autoreset, as RLlib expects).

Observation: :func:`~rayprune.neon.features.observation` (size
:func:`~rayprune.neon.features.observation_size`). Action: an index into the keep fractions.
Reward: NEON's reward times :func:`~rayprune.neon.reward.reward_scale` (±1 for the largest regular cut;
rounding on layers of a few neurons can remove more, e.g. 2 → 1 is 50 %, worth ±1.95).
Finished episodes are summarised in :attr:`NeonVectorEnv.finished` (drained by pretraining for
its training curves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rayprune.neon.episode import PruningEpisode
from rayprune.neon.features import observation_size
from rayprune.neon.networks import NetworkRecord
from rayprune.neon.reward import reward_scale
from rayprune.neon.settings import EpisodeSettings
from rayprune.neon.suite import SuiteSplit

__all__ = ["EpisodeSettings", "EpisodeSource", "NeonPruningEnv", "NeonVectorEnv", "OBS_BOUND"]

OBS_BOUND = 50.0
"""Observations are clipped to ±this (they are squashed statistics; the bound is never reached in practice)."""


@dataclass(frozen=True)
class EpisodeSource:
    """Where episodes come from: the network pool, the data split, the settings, the tolerances."""

    networks: tuple[NetworkRecord, ...]
    split: SuiteSplit
    settings: EpisodeSettings
    tolerances: tuple[float, ...] = (1.0, 5.0)

    def __post_init__(self) -> None:
        if not self.networks:
            raise ValueError("An EpisodeSource needs at least one trained network; got none.")
        if not self.tolerances:
            raise ValueError("An EpisodeSource needs at least one tolerance; got none.")

    @property
    def datasets(self) -> list[str]:
        return sorted({r.spec.dataset for r in self.networks})

    def draw(self, rng: np.random.Generator) -> tuple[NetworkRecord, float, int]:
        """A network (dataset uniform, then network uniform), a tolerance and an episode seed."""
        dataset = self.datasets[int(rng.integers(len(self.datasets)))]
        pool = [r for r in self.networks if r.spec.dataset == dataset]
        record = pool[int(rng.integers(len(pool)))]
        tolerance = float(self.tolerances[int(rng.integers(len(self.tolerances)))])
        return record, tolerance, int(rng.integers(2**31))

    def new_episode(self, rng: np.random.Generator) -> tuple[PruningEpisode, NetworkRecord]:
        record, tolerance, seed = self.draw(rng)
        # the base accuracy is measured afresh (one evaluation), not taken from the cache's metadata
        episode = self.settings.episode(record.load(), self.split.load(record.spec.dataset), tolerance=tolerance,
                                        seed=seed)
        return episode, record


def _observation_space() -> gym.spaces.Box:
    return gym.spaces.Box(-OBS_BOUND, OBS_BOUND, (observation_size(),), np.float32)


def _obs(episode: PruningEpisode) -> np.ndarray:
    return np.clip(episode.observe(), -OBS_BOUND, OBS_BOUND)


def _advance(episode: PruningEpisode, action: int) -> tuple[PruningEpisode, dict, np.ndarray]:
    """One step and the next observation: the unit of work a lockstep step runs per episode."""
    record = episode.step(int(action))
    return episode, record, _obs(episode)


def _advance_remote(episode: PruningEpisode, data, action: int) -> tuple[PruningEpisode, dict, np.ndarray]:
    torch.set_num_threads(1)
    episode.attach_data(data)
    episode, record, obs = _advance(episode, action)
    episode.detach_data()
    return episode, record, obs


def _finished(episode: PruningEpisode, record: NetworkRecord) -> dict[str, Any]:
    return {**episode.summary(), "dataset": record.spec.dataset, "network": record.key,
            "depth": len(record.spec.hidden_sizes)}


class NeonPruningEnv(gym.Env):
    """One NEON episode at a time over an :class:`EpisodeSource` (no Ray)."""

    def __init__(self, source: EpisodeSource, *, seed: int = 0) -> None:
        self.source = source
        self.observation_space = _observation_space()
        self.action_space = gym.spaces.Discrete(len(source.settings.actions))
        self.scale = reward_scale(source.settings.actions, source.settings.reward_units)
        self.rng = np.random.default_rng(seed)
        self.episode: PruningEpisode | None = None
        self.record: NetworkRecord | None = None
        self.finished: list[dict[str, Any]] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        self.episode, self.record = self.source.new_episode(self.rng)
        return _obs(self.episode), {"dataset": self.record.spec.dataset, "tolerance": self.episode.tolerance}

    def step(self, action):
        if self.episode is None:
            raise RuntimeError("Call reset() before step().")
        _, record, obs = _advance(self.episode, int(action))
        done = self.episode.done
        if done:
            self.finished.append(_finished(self.episode, self.record))
        return obs, self.scale * record["reward"], done, False, record


class NeonVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` NEON episodes in lockstep; their steps run as parallel Ray tasks when ``parallel``.

    Args:
        source: the episode pool.
        num_envs: episodes stepped together.
        parallel: run each lockstep step's prune-and-retrain jobs as Ray tasks (Ray must be
            initialised); otherwise one after the other in this process.
        seed: seeds the draws of networks and tolerances (RLlib re-seeds through ``reset``).
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.NEXT_STEP}

    def __init__(self, source: EpisodeSource, *, num_envs: int = 4, parallel: bool = False, seed: int = 0) -> None:
        self.source = source
        self.num_envs = int(num_envs)
        self.parallel = bool(parallel)
        self.single_observation_space = _observation_space()
        self.single_action_space = gym.spaces.Discrete(len(source.settings.actions))
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, self.num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, self.num_envs)
        self.scale = reward_scale(source.settings.actions, source.settings.reward_units)
        self.rng = np.random.default_rng(seed)
        self.episodes: list[PruningEpisode | None] = [None] * self.num_envs
        self.records: list[NetworkRecord | None] = [None] * self.num_envs
        self._needs_reset = np.ones(self.num_envs, dtype=bool)
        self._data_refs: dict[str, Any] = {}
        self._remote = None
        self.finished: list[dict[str, Any]] = []

    # -- episodes ---------------------------------------------------------------------------------
    def _start(self, i: int) -> np.ndarray:
        self.episodes[i], self.records[i] = self.source.new_episode(self.rng)
        self._needs_reset[i] = False
        return _obs(self.episodes[i])

    def drain_finished(self) -> list[dict[str, Any]]:
        """Summaries of the episodes finished since the last call (and forget them)."""
        out, self.finished = self.finished, []
        return out

    def _run(self, jobs: Sequence[tuple[int, int]]) -> list[tuple[PruningEpisode, dict, np.ndarray]]:
        if not self.parallel or len(jobs) <= 1:
            return [_advance(self.episodes[i], a) for i, a in jobs]
        import ray

        if self._remote is None:
            self._remote = ray.remote(num_cpus=1, max_retries=2)(_advance_remote)
        refs = []
        for i, a in jobs:
            episode = self.episodes[i]
            name = self.records[i].spec.dataset
            data = episode.detach_data()
            if name not in self._data_refs:
                self._data_refs[name] = ray.put(data)
            refs.append((i, data, self._remote.remote(episode, self._data_refs[name], int(a))))
        out = []
        try:
            for i, data, ref in refs:
                episode, record, obs = ray.get(ref)
                episode.attach_data(data)
                out.append((episode, record, obs))
        finally:  # the local copies keep their data whichever task failed
            for i, data, _ in refs:
                self.episodes[i].attach_data(data)
        return out

    # -- gymnasium API ------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        obs = np.stack([self._start(i) for i in range(self.num_envs)])
        return obs, {}

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_envs)
        obs = np.zeros((self.num_envs, observation_size()), dtype=np.float32)
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        jobs = []
        for i in range(self.num_envs):
            if self._needs_reset[i]:  # NEXT_STEP autoreset: this call only starts its next episode
                obs[i] = self._start(i)
            else:
                jobs.append((i, int(actions[i])))
        for (i, _), (episode, record, next_obs) in zip(jobs, self._run(jobs)):
            self.episodes[i] = episode
            obs[i] = next_obs
            rewards[i] = self.scale * record["reward"]
            info = {k: float(record[k]) for k in ("reward", "accuracy_change", "removed_percent", "keep_fraction")}
            infos = self._add_info(infos, info, i)
            if episode.done:
                terminated[i] = True
                self._needs_reset[i] = True
                self.finished.append(_finished(episode, self.records[i]))
        return obs, rewards, terminated, np.zeros(self.num_envs, dtype=bool), infos
