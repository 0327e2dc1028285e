"""``crl``: the constrained-RL agent (PPO-Lagrangian on RLlib, METHODS.md §1) behind ask/tell.

One :meth:`CRLAgent.ask` is one PPO-Lagrangian rollout: RLlib's env runner steps
``batch_size`` pruning episodes (:class:`~rayprune.agents.env.PruningVectorEnv`, policy inference
only) and the finished episodes become proposals: with ``search.crl.action: direction`` (the
default) each episode's actions are a direction that is projected onto its level's budget boundary
(:meth:`~rayprune.agents.space.SearchSpace.project_many`, the projection random search and
evolution use), with ``ratio`` they are AMC-style keep ratios already on the boundary. The search
loop scores them on the evaluator pool like any agent's; :meth:`CRLAgent.tell` writes each score
into its episode's last reward and each measured cost (divided by the level's limit, so every budget is 1.0) into its last
``info["costs"]``, then runs the dual ascent and the PPO update
(:meth:`~rayprune.agents.ppo_lagrangian.PPOLagrangian.learn_pending`).

Budget-conditioned (``search.crl.budget_conditioned``, the default): one policy serves every level
of the search; each episode draws a level (round robin) and sees its limits in the observation,
so what the policy learns about sharing a budget between layers carries across levels. Otherwise
one policy per level, each with its share of the batch.

Batches run in step by default (the next rollout comes from the policy the last batch updated);
with ``search.crl.pipeline`` the loop asks for the next rollout while the last batch is scored, and
each PPO update learns from a rollout of the policy one update behind. Each policy draws from its
own random streams (:class:`RandomStreams`), so a seed reproduces a search and a checkpoint resumes it.

Rewards: the score, standardised per level over its recent scores (``reward_normalization:
level``) so that the lower accuracies of tight levels do not swamp the advantages of a
budget-conditioned policy; a candidate whose scoring failed gets the level's worst recent score
and is left out of the dual ascent (a failure is not a budget violation).

Self-imitation (``search.crl.replay_elites``, off by default): each level's best-scored episodes
so far (:class:`EliteReplay`) join every later PPO update, re-rewarded against the level's current
scores, so the policy keeps learning from the best candidates it found instead of only from its
latest batch (Oh et al. 2018); PPO's clipped ratio to the policy that sampled them bounds the pull.
"""

from __future__ import annotations

import contextlib
import copy
import json
import pickle
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from .._logs import without_log_lines
from ..config import CRLConfig
from ..names import LAMBDA, VIOLATION_RATE, progress_key
from .base import Outcome, Proposal, SearchAgent
from .crl_batches import policy_groups, whole_rounds
from .env import CANDIDATE_INFO, LEVEL_INFO, PruningEnvSpec, PruningVectorEnv
from .space import SearchSpace

__all__ = ["CRLAgent", "ENV_NAME", "EliteReplay", "make_env", "RandomStreams", "RewardNormalizer", "centred_rank"]

ENV_NAME = "rayprune-pruning"
#: scores remembered per level for reward standardisation
_WINDOW = 256
#: in a checkpoint: the episodes of rollouts asked for and not told yet
_UNTOLD_FILE = "untold-episodes.pkl"
#: in a checkpoint: the elite episodes of self-imitation (``search.crl.replay_elites``)
_ELITES_FILE = "elite-episodes.pkl"


def make_env(env_config: dict) -> PruningVectorEnv:
    """RLlib env creator (``gym_env_vectorize_mode=VECTOR_ENTRY_POINT``): a vector env of
    ``env_config["num_envs"]`` lockstep episodes over the spec in ``env_config["spec"]`` (an object ref)."""
    import ray

    spec = env_config["spec"]
    spec = ray.get(spec) if isinstance(spec, ray.ObjectRef) else spec
    return PruningVectorEnv(spec, num_envs=int(env_config.get("num_envs", 1)), seed=int(env_config.get("seed", 0)))


class RewardNormalizer:
    """Per-level rewards from scores, over the last ``window`` scores of each level (this batch included).

    ``mode``:

    * ``"level"``: standardised, ``(s - mean_l) / max(std_l, 1e-3)``;
    * ``"rank"``: the centred rank of ``s`` among the level's recent scores, in [-0.5, 0.5]
      (fitness shaping as in natural evolution strategies: one outlier cannot swamp the rest);
    * ``"elite"``: risk-seeking (Petersen et al. 2021): ``max(s - q_l, 0) / std_l``, ``q_l`` the
      level's ``1 - elite`` quantile, so only candidates among its recent best are rewarded — a
      search keeps its best candidate, not its average one.

    A failed candidate (``None``) scores as the level's worst recent score.

    >>> norm = RewardNormalizer(levels=1)
    >>> [round(x, 3) for x in norm([0.5, 0.7], [0, 0])]
    [-1.0, 1.0]
    >>> [round(x, 3) for x in RewardNormalizer(levels=1, mode="rank")([0.1, 0.5, 0.9], [0, 0, 0])]
    [-0.333, 0.0, 0.333]
    """

    def __init__(self, levels: int, window: int = _WINDOW, mode: str = "level", elite: float = 0.2) -> None:
        if mode not in ("level", "rank", "elite"):
            raise ValueError(f"RewardNormalizer mode: expected 'level', 'rank' or 'elite'; got {mode!r}.")
        if not 0.0 < elite <= 1.0:
            raise ValueError(f"RewardNormalizer elite: expected a share in (0, 1]; got {elite}.")
        self.window, self.mode, self.elite = window, mode, elite
        self.history: list[list[float]] = [[] for _ in range(levels)]

    def __call__(self, scores: Sequence[Optional[float]], levels: Sequence[int]) -> list[float]:
        for s, lvl in zip(scores, levels):
            if s is not None:
                self.history[lvl].append(float(s))
                del self.history[lvl][:-self.window]
        return [self.reward(s, lvl) for s, lvl in zip(scores, levels)]

    def reward(self, score: Optional[float], level: int) -> float:
        """The reward of ``score`` at ``level`` against the level's scores so far (nothing recorded)."""
        h = np.asarray(self.history[level])
        if not h.size:
            return 0.0
        s = float(h.min()) if score is None else float(score)
        std = max(float(h.std()), 1e-3)
        if self.mode == "rank":
            return centred_rank(s, h)
        if self.mode == "elite":
            return max(s - float(np.quantile(h, 1.0 - self.elite)), 0.0) / std
        return (s - float(h.mean())) / std


def centred_rank(value: float, sample: np.ndarray) -> float:
    """Where ``value`` ranks in ``sample`` (ties count half), centred: -0.5 below all, +0.5 above all.

    >>> centred_rank(0.5, np.array([0.1, 0.5, 0.9]))
    0.0
    """
    below = float(np.sum(sample < value)) + 0.5 * float(np.sum(sample == value))
    return below / max(len(sample), 1) - 0.5


class EliteReplay:
    """Self-imitation (Oh et al. 2018): each level's ``size`` best-scored episodes so far.

    :meth:`offer` keeps a copy of a scored episode if it is among its level's best (ties: the
    earlier one stays); :meth:`episodes` hands fresh copies back, their last reward rewritten by
    ``reward(score, level)`` (so an elite is rewarded against the level's scores *now*), for a PPO
    update to learn from beside the new rollout (RLlib's learner extends the episodes it is given,
    hence copies both ways).
    """

    def __init__(self, levels: int, size: int) -> None:
        if size < 0:
            raise ValueError(f"EliteReplay size: expected >= 0 episodes per level; got {size}.")
        self.size = int(size)
        self.entries: list[list[tuple[float, int, dict]]] = [[] for _ in range(levels)]
        self._offered = 0

    def offer(self, level: int, score: Optional[float], episode: Any) -> bool:
        """Keep ``episode`` if ``score`` is among ``level``'s best; returns whether it was kept."""
        entries = self.entries[level]
        if self.size == 0 or score is None or (len(entries) >= self.size and score <= entries[-1][0]):
            return False
        entries.append((float(score), self._offered, copy.deepcopy(episode.get_state())))
        self._offered += 1
        entries.sort(key=lambda e: (-e[0], e[1]))
        del entries[self.size:]
        return True

    def scores(self, level: int) -> list[float]:
        return [score for score, _, _ in self.entries[level]]

    def episodes(self, levels: Sequence[int], reward: Callable[[float, int], float]) -> list[Any]:
        """Fresh copies of the elites of ``levels``, best first per level, rewarded by ``reward``."""
        from ray.rllib.env.single_agent_episode import SingleAgentEpisode

        out = []
        for level in levels:
            for score, _, state in self.entries[level]:
                episode = SingleAgentEpisode.from_state(copy.deepcopy(state))
                episode.set_rewards(new_data=np.asarray(reward(score, level), dtype=np.float32), at_indices=-1)
                out.append(episode)
        return out

    def state(self) -> dict[str, Any]:
        return {"size": self.size, "entries": self.entries, "offered": self._offered}

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.entries = [list(map(tuple, level)) for level in state["entries"]]
        self._offered = int(state["offered"])


@contextlib.contextmanager
def _preserve_global_torch_state():
    """Restore torch's determinism flags and the global RNGs after RLlib's ``set_torch_seed``.

    ``.debugging(seed=...)`` makes RLlib call ``torch.use_deterministic_algorithms(True)`` and reseed
    Python's, numpy's and torch's global generators; without this, everything later in the process
    (the final fine-tune, other trials) would inherit that.
    """
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    states = _global_random_states()
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        _set_global_random_states(states)


def _global_random_states() -> tuple[Any, Any, Any]:
    """The process's torch, numpy and Python random states (what RLlib draws from)."""
    import random

    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def _set_global_random_states(states: tuple[Any, Any, Any]) -> None:
    import random

    torch.set_rng_state(states[0])
    np.random.set_state(states[1])
    random.setstate(states[2])


class RandomStreams:
    """The random streams one policy's sampling and PPO update draw from, kept apart from the process's.

    RLlib draws exploration noise from torch's global generator and shuffles minibatches with
    numpy's (and Python's) global one, so without this a crl search depends on whatever else the
    process drew before and between its rollouts: the same seed gave different candidates from the
    first batch on (two runs of ``bench_search.py --agents crl --seeds 2`` on small_cnn differed at
    every level, session 15). :meth:`active` swaps the policy's own states in for the duration of a
    rollout or an update and the process's back afterwards, so a seed reproduces a search and the
    rest of the process is left alone; :meth:`state_dict` makes a resumed search continue the same
    streams.

    >>> a, b = RandomStreams(3), RandomStreams(3)
    >>> with a.active():
    ...     x = torch.rand(2)
    >>> with b.active():
    ...     y = torch.rand(2)
    >>> bool(torch.equal(x, y))
    True
    """

    def __init__(self, seed: int) -> None:
        import random

        self.torch = torch.Generator().manual_seed(int(seed)).get_state()
        self.numpy = np.random.RandomState(int(seed) % 2**32).get_state()
        self.python = random.Random(int(seed)).getstate()

    @contextlib.contextmanager
    def active(self):
        outer = _global_random_states()
        _set_global_random_states((self.torch, self.numpy, self.python))
        try:
            yield self
        finally:
            self.torch, self.numpy, self.python = _global_random_states()
            _set_global_random_states(outer)

    def state_dict(self) -> dict[str, Any]:
        """JSON-able copies of the three states."""
        name, keys, pos, has_gauss, cached = self.numpy
        version, internal, gauss = self.python
        return {"torch": self.torch.tolist(), "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                "python": [version, list(internal), gauss]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        name, keys, pos, has_gauss, cached = state["numpy"]
        version, internal, gauss = state["python"]
        self.torch = torch.tensor(state["torch"], dtype=torch.uint8)
        self.numpy = (name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))
        self.python = (int(version), tuple(int(v) for v in internal), gauss)


#: What RLlib 2.60 logs while it builds an algorithm that no user of rayprune can act on (every
#: ``rayprune prune --agent crl`` would print them): logger name -> message fragment.
#: The new-API-stack notice is about RLlib's defaults, which rayprune relies on; the deprecation is
#: RLlib's own (``RLModule.__init__`` builds a deprecated ``RLModuleConfig`` itself).
_RLLIB_NOTICES = {
    "ray.rllib.algorithms.algorithm_config": "on the new API stack! This is the new default behavior",
    "ray._common.deprecation": "RLModule(config=[RLModuleConfig object])",
}


@contextlib.contextmanager
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the policy is tiny; the evaluators get the cores
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _pruning_env(env_runner: Any) -> Optional[PruningVectorEnv]:
    env = getattr(env_runner, "env", None)
    return env.unwrapped if env is not None and isinstance(env.unwrapped, PruningVectorEnv) else None


def _start_rollout(env_runner: Any, *, levels: list[dict[str, float]]) -> None:
    """New steering limits, and a clean reset at the rollout's start.

    A rollout ends on an episode boundary; left alone, RLlib's env runner would start the next one
    by drawing exploration actions for the finished episodes' last observations (which the
    NEXT_STEP autoreset throws away), while a freshly restored runner resets without drawing, so
    a resumed search would draw different candidates from the uninterrupted one.
    (``_needs_initial_reset`` is RLlib's ``SingleAgentEnvRunner`` flag for exactly that reset.)
    """
    env = _pruning_env(env_runner)
    if env is not None:
        env.set_levels(levels)
        env_runner._needs_initial_reset = True


def _episodes_started(env_runner: Any) -> Optional[int]:
    env = _pruning_env(env_runner)
    return None if env is None else env.episodes_started


def _set_episodes_started(env_runner: Any, *, count: int) -> None:
    env = _pruning_env(env_runner)
    if env is not None:
        env.episodes_started = int(count)  # the levels' round robin goes on where it was


class _Policy:
    """One PPO-Lagrangian algorithm serving the levels ``level_indices`` of the space."""

    def __init__(self, space: SearchSpace, level_indices: Sequence[int], *, episodes: int, seed: int,
                 config: CRLConfig, cost_keys: Sequence[str]) -> None:
        import gymnasium as gym
        import ray
        from ray.tune.registry import register_env

        from .cost_module import INITIAL_LOG_STD_KEY
        from .ppo_lagrangian import PPOLagrangianConfig

        self.space = space
        self.levels = list(level_indices)
        self.spec = PruningEnvSpec.from_space(space, self.levels, action_wall=config.action_wall,
                                              budget_fill=config.budget_fill, action=config.action)
        num_envs = max(1, min(config.num_envs, episodes))
        self.episodes = whole_rounds(episodes, config.num_envs)
        steps = self.episodes * space.num_groups
        register_env(ENV_NAME, make_env)
        model_config: dict[str, Any] = {"fcnet_hiddens": list(config.hidden), "fcnet_activation": "tanh"}
        if config.initial_log_std is not None:
            model_config[INITIAL_LOG_STD_KEY] = float(config.initial_log_std)
        algo_config = (
            PPOLagrangianConfig()
            .environment(env=ENV_NAME, env_config={"spec": ray.put(self.spec), "seed": seed})
            .env_runners(num_env_runners=config.env_runners, num_envs_per_env_runner=num_envs,
                         gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
                         num_cpus_per_env_runner=0 if config.env_runners == 0 else 1)
            .learners(num_learners=0)
            .training(lr=config.lr, gamma=config.gamma, lambda_=config.gae_lambda, clip_param=config.clip_param,
                      num_epochs=config.num_epochs, minibatch_size=min(config.minibatch_size, steps),
                      train_batch_size_per_learner=steps, entropy_coeff=config.entropy_coeff,
                      cost_keys=list(cost_keys), cost_budgets=[1.0] * len(cost_keys),
                      lagrange_init=config.lagrange_init, lagrange_lr=config.lagrange_lr,
                      cost_gae_lambda=config.cost_gae_lambda, defer_learning=True)
            .rl_module(model_config=model_config)
            # log_sys_usage off: no CPU/GPU polling thread in the driver (and no 'install gputil' line)
            .debugging(seed=seed, log_level="ERROR", log_sys_usage=False)
        )
        with _preserve_global_torch_state(), _one_thread(), without_log_lines(_RLLIB_NOTICES):
            self.algo = algo_config.build_algo()
        self.streams = RandomStreams(seed)

    def sample(self) -> list[tuple[Any, list[float], int]]:
        """Run one rollout; returns ``(episode, keep_ratios, level index in the space)`` per finished episode."""
        steering = [self.space.steering_limits(i) for i in self.levels]
        self.algo.env_runner_group.foreach_env_runner(lambda r: _start_rollout(r, levels=steering))
        with _one_thread(), self.streams.active():
            self.algo.train()
        out = []
        for episode in self.algo.pending_episodes:
            if not episode.is_done:
                continue  # a chunk cut mid-episode: its candidate comes with the next rollout
            info = episode.get_infos(-1)
            out.append((episode, [float(r) for r in info[CANDIDATE_INFO]], self.levels[int(info[LEVEL_INFO])]))
        return out

    def learn(self, episodes: Sequence[Any], replay: Sequence[Any] = ()) -> None:
        """Dual ascent and PPO update on ``episodes`` (one rollout's, their rewards written); ``replay``
        (earlier episodes, rewards written) joins the PPO update only."""
        self.algo.pending_episodes = list(episodes)  # with overlapping batches, not the last rollout's
        with _one_thread(), self.streams.active():
            self.algo.learn_pending(replay=replay)

    def sampling_state(self) -> dict[str, Any]:
        """What the next rollout's draws depend on besides the weights: the random streams and where
        the env's level round robin stands."""
        started = [c for c in self.algo.env_runner_group.foreach_env_runner(_episodes_started) if c is not None]
        return {"random": self.streams.state_dict(), "episodes_started": started[0] if started else 0}

    def load_sampling_state(self, state: Mapping[str, Any]) -> None:
        self.streams.load_state_dict(state["random"])
        count = int(state["episodes_started"])
        self.algo.env_runner_group.foreach_env_runner(lambda r: _set_episodes_started(r, count=count))

    def multipliers(self) -> dict[str, float]:
        return self.algo.lagranges.values()

    def close(self) -> None:
        self.algo.stop()


class CRLAgent(SearchAgent):
    """The constrained-RL agent (see the module docstring). Needs a connected Ray (``ray.init``)."""

    name = "crl"

    def __init__(self, space: SearchSpace, *, seed: int, batch_size: int, config: CRLConfig,
                 log: Callable[[str], None] = print, **_: Any) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size)
        import ray

        if not ray.is_initialized():
            raise RuntimeError("The crl agent runs on Ray: connect first (rayprune.ray_session.connect).")
        self.config = config
        self.cost_keys = sorted({n for lvl in space.levels for n in lvl.limits})
        groups = policy_groups(space.num_levels, config)
        per_policy = max(1, batch_size // len(groups))  # (crl_rollout_size says what this proposes per rollout)
        self.policies = [_Policy(space, g, episodes=per_policy, seed=seed * 101 + i, config=config,
                                 cost_keys=self.cost_keys) for i, g in enumerate(groups)]
        self.normalizer = RewardNormalizer(space.num_levels, mode=config.reward_normalization
                                           if config.reward_normalization != "none" else "level",
                                           elite=config.elite_share)
        self.elites = EliteReplay(space.num_levels, config.replay_elites)
        # rollouts asked for and not yet told: (policy, rollout number) -> its episodes
        self._rollouts: dict[tuple[int, int], list[Any]] = {}
        self._rollout = 0
        # overlapping batches: the next rollout is drawn before the last batch's outcomes are in
        self.pipelined = bool(config.pipeline)
        self._last: dict[str, Any] = {}

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        """One rollout of every policy: its whole batch of episodes (PPO's batch is fixed, so ``n`` only
        matters when it is 0: nothing is left to propose)."""
        if n is not None and n <= 0:
            return []
        proposals, r = [], self._rollout
        self._rollout += 1
        for p, policy in enumerate(self.policies):
            sampled = policy.sample()
            self._rollouts[(p, r)] = [episode for episode, _, _ in sampled]
            levels = [level for _, _, level in sampled]
            if self.config.action == "direction":  # every direction onto its level's boundary, in one go
                candidates = self.space.project_many([ratios for _, ratios, _ in sampled], levels)
            else:
                candidates = [self.space.rounded(ratios) for _, ratios, _ in sampled]
            for j, (ratios, level) in enumerate(zip(candidates, levels)):
                proposals.append(Proposal(ratios, level, {"policy": p, "rollout": r, "episode": j}))
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        from .cost_gae import COSTS_INFO_KEY, FAILED_INFO_KEY

        if self.config.reward_normalization != "none":
            rewards = self.normalizer([o.score for o in outcomes], [p.level for p in proposals])
        else:
            rewards = [0.0 if o.score is None else float(o.score) for o in outcomes]
        violations = {c: [] for c in self.cost_keys}
        told = sorted({(int(p.info["policy"]), int(p.info["rollout"])) for p in proposals})
        missing = [key for key in told if key not in self._rollouts]
        if missing:
            raise ValueError(f"crl tell(): outcomes for rollouts {missing} that this agent did not ask for "
                             f"(or already learned from); pending: {sorted(self._rollouts)}.")
        # self-imitation: the elites found before this batch join each update (this batch's are in it already)
        replays = [self.elites.episodes(policy.levels, self._reward_now) if self.elites.size else []
                   for policy in self.policies]
        for p, o, reward in zip(proposals, outcomes, rewards):
            episode = self._rollouts[(int(p.info["policy"]), int(p.info["rollout"]))][p.info["episode"]]
            episode.set_rewards(new_data=np.asarray(reward, dtype=np.float32), at_indices=-1)  # an array: RLlib checks it against a Box
            info = episode.get_infos(-1)
            limits = self.space.levels[p.level].limits
            if o.ok:
                costs = {c: float(o.costs[c]) / limits[c] for c in self.cost_keys
                         if c in limits and o.costs.get(c) is not None}
                for c, v in costs.items():
                    violations[c].append(v > 1.0)
            else:
                costs, info[FAILED_INFO_KEY] = {c: 1.0 for c in self.cost_keys}, True
            info[COSTS_INFO_KEY] = costs
            if o.ok:
                self.elites.offer(p.level, o.score, episode)  # its reward and costs written
        for key in told:  # in the order they were asked for
            self.policies[key[0]].learn(self._rollouts.pop(key), replay=replays[key[0]])
            replays[key[0]] = []  # once per tell
        self._last = {progress_key(VIOLATION_RATE, c): (float(np.mean(v)) if v else None) for c, v in violations.items()}

    def _reward_now(self, score: float, level: int) -> float:
        """What ``score`` earns at ``level`` today (a replayed elite's reward), as :meth:`tell` rewards."""
        return self.normalizer.reward(score, level) if self.config.reward_normalization != "none" else float(score)

    def metrics(self) -> dict[str, Any]:
        """λ per constraint (mean over policies) and the last batch's violation rates."""
        out = dict(self._last)
        for c in self.cost_keys:
            values = [p.multipliers().get(c) for p in self.policies]
            out[progress_key(LAMBDA, c)] = float(np.mean([v for v in values if v is not None])) if values else None
        return out

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "reward_history": self.normalizer.history, "rollout": self._rollout}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.normalizer.history = [list(h) for h in state["reward_history"]]
        self._rollout = int(state.get("rollout", 0))

    def save(self, directory: str | Path) -> None:
        for i, policy in enumerate(self.policies):
            policy.algo.save_to_path(str((Path(directory) / f"policy-{i}").resolve()))
            (Path(directory) / f"policy-{i}-sampling.json").write_text(json.dumps(policy.sampling_state()))
        # a batch the search loop drained but has not told yet (overlapping batches) is told after a
        # restart: its episodes go with the checkpoint (RLlib's own episode state; a pickle, like the
        # RLlib checkpoint beside it)
        with open(Path(directory) / _UNTOLD_FILE, "wb") as f:
            pickle.dump({key: [e.get_state() for e in episodes] for key, episodes in self._rollouts.items()}, f)
        if self.elites.size:
            with open(Path(directory) / _ELITES_FILE, "wb") as f:
                pickle.dump(self.elites.state(), f)

    def restore(self, directory: str | Path) -> None:
        for i, policy in enumerate(self.policies):
            with _one_thread():
                policy.algo.restore_from_path(str((Path(directory) / f"policy-{i}").resolve()))
            sampling = Path(directory) / f"policy-{i}-sampling.json"
            if sampling.exists():  # checkpoints from before session 15 have none: the seed's streams go on
                policy.load_sampling_state(json.loads(sampling.read_text()))
        untold = Path(directory) / _UNTOLD_FILE
        if untold.exists():
            from ray.rllib.env.single_agent_episode import SingleAgentEpisode

            with open(untold, "rb") as f:
                saved = pickle.load(f)
            self._rollouts = {tuple(key): [SingleAgentEpisode.from_state(e) for e in episodes]
                              for key, episodes in saved.items()}
        elites = Path(directory) / _ELITES_FILE
        if self.elites.size and elites.exists():
            with open(elites, "rb") as f:
                self.elites.load_state(pickle.load(f))

    def close(self) -> None:
        for policy in self.policies:
            policy.close()
