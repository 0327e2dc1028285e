"""The crl environment's action mapping: AMC's cap, the budget-filling floor, what a random policy gets."""

import numpy as np
import pytest

from rayprune.agents.env import LockstepPruningEnv, PruningEnvSpec
from rayprune.config import parse_config
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


def env_for(problem, **walls):
    spec = PruningEnvSpec.from_problem(problem, **walls)
    return LockstepPruningEnv(spec, evaluate=lambda *a, **k: [], num_envs=1), spec


def walk(env, spec, actions):
    ratios = []
    for t, a in enumerate(actions):
        ratios.append(env.action_to_ratio(a, ratios, t))
    counts = spec.counts(ratios)
    return ratios, {c: spec.analytic(c, counts) / spec.limits[c] for c in ("params", "macs")}


def test_with_both_walls_every_policy_lands_on_the_boundary_of_the_tightest_budget(problem):
    env, spec = env_for(problem, action_wall=True, budget_fill=True)
    rng = np.random.default_rng(0)
    for actions in [np.full(spec.num_groups, -1.0), np.full(spec.num_groups, 1.0),
                    *[rng.uniform(-1, 1, spec.num_groups) for _ in range(20)]]:
        ratios, used = walk(env, spec, actions)
        assert max(used.values()) <= 1.0 + 1e-9, used  # never over a budget (the cap)
        assert max(used.values()) >= 0.95, (used, ratios)  # and the budget is spent, up to channel rounding
        assert all(spec.min_keep - 1e-9 <= r <= 1.0 for r in ratios)


def test_without_the_floor_a_timid_policy_wastes_the_budget(problem):
    env, spec = env_for(problem, action_wall=True, budget_fill=False)
    _, used = walk(env, spec, np.full(spec.num_groups, -1.0))
    assert max(used.values()) < 0.5
    _, used = walk(env, spec, np.full(spec.num_groups, 1.0))
    assert max(used.values()) <= 1.0 + 1e-9


def test_the_floor_never_exceeds_the_cap_and_actions_are_monotone(problem):
    env, spec = env_for(problem, action_wall=True, budget_fill=True)
    decided = [0.5] * 3
    lo, hi = env.lower_bound(decided, 3), env.upper_bound(decided, 3)
    assert spec.min_keep <= lo <= hi <= 1.0
    ratios = [env.action_to_ratio(a, decided, 3) for a in np.linspace(-1, 1, 9)]
    assert ratios == sorted(ratios) and ratios[0] == pytest.approx(lo) and ratios[-1] == pytest.approx(hi)
    # the last group has no later groups to spend on: floor and cap meet (up to bisection)
    last = spec.num_groups - 1
    decided = [0.4] * last
    assert env.lower_bound(decided, last) == pytest.approx(min(env.upper_bound(decided, last),
                                                               env.lower_bound(decided, last)), abs=1e-5)
