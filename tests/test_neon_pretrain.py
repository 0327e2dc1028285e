"""Pretraining NEON on RLlib: lockstep steps as parallel Ray tasks, and a short run that learns."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import ray
import yaml

from rayprune.neon.env import EpisodeSettings, EpisodeSource, NeonPruningEnv, NeonVectorEnv
from rayprune.neon.networks import NetworkCache, NetworkSettings, ensure_networks, sample_network_specs
from rayprune.neon.policy import load_policy
from rayprune.neon.reward import reward_scale
from rayprune.neon.suite import SuiteSplit
from rayprune.neon.training import RetrainSettings


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    settings = NetworkSettings(widths=(8, 16), max_layers=3, train=RetrainSettings(max_epochs=6, patience=2))
    specs = sample_network_specs(["moons", "wine"], 2, settings, seed=5)
    records = ensure_networks(specs, NetworkCache(tmp_path_factory.mktemp("nets")), settings, SuiteSplit(), parallel=False)
    episode = EpisodeSettings(retrain=RetrainSettings(max_epochs=1, patience=1, max_samples=128), activation_samples=32)
    return EpisodeSource(tuple(records), SuiteSplit(), episode, (1.0, 5.0))


def _roll(env, steps, seed):
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    trace = [obs]
    for _ in range(steps):
        obs, reward, terminated, _, _ = env.step(rng.integers(0, 5, size=env.num_envs))
        trace += [obs, reward, terminated]
    return trace, env.drain_finished()


@pytest.fixture(scope="module")
def ray_session():
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_parallel_lockstep_steps_equal_sequential_ones(source, ray_session):
    """Steps run as Ray tasks give exactly what running them one after the other gives, and
    episodes of different depths end and restart on their own (NEXT_STEP autoreset)."""
    parallel, finished_p = _roll(NeonVectorEnv(source, num_envs=3, parallel=True), 8, seed=11)
    sequential, finished_s = _roll(NeonVectorEnv(source, num_envs=3, parallel=False), 8, seed=11)
    assert all(np.array_equal(a, b) for a, b in zip(parallel, sequential))
    assert [f["network"] for f in finished_p] == [f["network"] for f in finished_s] and finished_p
    assert {f["depth"] for f in finished_s} and all(f["steps"] == f["depth"] for f in finished_s)
    # the scaled rewards add up to the episode's NEON return
    scale = reward_scale(source.settings.actions)
    assert all(abs(f["return"]) * scale <= f["steps"] + 1e-9 for f in finished_s)


def test_single_env_runs_an_episode(source):
    env = NeonPruningEnv(source, seed=0)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs) and info["tolerance"] in (1.0, 5.0)
    done, steps = False, 0
    while not done:
        obs, reward, done, _, record = env.step(4)
        steps += 1
        assert reward == pytest.approx(env.scale * record["reward"])
    assert steps == env.finished[-1]["depth"] and env.finished[-1]["widths"][0] <= env.finished[-1]["original_widths"][0]


TINY_PRETRAIN = {
    "name": "tiny-neon-pretrain",
    "seed": 0,
    "neon": {
        "activation_samples": 64,
        "retrain": {"max_epochs": 2, "patience": 1, "max_samples": 256},
        "pretrain": {
            # networks at 100 % validation accuracy cannot improve, and a wide tolerance is never
            # exceeded, so a step is worth exactly s (the within-tolerance regime): a bigger cut is always
            # worth more, and the policy has something clear to learn within a few iterations
            "iterations": 8, "passes": 2, "steps_per_iteration": 64, "num_envs": 4, "parallel_steps": False,
            "tolerances": [50.0], "lr": 1e-2, "num_epochs": 15, "minibatch_size": 32, "entropy_coeff": 0.0,
            "hidden": [32], "segment_hidden": 8,
            "suite": {"datasets": ["three_blobs"]},
            # one hidden layer each: every episode is two steps, so episode returns compare directly
            "networks": {"per_dataset": 3, "widths": [16, 32], "min_layers": 1, "max_layers": 1,
                         "train": {"max_epochs": 40, "patience": 6}},
        },
    },
}


@pytest.mark.slow
def test_short_pretraining_improves_the_mean_episode_reward(tmp_path, ray_session):
    """PPO on RLlib over the real pipeline (networks as Ray tasks, suite, env, export): the mean
    episode reward over the last iterations beats the first ones, and it writes a loadable policy,
    curves and a report."""
    from rayprune.config import parse_config
    from rayprune.neon.pretrain import run_pretrain

    cfg = json.loads(json.dumps(TINY_PRETRAIN))
    cfg["neon"]["pretrain"]["networks"]["cache_dir"] = str(tmp_path / "nets")
    out = tmp_path / "agent"
    report = run_pretrain(parse_config(cfg), out, log=lambda m: None)
    curves = pd.read_csv(out / "curves.csv")
    assert len(curves) == 8 and (curves["episodes"] > 0).all()
    first, last = curves["return_mean"].head(3).mean(), curves["return_mean"].tail(3).mean()
    assert last > first, f"mean episode reward did not improve: {curves['return_mean'].round(5).tolist()}"
    assert curves["entropy"].iloc[-1] < curves["entropy"].iloc[0]  # the policy became more decided
    policy = load_policy(out)
    assert policy.meta["training"]["datasets"] == ["three_blobs"]
    assert policy.meta["episode"]["passes"] == 2
    assert report["last_return_mean"] > report["first_return_mean"] and report["episodes"] == curves["episodes"].sum()
    assert (out / "curves.png").stat().st_size > 0 and (out / "rllib_checkpoint").is_dir()
    assert "| iteration |" in (out / "report.md").read_text()
    # no neon.pretrain.seed: PPO runs on the config's seed, and both are recorded (bench_neon's fold agents set it)
    assert policy.meta["training"]["agent_seed"] == report["agent_seed"] == report["seed"]
    assert f"agent seed {report['agent_seed']}" in (out / "report.md").read_text()


def test_cli_pretrain_checks_the_config_before_starting(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"neon": {"pretrain": {"iterations": 0, "suite": {"groups": ["A"]}}}}))
    run = subprocess.run([sys.executable, "-m", "rayprune.cli", "pretrain", str(config), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "neon.pretrain.iterations" in run.stderr
    assert not (tmp_path / "o").exists()
    helped = subprocess.run([sys.executable, "-m", "rayprune.cli", "pretrain", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert helped.returncode == 0 and "--iterations" in helped.stdout
