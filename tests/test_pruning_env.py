"""The crl environment: AMC's cap, the budget-filling floor, levels in turn, candidates in the last info."""

import numpy as np
import pytest

from rayprune.agents import SearchSpace
from rayprune.agents.env import (
    CANDIDATE_INFO,
    LEVEL_INFO,
    PruningEnvSpec,
    PruningVectorEnv,
    action_to_ratio,
    lower_bound,
    upper_bound,
)
from rayprune.config import parse_config
from rayprune.costs.levels import levels_from_config
from rayprune.problem import PruningProblem


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    cfg = parse_config({
        "name": "env-walls", "model": {"name": "vgg11", "kwargs": {"width_mult": 0.125}},
        "data": {"name": "digits", "device": "cpu"}, "pruning": {"min_keep": 0.1},
        "base_training": {"epochs": 1, "cache_dir": str(tmp_path_factory.mktemp("cache"))},
        "costs": {"measure": ["params", "macs"]}, "budgets": {"params": 0.3, "macs": 0.6},
    })
    return PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")


def spec_for(problem, **walls):
    levels = levels_from_config(problem.config, problem.base_costs)
    space = SearchSpace.from_problem(problem, levels)
    return PruningEnvSpec.from_space(space, [0], **walls)


def walk(spec, actions):
    limits = spec.levels[0]
    ratios = []
    for t, a in enumerate(actions):
        ratios.append(action_to_ratio(spec, limits, a, ratios, t))
    counts = spec.counts(ratios)
    return ratios, {c: spec.analytic(c, counts) / limits[c] for c in ("params", "macs")}


def test_with_both_walls_every_policy_lands_on_the_boundary_of_the_tightest_budget(problem):
    spec = spec_for(problem, action_wall=True, budget_fill=True)
    rng = np.random.default_rng(0)
    for actions in [np.full(spec.num_groups, -1.0), np.full(spec.num_groups, 1.0),
                    *[rng.uniform(-1, 1, spec.num_groups) for _ in range(20)]]:
        ratios, used = walk(spec, actions)
        assert max(used.values()) <= 1.0 + 1e-9, used  # never over a budget (the cap)
        assert max(used.values()) >= 0.95, (used, ratios)  # and the budget is spent, up to channel rounding
        assert all(spec.min_keep - 1e-9 <= r <= 1.0 for r in ratios)


def test_without_the_floor_a_timid_policy_wastes_the_budget(problem):
    spec = spec_for(problem, action_wall=True, budget_fill=False)
    _, used = walk(spec, np.full(spec.num_groups, -1.0))
    assert max(used.values()) < 0.5
    _, used = walk(spec, np.full(spec.num_groups, 1.0))
    assert max(used.values()) <= 1.0 + 1e-9


def test_floor_and_cap_meet_where_the_budget_leaves_no_choice(problem):
    """At the last group the floor (spend the budget) and the cap (stay under it) pin the ratio down:
    they lie within one channel of each other, and every action maps between them, monotonically."""
    spec = spec_for(problem, action_wall=True, budget_fill=True)
    limits = spec.levels[0]
    decided = [0.5] * (spec.num_groups - 1)
    t = spec.num_groups - 1
    lo, hi = lower_bound(spec, limits, decided, t), upper_bound(spec, limits, decided, t)
    one_channel = 1.0 / spec.channels[t]
    # the cap is the last whole channel count within the limit, the floor the first that reaches it:
    # equal when a count hits the limit exactly, else the floor is one channel above the cap
    assert spec.min_keep <= lo <= hi + one_channel + 1e-9 and hi <= 1.0, (lo, hi)
    assert abs(hi - lo) <= one_channel + 1e-9, (lo, hi)
    ratios = [action_to_ratio(spec, limits, a, decided, t) for a in np.linspace(-1, 1, 9)]
    assert ratios == sorted(ratios) and ratios[0] == pytest.approx(min(lo, hi)) and ratios[-1] == pytest.approx(hi)


def test_episodes_take_levels_in_turn_and_emit_their_candidate(problem):
    levels = levels_from_config(parse_config(problem.config.model_dump(mode="json"), overrides={
        "sweep": {"budgets": {"params": [0.6, 0.3, 0.15]}}}), problem.base_costs, sweep=True)
    space = SearchSpace.from_problem(problem, levels)
    spec = PruningEnvSpec.from_space(space, [0, 1, 2])
    env = PruningVectorEnv(spec, num_envs=4)
    obs, _ = env.reset()
    assert obs.shape == (4, spec.observation_size)
    assert list(env._levels) == [0, 1, 2, 0]
    # the level is in the observation: limit/base of params differs between episodes 0 and 1
    assert obs[0, 14] == pytest.approx(0.6, rel=1e-3) and obs[1, 14] == pytest.approx(0.3, rel=1e-3)
    rng = np.random.default_rng(1)
    for t in range(spec.num_groups):
        obs, rewards, terminated, truncated, infos = env.step(rng.uniform(-1, 1, (4, 1)))
        assert not rewards.any()  # nothing is scored in the env
    assert terminated.all()
    for i in range(4):
        ratios, level = infos[CANDIDATE_INFO][i], infos[LEVEL_INFO][i]
        limit = levels[level].limits["params"]
        params = spec.analytic("params", spec.counts(ratios))
        assert params <= limit * (1 + 1e-9) and params >= 0.9 * limit, (level, params, limit)
    env.step(np.zeros((4, 1)))  # NEXT_STEP autoreset: the next round draws the following levels
    assert list(env._levels) == [1, 2, 0, 1]


def test_a_direction_action_maps_onto_min_keep_to_one_whatever_was_decided_before(problem):
    """``action: direction``: no walls, the same linear map at every step; the budget is the
    agent's projection's business, not the env's."""
    spec = spec_for(problem, action="direction")
    limits = spec.levels[0]
    for decided in ([], [1.0] * 3, [spec.min_keep] * 3):
        t = len(decided)
        assert action_to_ratio(spec, limits, -1.0, decided, t) == pytest.approx(spec.min_keep)
        assert action_to_ratio(spec, limits, 1.0, decided, t) == pytest.approx(1.0)
        assert action_to_ratio(spec, limits, 0.0, decided, t) == pytest.approx((spec.min_keep + 1.0) / 2)
        assert action_to_ratio(spec, limits, 7.0, decided, t) == pytest.approx(1.0)  # clipped like any action
    ratios, used = walk(spec, np.ones(spec.num_groups))
    assert ratios == [1.0] * spec.num_groups and max(used.values()) > 1.0  # a direction may be over budget


def test_the_direction_env_emits_the_direction_and_its_level_at_the_last_step(problem):
    levels = levels_from_config(problem.config, problem.base_costs)
    space = SearchSpace.from_problem(problem, levels)
    spec = PruningEnvSpec.from_space(space, [0], action="direction")
    env = PruningVectorEnv(spec, num_envs=2)
    env.reset()
    actions = np.linspace(-1, 1, spec.num_groups)
    for t in range(spec.num_groups):
        _, _, done, _, info = env.step(np.full((2, 1), actions[t]))
    assert done.all()
    expected = spec.min_keep + (actions + 1) / 2 * (1 - spec.min_keep)
    assert np.allclose(np.stack(info[CANDIDATE_INFO]), expected[None, :])
    assert list(info[LEVEL_INFO]) == [0, 0]
