"""Tests of PPO-Lagrangian on RLlib's new API stack: the maths, the cost connector and short runs.

The toy constrained env: T = 3 steps, action a_t ∈ [0, 1], terminal reward Σa, terminal cost
Σa / T (budget 0.3). A random policy costs ≈ 0.5; an unconstrained learner drives it towards 1.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import ray
import torch
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.connectors.learner import AddOneTsToEpisodesAndTruncate
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.tune.registry import register_env

from rayprune.agents.cost_gae import (
    COST_ADVANTAGES,
    COST_VALUE_TARGETS,
    CostGeneralAdvantageEstimation,
    EpisodeCostTracker,
    cost_value_targets,
    episode_step_costs,
    step_costs,
)
from rayprune.agents.lagrange import LagrangeSet
from rayprune.agents.ppo_lagrangian import (
    COST_VF_LOSS_KEY,
    EPISODE_COST_METRIC,
    LAGRANGE_METRIC,
    VIOLATION_RATE_METRIC,
    PPOLagrangian,
    PPOLagrangianConfig,
    clipped_surrogate,
    lagrangian_policy_loss,
    metric_name,
)

T = 3
BUDGET = 0.3
COST_KEY = "params"
LAGRANGE = metric_name(LAGRANGE_METRIC, COST_KEY)
COST = metric_name(EPISODE_COST_METRIC, COST_KEY)
VIOLATION = metric_name(VIOLATION_RATE_METRIC, COST_KEY)


# --- toy envs -------------------------------------------------------------------------------
class ToyConstrainedEnv(gym.Env):
    """Observation (t / T, Σa / T); reward Σa and cost Σa / T, both at the last step only."""

    def __init__(self, config=None):
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.multipliers = None

    def _obs(self):
        return np.array([self.t / T, self.total / T], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.total = 0, 0.0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        self.total += float(np.clip(action[0], 0.0, 1.0))
        done = self.t >= T
        reward = self.total if done else 0.0
        info = {"costs": {COST_KEY: self.total / T}} if done else {}
        return self._obs(), reward, done, False, info

    def set_multipliers(self, multipliers):
        self.multipliers = multipliers


class ToyVectorEnv(VectorEnv):
    """K lockstep ToyConstrainedEnvs with NEXT_STEP autoreset, the mode RLlib 2.60 expects."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.envs = [ToyConstrainedEnv() for _ in range(num_envs)]
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._autoreset = np.zeros(num_envs, dtype=bool)
        self.multipliers = None
        self.finished_episode_costs = []

    def set_multipliers(self, multipliers):
        self.multipliers = multipliers

    def reset(self, *, seed=None, options=None):
        observations, infos = [], {}
        for i, env in enumerate(self.envs):
            obs, info = env.reset(seed=None if seed is None else seed + i)
            observations.append(obs)
            infos = self._add_info(infos, info, i)
        self._autoreset[:] = False
        return np.stack(observations), infos

    def step(self, actions):
        observations, rewards, terminateds, truncateds, infos = [], [], [], [], {}
        for i, env in enumerate(self.envs):
            if self._autoreset[i]:  # NEXT_STEP: this step only resets the finished sub-env
                obs, info = env.reset()
                reward, terminated, truncated = 0.0, False, False
            else:
                obs, reward, terminated, truncated, info = env.step(actions[i])
                if terminated:
                    self.finished_episode_costs.append(info["costs"][COST_KEY])
            observations.append(obs)
            rewards.append(reward)
            terminateds.append(terminated)
            truncateds.append(truncated)
            infos = self._add_info(infos, info, i)
        self._autoreset = np.logical_or(terminateds, truncateds)
        return (
            np.stack(observations),
            np.asarray(rewards, dtype=np.float64),
            np.asarray(terminateds),
            np.asarray(truncateds),
            infos,
        )


CREATOR_CALLS = []


def make_toy_vector_env(config):
    """The creator RLlib calls in VECTOR_ENTRY_POINT mode: a plain dict, env_config + num_envs."""
    CREATOR_CALLS.append(dict(config))
    return ToyVectorEnv(num_envs=config["num_envs"])


def toy_config(budget=BUDGET, seed=0):
    return (
        PPOLagrangianConfig()
        .environment(ToyConstrainedEnv)
        .env_runners(num_env_runners=0)
        .learners(num_learners=0)
        .training(lr=1e-3, cost_keys=[COST_KEY], cost_budgets=[budget])
        .rl_module(model_config={"fcnet_hiddens": [32, 32]})  # METHODS.md's policy net
        .debugging(seed=seed)
    )


# --- pure maths (no Ray) ----------------------------------------------------------------------
def test_step_costs_reads_grouped_or_flat_infos_and_defaults_to_zero():
    keys = ["params", "latency"]
    assert step_costs({"costs": {"params": 0.3}}, keys).tolist() == [0.3, 0.0]
    assert step_costs({"params": 0.2, "latency": 0.1}, keys).tolist() == [0.2, 0.1]
    assert step_costs({}, keys).tolist() == [0.0, 0.0]
    assert step_costs(None, keys).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="'params'"):
        step_costs({"costs": {"params": float("nan")}}, keys)


def _episode(step_infos, *, terminated, actions=None):
    n = len(step_infos)
    return SingleAgentEpisode(
        observations=[np.zeros(2, np.float32)] * (n + 1),
        infos=[{}] + list(step_infos),
        actions=actions if actions is not None else [np.zeros(1, np.float32)] * n,
        rewards=[0.0] * n,
        extra_model_outputs={
            Columns.ACTION_LOGP: [0.0] * n,
            Columns.ACTION_DIST_INPUTS: [np.zeros(2, np.float32)] * n,
        },
        terminated=terminated,
        len_lookback_buffer=0,
    )


def test_episode_step_costs_align_step_t_with_info_t_plus_1():
    episode = _episode([{}, {"c": 0.2}, {"costs": {"c": 0.6}}], terminated=True)
    assert episode_step_costs(episode, ["c"])[:, 0].tolist() == [0.0, 0.2, 0.6]


def test_episode_cost_tracker_sums_chunks_of_one_episode():
    tracker = EpisodeCostTracker(["c"])
    first = _episode([{"c": 0.1}, {"c": 0.2}], terminated=False)
    second = first.cut()
    second.add_env_step(
        np.zeros(2, np.float32), np.zeros(1, np.float32), 0.0, infos={"c": 0.4}, terminated=True,
        extra_model_outputs={Columns.ACTION_LOGP: 0.0, Columns.ACTION_DIST_INPUTS: np.zeros(2)},
    )
    other = _episode([{"c": 1.0}], terminated=True)
    assert tracker.add([first, other]).tolist() == [[1.0]]  # `first` is not finished yet
    assert tracker.add([second]) == pytest.approx(np.array([[0.7]]))
    assert tracker.add([]).shape == (0, 1)


def test_an_episode_whose_candidate_failed_does_not_move_the_multipliers():
    from rayprune.agents.cost_gae import FAILED_INFO_KEY

    tracker = EpisodeCostTracker(["c"])
    failed = _episode([{"c": 0.0}, {"c": 5.0, FAILED_INFO_KEY: True}], terminated=True)
    ok = _episode([{"c": 0.3}], terminated=True)
    assert tracker.add([failed, ok]).tolist() == [[0.3]]  # only the measured episode counts


def test_cost_value_targets_per_constraint():
    # Two episodes back to back: a terminated one (3 steps) and a chunk cut after 2 steps, each
    # followed by its artificial bootstrap row, as the Learner pipeline lays them out.
    costs = np.array([[0, 1], [0, 0], [0.6, 0], [0, 0], [0.2, 0], [0.4, 0], [0, 0]], np.float32)
    terminateds = np.array([0, 0, 1, 0, 0, 0, 0], np.float32)
    truncateds = np.array([0, 0, 0, 0, 0, 1, 0], np.float32)
    values = np.ones_like(costs)
    targets = cost_value_targets(values, costs, terminateds, truncateds, gamma=0.5, lambda_=1.0)
    # Terminated: discounted cost-to-go, no bootstrap.  Cut chunk: bootstrap V(s_T) = 1.
    assert targets[:3, 0] == pytest.approx([0.15, 0.3, 0.6])
    assert targets[:3, 1] == pytest.approx([1.0, 0.0, 0.0])
    assert targets[4:6, 0] == pytest.approx([0.2 + 0.5 * 0.9, 0.4 + 0.5 * 1.0])
    assert targets[4:6, 1] == pytest.approx([0.25, 0.5])


def test_lagrangian_policy_loss_reduces_to_ppo_without_multipliers():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.1])
    adv_r = torch.tensor([1.0, -1.0, 2.0, -0.5])
    adv_c = torch.tensor([[3.0], [1.0], [-2.0], [0.5]])
    loss = lagrangian_policy_loss(ratio, adv_r, adv_c, torch.zeros(1), clip_param=0.2)
    assert torch.allclose(loss, -clipped_surrogate(ratio, adv_r, 0.2))
    assert clipped_surrogate(ratio, adv_r, 0.2).tolist() == pytest.approx([0.5, -1.0, 2.4, -0.55])


def test_lagrangian_policy_loss_formula_and_gradient_direction():
    ratio = torch.tensor([1.3, 0.9], requires_grad=True)
    adv_r = torch.tensor([0.5, -0.2])
    adv_c = torch.tensor([[1.0, 2.0], [-1.0, -0.5]])
    nu = torch.tensor([0.5, 1.5])
    loss = lagrangian_policy_loss(ratio, adv_r, adv_c, nu, clip_param=0.2)
    expected = (-clipped_surrogate(ratio, adv_r, 0.2) + ratio * (adv_c @ nu)) / (1 + nu.sum())
    assert torch.allclose(loss, expected)
    # With no reward signal, minimising the loss lowers the probability of costly actions.
    ratio = torch.ones(2, requires_grad=True)
    lagrangian_policy_loss(ratio, torch.zeros(2), adv_c, nu, 0.2).sum().backward()
    assert ratio.grad[0] > 0 and ratio.grad[1] < 0  # A_C > 0 → push ρ down, A_C < 0 → up


def test_cost_connector_puts_cost_targets_and_advantages_in_the_batch():
    config = PPOLagrangianConfig().training(cost_keys=["c", "d"], cost_budgets=[0.1, 0.1])
    obs_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    act_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
    rl_module = config.get_multi_rl_module_spec(
        spaces={DEFAULT_MODULE_ID: (obs_space, act_space)}
    ).build()
    head = rl_module[DEFAULT_MODULE_ID].cost_vf
    last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # a constant cost critic V_C(s) = 1 makes the targets checkable
        last.weight.zero_()
        last.bias.fill_(1.0)

    episodes = [
        _episode([{}, {}, {"costs": {"c": 0.6}}], terminated=True),
        _episode([{"c": 0.2}, {"costs": {"c": 0.4, "d": 1.0}}], terminated=False),
    ]
    batch = {}
    AddOneTsToEpisodesAndTruncate()(rl_module=None, batch=batch, episodes=episodes, shared_data={})
    module_batch = {
        column: np.concatenate([np.asarray(rows) for rows in per_episode.values()])
        for column, per_episode in batch.items()
    }
    module_batch[Columns.OBS] = torch.zeros(7, 2)
    out = CostGeneralAdvantageEstimation(cost_keys=["c", "d"], gamma=0.5, lambda_=1.0)(
        rl_module=rl_module, episodes=episodes, batch={DEFAULT_MODULE_ID: module_batch}
    )[DEFAULT_MODULE_ID]

    targets = out[COST_VALUE_TARGETS].numpy()
    assert targets.shape == (7, 2)
    assert targets[:3, 0] == pytest.approx([0.15, 0.3, 0.6])  # terminated at 0.6
    assert targets[:3, 1] == pytest.approx([0.0, 0.0, 0.0])
    assert targets[4:6, 0] == pytest.approx([0.65, 0.9])  # cut chunk, bootstrapped with V = 1
    assert targets[4:6, 1] == pytest.approx([0.75, 1.5])
    valid = module_batch[Columns.LOSS_MASK].astype(bool)
    advantages = out[COST_ADVANTAGES].numpy()[valid]
    assert advantages.mean(axis=0) == pytest.approx([0.0, 0.0], abs=1e-5)
    assert advantages.std(axis=0) == pytest.approx([1.0, 1.0], abs=1e-3)


@pytest.mark.parametrize(
    ("training", "name"),
    [
        ({"cost_keys": [], "cost_budgets": []}, "cost_keys"),
        ({"cost_keys": ["a", "a"], "cost_budgets": [1.0, 1.0]}, "cost_keys"),
        ({"cost_keys": ["a"], "cost_budgets": [1.0, 2.0]}, "cost_budgets"),
        ({"cost_keys": ["a"], "cost_budgets": [float("nan")]}, "'a'"),
        ({"cost_keys": ["a"], "cost_budgets": [1.0], "lagrange_lr": -0.5}, "lagrange_lr"),
        ({"cost_keys": ["a"], "cost_budgets": [1.0], "lagrange_init": -1.0}, "lagrange_init"),
        ({"cost_keys": ["a"], "cost_budgets": [1.0], "cost_gae_lambda": 1.5}, "cost_gae_lambda"),
        ({"cost_keys": ["a"], "cost_budgets": [1.0], "lagrange_min": 2.0}, "lagrange_min"),
    ],
)
def test_config_validation_names_the_field(training, name):
    config = PPOLagrangianConfig().environment(ToyConstrainedEnv).training(**training)
    with pytest.raises(ValueError, match=name):
        config.validate()


def test_a_zero_multiplier_learning_rate_is_a_fixed_penalty():
    """lagrange_lr 0 is the ablation without dual ascent: the config is valid and ν never moves."""
    config = PPOLagrangianConfig().environment(ToyConstrainedEnv).training(
        cost_keys=["a"], cost_budgets=[1.0], lagrange_init=2.5, lagrange_lr=0.0)
    config.validate()
    lams = LagrangeSet(config.cost_budget_map, init=config.lagrange_init, lr=config.lagrange_lr)
    for cost in (5.0, 0.0, 3.0):
        assert lams.update({"a": cost})["a"] == pytest.approx(2.5)


# --- short training runs on a local Ray -------------------------------------------------------
N_ITERATIONS = 5


@pytest.fixture(scope="module")
def ray_local():
    # Sampling and learning run in this process (0 env runners, 0 learners): one torch thread
    # avoids oversubscribing the 2 shared cores, which slows these runs down ~10x.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = not ray.is_initialized()  # else reuse another module's cluster and leave it up
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024)
    yield
    if started:
        ray.shutdown()
    torch.set_num_threads(threads)


def _train(algo, n):
    results = [algo.train() for _ in range(n)]
    return {
        "lagrange": [r[LAGRANGE] for r in results],
        "cost": [r[COST] for r in results],
        "violation": [r[VIOLATION] for r in results],
        "learner": results[-1]["learners"][DEFAULT_MODULE_ID],
    }


@pytest.fixture(scope="module")
def constrained(ray_local):
    """The budget binds: a random policy costs ≈ 0.5 > 0.3."""
    algo = toy_config(budget=BUDGET).build_algo()
    history = _train(algo, N_ITERATIONS)
    yield algo, history
    algo.stop()


@pytest.fixture(scope="module")
def unconstrained(ray_local):
    """Same run with a budget that never binds: ν only decays, the policy chases reward."""
    algo = toy_config(budget=1e3).build_algo()
    history = _train(algo, N_ITERATIONS)
    algo.stop()
    return history


@pytest.mark.slow
def test_multiplier_rises_while_cost_over_budget(constrained):
    _, history = constrained
    assert history["cost"][0] > BUDGET  # the first rollout violates the budget ...
    assert history["lagrange"][0] > 1.0  # ... so ν rose from its init before the first update
    assert history["violation"][0] > 0.5


@pytest.mark.slow
def test_cost_moves_down_compared_with_unconstrained_run(constrained, unconstrained):
    _, history = constrained
    later_cost = np.mean(history["cost"][1:])
    assert later_cost < history["cost"][0] - 0.15
    # Without the cost term in the loss both runs would chase the reward alike.
    assert later_cost < np.mean(unconstrained["cost"][1:]) - 0.3
    assert np.mean(unconstrained["cost"][1:]) > unconstrained["cost"][0]


@pytest.mark.slow
def test_multiplier_falls_while_cost_under_budget(unconstrained):
    nus = unconstrained["lagrange"]
    assert all(cost < 1e3 for cost in unconstrained["cost"])
    assert nus[0] < 1.0
    assert all(later < earlier for earlier, later in zip(nus, nus[1:]))
    assert all(nu > 0.0 for nu in nus)


@pytest.mark.slow
def test_metrics_and_learner_results(constrained):
    algo, history = constrained
    assert all(0.0 <= rate <= 1.0 for rate in history["violation"])
    assert np.isfinite(history["learner"][COST_VF_LOSS_KEY])
    # The learner's ν is the algorithm's ν.
    assert algo.learner_group._learner.multipliers == pytest.approx(
        [history["lagrange"][-1]], rel=1e-6
    )


@pytest.mark.slow
def test_checkpoint_restores_multipliers_and_iteration(constrained, tmp_path):
    algo, _ = constrained
    algo.save_to_path(tmp_path)
    state, iteration = algo.lagranges.state_dict(), algo.iteration

    restored = Algorithm.from_checkpoint(tmp_path)
    try:
        assert isinstance(restored, PPOLagrangian)
        assert restored.iteration == iteration == N_ITERATIONS
        assert restored.lagranges.state_dict() == state
        assert restored.learner_group._learner.multipliers == pytest.approx(
            [algo.lagranges[COST_KEY].value], rel=1e-6
        )
        result = restored.train()
        assert result["training_iteration"] == N_ITERATIONS + 1
    finally:
        restored.stop()

    fresh = toy_config(budget=BUDGET).build_algo()
    try:
        fresh.restore_from_path(tmp_path)
        assert fresh.iteration == N_ITERATIONS
        assert fresh.lagranges.state_dict() == state
    finally:
        fresh.stop()


@pytest.mark.slow
def test_vector_entry_point_env_runs_and_delivers_per_sub_env_costs(ray_local):
    register_env("rayprune-test-toy-vector", make_toy_vector_env)
    CREATOR_CALLS.clear()
    config = (
        toy_config()
        .environment("rayprune-test-toy-vector", env_config={"tag": 1})
        .env_runners(
            num_envs_per_env_runner=4,
            gym_env_vectorize_mode=gym.VectorizeMode.VECTOR_ENTRY_POINT,
        )
    )
    algo = config.build_algo()
    try:
        assert CREATOR_CALLS == [{"tag": 1, "num_envs": 4}]
        vector_env = algo.env_runner.env.unwrapped
        assert isinstance(vector_env, ToyVectorEnv)
        assert vector_env.multipliers == {COST_KEY: 1.0}  # pushed at setup

        # Every sub-env's terminal cost lands in its own episode: cost == final Σa / T.
        episodes = algo.env_runner.sample(num_episodes=8, random_actions=True)
        assert len(episodes) == 8
        for episode in episodes:
            assert len(episode) == T and episode.is_terminated
            assert episode_step_costs(episode, [COST_KEY])[-1, 0] == pytest.approx(
                float(episode.get_observations(-1)[1]), abs=1e-6
            )

        # ... and reaches the learner connector: with γ_c = 0.99, λ_c = 1 and a terminated
        # episode, the cost target of step t is 0.99^(T-1-t) · cost.
        learner = algo.learner_group._learner
        batch = learner._learner_connector(
            rl_module=learner.module,
            batch={},
            episodes=copy.deepcopy(episodes),
            shared_data={},
        )[DEFAULT_MODULE_ID]
        targets = batch[COST_VALUE_TARGETS].numpy().reshape(len(episodes), T + 1)[:, :T]
        costs = np.array([episode_step_costs(e, [COST_KEY])[-1, 0] for e in episodes])
        assert targets == pytest.approx(np.outer(costs, 0.99 ** np.arange(T - 1, -1, -1)), abs=1e-5)

        vector_env.finished_episode_costs.clear()
        result = algo.train()
        assert result[COST] == pytest.approx(np.mean(vector_env.finished_episode_costs), rel=1e-6)
        assert len(vector_env.finished_episode_costs) >= 4
        assert vector_env.multipliers == {COST_KEY: pytest.approx(result[LAGRANGE])}
    finally:
        algo.stop()
