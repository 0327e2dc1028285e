"""Zero-shot pruning with the shipped NEON agent: it loads, prunes an unseen MLP on an unseen
dataset, and the result is a smaller model that loads in a fresh process and evaluates."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from rayprune.config import parse_config
from rayprune.neon.apply import kept_neurons_plan
from rayprune.neon.features import observation_size
from rayprune.neon.policy import POLICY_FILE, load_policy, shipped_policy_dir
from rayprune.pruning import apply_plan, load_pruned
from rayprune.search.prune import run_prune

# what every agent writes (docs/results.md); NEON adds its own columns on top
COMMON_COLUMNS = {"row_id", "sweep_id", "trial_id", "agent", "seed", "stage", "iteration", "candidate_id",
                  "keep_ratios", "keep_counts", "finetune_iterations", "params", "macs", "accuracy",
                  "accuracy_final", "feasible", "status", "error", "cached", "t_build_s", "t_costs_s",
                  "t_eval_s", "t_finetune_s", "t_total_s", "host", "pid", "timestamp"}


def test_shipped_agent_is_small_and_loads():
    files = [p for p in shipped_policy_dir().rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 2 * 1024**2
    policy = load_policy()  # no path: the shipped agent
    assert policy.actions == [1.0, 0.9, 0.8, 0.7, 0.6]
    assert policy.observation_size == observation_size()
    training = policy.meta["training"]
    assert len(training["datasets"]) >= 12 and training["iterations"] >= 1
    p = policy.probabilities(np.zeros(observation_size(), dtype=np.float32))
    assert p.shape == (5,) and p.sum() == pytest.approx(1.0)
    # trained under the dynamics it is applied with, and says how its reward was measured
    episode = policy.meta["episode"]
    assert episode["rollback"] is True and episode["stop_when_idle"] is True and episode["passes"] >= 4
    assert episode["reward_units"] in ("percent", "fraction")


def test_a_broken_checkpoint_is_refused_with_its_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="pretrain"):
        load_policy(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):  # a mistyped path is not "holds no policy"
        load_policy(tmp_path / "typo")
    (tmp_path / POLICY_FILE).write_bytes(b"")
    (tmp_path / "policy.json").write_text(json.dumps({"format": "something/9"}))
    with pytest.raises(ValueError, match="format"):
        load_policy(tmp_path)


@pytest.fixture(scope="module")
def unseen_csv(tmp_path_factory):
    """A dataset the agent never saw: a fresh make_classification draw written as a user's CSV."""
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=900, n_features=12, n_informative=6, n_redundant=2, n_classes=3,
                               class_sep=1.3, random_state=2024)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(12)])
    frame["label"] = y
    path = tmp_path_factory.mktemp("unseen") / "unseen.csv"
    frame.to_csv(path, index=False)
    return path


def neon_config(csv, cache, **neon):
    return parse_config({
        "name": "neon-unseen",
        "model": {"name": "mlp", "kwargs": {"hidden_sizes": [96, 48, 24], "pre_layer": ["none", "batchnorm", "dropout", "none"],
                                            "activations": ["relu", "tanh", "relu"]}},
        "data": {"name": "tabular", "path": str(csv), "label": "label", "device": "cpu", "val_fraction": 0.2},
        "base_training": {"optimizer": "adam", "lr": 3e-3, "epochs": 25, "batch_size": 64, "cache_dir": str(cache)},
        "costs": {"measure": ["params", "macs"]},
        "neon": {"retrain": {"max_epochs": 4, "patience": 1, "max_samples": 512}, **neon},
    })


def test_zero_shot_pruning_of_an_unseen_mlp(unseen_csv, tmp_path):
    # the greedy episode plus two sampled from the policy: the smallest network within tolerance wins
    cfg = neon_config(unseen_csv, tmp_path / "cache", tolerance=5.0, passes=2, rollouts=3)
    summary = run_prune(cfg, tmp_path / "out", agent="neon", progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    assert COMMON_COLUMNS <= set(rows.columns)
    search = rows[rows["stage"] == "search"].sort_values(["rollout", "step"])
    for _, episode in search.groupby("rollout"):  # the unpruned network, then up to 2 passes x 3 layers
        steps = episode["step"].tolist()
        assert steps in ([-1, 0, 1, 2], [-1, 0, 1, 2, 3, 4, 5])  # a pass that changed nothing ends the episode
        assert (episode["params"].diff().dropna() <= 0).all()  # pruning only ever removes
        # rollback (the default): a step beyond tolerance is undone, so every network is within it
        assert episode["within_tolerance"].all()
        undone = episode[episode["rolled_back"]]
        assert (undone["regime"] == "beyond_tolerance").all() and (undone["reward"] < 0).all()
    assert sorted(search["rollout"].unique()) == [0, 1, 2]
    assert search["chosen"].sum() == 1 and (rows["stage"] == "final").sum() == 1
    within = search[search["within_tolerance"]]
    # the smallest network within tolerance on the decide split is the candidate; the selection split checks it
    # (docs/neon.md, "Tolerance"): it is handed back, or an earlier network of its own rollout
    candidate = summary["neon"]["candidate"]
    at = search[(search["rollout"] == candidate["rollout"]) & (search["step"] == candidate["step"])]
    assert at["params"].iloc[0] == within["params"].min()
    picked = search[search["chosen"]].iloc[0]
    assert picked["rollout"] == candidate["rollout"] and picked["step"] <= candidate["step"]
    assert (summary["neon"]["outcome"] == "accepted") == (picked["step"] == candidate["step"] > -1)
    if summary["neon"]["outcome"] != "unpruned":  # the verdict names the row: its `step`, 0-based
        assert f"step {picked['step']} (x" in summary["neon"]["reason"], summary["neon"]["reason"]
    # the summary reports what NEON did
    neon = summary["neon"]
    assert summary["agent"] == "neon" and summary["budgets"] == {} and summary["feasible"]
    assert neon["reduction_factor"] == pytest.approx(summary["base"]["params"] / summary["pruned"]["params"])
    assert neon["reduction_factor"] > 1.0, "the agent pruned nothing"
    assert neon["accuracy_change_val_points"] >= -5.0 - 1e-9  # chosen within tolerance on validation
    # the exported model is the chosen network itself: smaller, loads in a fresh process, evaluates
    best = tmp_path / "out" / "best"
    model = load_pruned(best)
    chosen = search[search["chosen"]].iloc[0]
    assert sum(p.numel() for p in model.parameters()) == chosen["params"] < summary["base"]["params"]
    code = ("import sys, torch; from rayprune.pruning import load_pruned; m = load_pruned(sys.argv[1]); "
            "print(m(torch.zeros(4, 12)).shape[1])")
    out = subprocess.run([sys.executable, "-c", code, str(best)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr
    saved = json.loads((best / "summary.json").read_text())
    assert saved["pruned"]["accuracy_test"] == pytest.approx(summary["pruned"]["accuracy_test"])
    assert list(saved["keep_counts"]) == list(chosen["keep_counts"])


def test_the_shipped_agent_prunes_an_unseen_network_on_its_own(unseen_csv, tmp_path):
    # one greedy episode (the method's way to apply an agent): no sampled rollouts to fall back on
    cfg = neon_config(unseen_csv, tmp_path / "cache", tolerance=1.0, rollouts=1)
    summary = run_prune(cfg, tmp_path / "out", agent="neon", progress=False, log=lambda m: None)
    neon = summary["neon"]
    # it cuts on the decide split; whether a cut is handed back depends on the check (90 selection samples show a
    # network within 1 point only if it gains on them): either way the summary says which and why
    assert neon["candidate"]["reduction_factor"] > 1.5, neon
    assert neon["outcome"] in ("accepted", "fallback", "unpruned") and neon["reason"]
    assert neon["accuracy_change_val_points"] >= -1.0 - 1e-9  # within tau on both parts of the validation split
    rows = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    assert (rows[rows["stage"] == "search"]["keep_fraction"] < 1.0).sum() >= 3  # it chose to cut, repeatedly


def test_kept_neurons_plan_replays_an_episode_on_the_base():
    from rayprune.models import build_model
    from rayprune.neon.episode import PruningEpisode
    from rayprune.neon.settings import EpisodeSettings
    from rayprune.neon.suite import load_suite_dataset
    from rayprune.neon.training import RetrainSettings

    data = load_suite_dataset("wine", seed=0)
    torch.manual_seed(1)
    base = build_model("mlp", num_classes=3, in_features=13, hidden_sizes=[16, 10], pre_layer="batchnorm").eval()
    # an untrained base: the published dynamics (no rollback) so every cut happens
    episode = PruningEpisode(base, data, EpisodeSettings(retrain=RetrainSettings(max_epochs=1), passes=2, rollback=False,
                                                         stop_when_idle=False))
    for action in (4, 2, 3, 4):
        episode.step(action)
    assert episode.widths == [7, 5]  # keep 0.6 then 0.7 of 16; 0.8 then 0.6 of 10
    plan = kept_neurons_plan(base, torch.zeros(1, 13), episode.roots, episode.kept)
    rebuilt = build_model("mlp", num_classes=3, in_features=13, hidden_sizes=[16, 10], pre_layer="batchnorm")
    apply_plan(rebuilt, plan)
    rebuilt.load_state_dict(episode.model.state_dict())  # same shapes, so the same network
    rebuilt.eval()
    assert torch.allclose(rebuilt(data.x_test), episode.model(data.x_test))
    # and the plan removed exactly the neurons the episode dropped from the base
    untouched = build_model("mlp", num_classes=3, in_features=13, hidden_sizes=[16, 10], pre_layer="batchnorm")
    untouched.load_state_dict(base.state_dict())
    apply_plan(untouched, plan)
    assert torch.equal(untouched.features[0].linear.weight, base.features[0].linear.weight[episode.kept[0]])


@pytest.mark.slow
def test_cli_prune_with_the_neon_agent(unseen_csv, tmp_path):
    config = tmp_path / "neon.yaml"
    cfg = neon_config(unseen_csv, tmp_path / "cache").model_dump(mode="json")
    import yaml

    config.write_text(yaml.safe_dump(cfg))
    out = subprocess.run(
        [sys.executable, "-m", "rayprune.cli", "prune", str(config), "--agent", "neon", "--tolerance", "1.0",
         "--agent-checkpoint", str(shipped_policy_dir()), "--out", str(tmp_path / "out"), "-q"],
        capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "neon (tolerance 1 pt): x" in out.stdout
    summary = json.loads((tmp_path / "out" / "best" / "summary.json").read_text())
    assert summary["neon"]["tolerance"] == 1.0 and summary["neon"]["policy"] == str(shipped_policy_dir())
    bad = subprocess.run(
        [sys.executable, "-m", "rayprune.cli", "prune", str(config), "--agent", "neon",
         "--agent-checkpoint", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out2")],
        capture_output=True, text=True, timeout=600,
    )
    assert bad.returncode == 2 and "nowhere" in bad.stderr
