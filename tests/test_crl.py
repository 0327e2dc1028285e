"""The constrained-RL agent end to end on local Ray: lockstep evaluation, failures, budgets, export."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import ray

from rayprune.config import parse_config
from rayprune.job import run_prune
from rayprune.problem import PruningProblem

TESTS = Path(__file__).resolve().parent


def tiny_crl(tmp_cache, **search_overrides):
    crl = {"iterations": 2, "episodes_per_iteration": 4, "num_envs": 4, "evaluators": 2,
           "finetune_schedule": [[0, 3], [4, 5]], **search_overrides.pop("crl", {})}
    return parse_config({
        "name": "tiny-crl",
        "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.5}},
        "data": {"name": "digits", "device": "cpu"},
        "base_training": {"epochs": 3, "lr": 0.05, "batch_size": 64, "cache_dir": str(tmp_cache)},
        "pruning": {"min_keep": 0.2},
        "budgets": {"params": 0.5},
        "search": {"agent": "crl", "finetune": {"iterations": 5, "batch_size": 64},
                   "final_finetune": {"iterations": 10, "batch_size": 64}, "eval_samples": 200,
                   "crl": crl, **search_overrides},
    })


@pytest.fixture(scope="module")
def ray_session():
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("base-cache")


def _intervals_overlap(a, b):
    return a["wall_start"] < b["wall_end"] and b["wall_start"] < a["wall_end"]


def test_lockstep_candidates_are_evaluated_concurrently(ray_session, cache, tmp_path):
    cfg = tiny_crl(cache, crl={"finetune_schedule": [[0, 40]]})
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 8  # 2 iterations x 4 lockstep episodes
    fresh = search[~search["cached"]]
    assert set(fresh["evaluator"]) == {0, 1}
    pairs = [(a, b) for _, a in fresh.iterrows() for _, b in fresh.iterrows()
             if a["evaluator"] != b["evaluator"] and _intervals_overlap(a, b)]
    assert pairs, "no two evaluations on different evaluators overlapped in time"
    assert summary["feasible"] and summary["evaluations"] == 8
    # normalised Lagrangian costs: every measured row within budget is feasible
    assert (search["feasible"] == (search["params"] <= search["limit_params"])).all()


def test_killed_evaluator_is_restarted_and_every_row_lands_once(ray_session, cache, tmp_path, monkeypatch):
    import rayprune.agents.crl as crl_module
    from rayprune.evaluation.pool import EvaluatorPool

    pools = []

    class RecordingPool(EvaluatorPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            pools.append(self)

    monkeypatch.setattr(crl_module, "EvaluatorPool", RecordingPool)
    cfg = tiny_crl(cache, crl={"iterations": 3, "finetune_schedule": [[0, 60]]})
    killed = {}

    def kill_one_evaluator():
        deadline = time.time() + 300
        while time.time() < deadline:
            shards = list((tmp_path / "candidates").glob("*.parquet")) if (tmp_path / "candidates").exists() else []
            if pools and shards:  # mid-run: after the first batch was written
                time.sleep(0.5)  # let the next batch start on the actors
                pid = pools[0].stats()[0]["pid"]
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_one_evaluator, daemon=True)
    killer.start()
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=lambda m: None)
    killer.join(timeout=5)
    assert killed, "the test did not manage to kill an evaluator mid-run"
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 12  # 3 iterations x 4 episodes: nothing lost
    assert not search.duplicated(["env_id", "episode"]).any()  # nothing duplicated
    assert (search["status"] == "ok").all()
    # the restarted actor (a new process) evaluated candidates after the kill
    assert set(search.loc[search["evaluator"] == 0, "pid"]) - {killed["pid"]}
    assert summary["feasible"]


def test_two_constraints_with_a_user_cost_and_the_export_meets_both(ray_session, cache, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    base = tiny_crl(cache)
    cfg = parse_config(base.model_dump(mode="json"), overrides={
        "costs": {"custom": {"conv_channels": "crl_user_costs:conv_channels"}},
        "budgets": {"params": 0.6, "conv_channels": {"value": 40.0, "relative": False}},
    })
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=lambda m: None)
    assert set(summary["budgets"]) == {"params", "conv_channels"}
    assert summary["feasible"]
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    assert {"conv_channels", "limit_conv_channels", "params"} <= set(rows.columns)
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[2]); import rayprune; from crl_user_costs import conv_channels\n"
        "m = rayprune.load_pruned(sys.argv[1])\n"
        "print(json.dumps({'params': sum(p.numel() for p in m.parameters()), 'conv_channels': conv_channels(m, None)}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "best"), str(TESTS)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    measured = json.loads(out.stdout)
    assert measured["params"] <= summary["budgets"]["params"]["limit"]
    assert measured["conv_channels"] <= 40.0
