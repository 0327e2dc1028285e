"""benchmarks/bench_neon.py (issue #15): its episode methods go through the product's search_neon (decide
split, then the check on the selection split), and its tables report the within-τ-on-test share next to
the check's outcomes. Small: one tiny network, one pass, and synthetic rows for the tables."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from rayprune.neon.networks import NetworkSpec
from rayprune.neon.policy import load_policy
from rayprune.neon.selection import OUTCOMES
from rayprune.neon.suite import load_suite_dataset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_neon", ROOT / "benchmarks" / "bench_neon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scripted_rules_run_through_search_neon_and_hand_back_its_network(bench):
    data = load_suite_dataset("moons", seed=0)
    spec = NetworkSpec("moons", (16, 8), ("none", "none", "none"), ("relu", "relu"), seed=0)
    model = spec.build(2, 2).eval()
    problem = bench.neon_problem(SimpleNamespace(spec=spec), model, data, seed=0)
    agent = load_policy()
    max_cut = bench.ScriptedPolicy(agent, lambda rng: int(np.argmin(agent.actions)), "max_cut")
    check = {"selection_fraction": 0.5, "confidence": 0.9, "walk": "every"}
    for policy in (None, max_cut):
        pruned, info, result = bench.run_checked(problem, {"tolerance": 5.0, "rollouts": 1, "passes": 1, **check}, 0,
                                                 policy=policy)
        # the same walk at the same confidence hands back the same network; a looser one never a larger one
        same, columns = bench.recheck(result, 5.0, 0.9)
        assert bench.n_params(same) == bench.n_params(pruned) and columns["outcome"] == info["outcome"]
        looser, _ = bench.recheck(result, 5.0, 0.5)
        assert bench.n_params(looser) <= bench.n_params(pruned)
        alone, columns = bench.recheck(result, 5.0, 0.9, "candidate")  # one test: the candidate or nothing
        assert columns["outcome"] in ("accepted", "unpruned") and columns["path_networks"] <= 1
        assert bench.n_params(alone) in (bench.n_params(result.path[0].model), bench.n_params(result.path[-1].model))
        two, _ = bench.recheck(result, 5.0, 0.9, "candidate_first")  # the candidate, else every network
        assert bench.n_params(two) == bench.n_params(alone if columns["outcome"] == "accepted" else same)
        assert result.path[0].row["keep_counts"] == [16, 8]  # the walk starts at the unpruned network
        row = bench.check_columns(info)
        assert row["outcome"] in OUTCOMES and row["sel_samples"] + row["decide_samples"] == len(data.y_val)
        assert info["search_reduction_factor"] == pytest.approx(bench.n_params(model) / bench.n_params(pruned))
        if row["outcome"] != "unpruned":  # what comes back is shown within τ on the selection split
            assert row["sel_lower"] >= -5.0
    # the rule took the agent's place: max_cut's first step cuts the most a step can (keep 0.6)
    assert info["candidate"]["reduction_factor"] > 1.0 or info["path"]["networks"] == 0
    assert torch.equal(next(model.parameters()), next(problem.base_model.parameters()))  # base untouched


def _rows(within_neon: list[bool], outcomes: list[str]) -> pd.DataFrame:
    rows = []
    for i, (ok, outcome) in enumerate(zip(within_neon, outcomes)):
        rows.append({"fold": "A", "network": f"n{i}", "method": "neon_x4", "tolerance": 1.0, "select": np.nan,
                     "reduction": 30.0 if outcome != "unpruned" else 1.0, "delta_test": -0.2 if ok else -3.0,
                     "outcome": outcome, "candidate_reduction": 40.0, "sel_change": 0.0, "sel_lower": -0.9})
        rows.append({"fold": "A", "network": f"n{i}", "method": "magnitude_at_tol", "tolerance": 1.0, "select": np.nan,
                     "reduction": 10.0, "delta_test": -1.0})  # exactly −τ: within
    return pd.DataFrame(rows)


def test_summaries_report_within_tau_on_test_and_the_check(bench):
    rows = _rows([True, True, True, False], ["accepted", "fallback", "unpruned", "accepted"])
    table = bench.summarise(rows)
    neon = next(line for line in table.splitlines() if "| neon_x4 |" in line)
    assert "| 75% | 25% | 25% |" in neon  # within τ on test, unpruned, fallback
    magnitude = next(line for line in table.splitlines() if "| magnitude_at_tol |" in line)
    assert "| 100% | – | – |" in magnitude
    old = rows.drop(columns=["outcome", "candidate_reduction", "sel_change", "sel_lower"])  # a pre-#15 rows.csv
    seeds = bench.summarise_seeds([rows, _rows([True] * 4, ["accepted"] * 4), old])
    line = next(line for line in seeds.splitlines() if "| neon_x4 |" in line)
    assert "(75%, 100%, 75%)" in line and "met in 1 of 3" in line


def test_held_out_networks_on_scaled_data_train_apart_from_the_suite_ones(bench, tmp_path):
    from rayprune.config import load_config, parse_config

    base = load_config(ROOT / "configs" / "neon_pretrain.yaml").model_dump(mode="json")
    cfg = parse_config(base, overrides={"neon": {"pretrain": {"networks": {
        "widths": [8], "max_layers": 1, "cache_dir": str(tmp_path), "train": {"max_epochs": 1, "patience": 1}}}}})
    plain, split = bench.held_out_networks(cfg, "A", 1, lambda m: None, {"moons"})
    scaled, big = bench.held_out_networks(cfg, "A", 1, lambda m: None, {"moons"},
                                          {"scale": 4, "max_samples": None, "val_fraction": 0.3})
    assert [r.spec for r in plain] == [r.spec for r in scaled]  # the same network specs ...
    assert plain[0].key != scaled[0].key  # ... trained on other data, cached apart
    assert (split.scale, big.scale, big.val_fraction) == (1, 4, 0.3)
    assert len(big.load("moons").y_val) == 1200 and len(split.load("moons").y_val) == 150


def test_a_method_name_that_matches_nothing_is_refused_before_any_work(bench, tmp_path):
    # with --rollouts 2 the multi-rollout methods are neon_x2/random_x2: neon_x4 would silently run nothing
    with pytest.raises(SystemExit, match=r"--methods: unknown \['neon_x4'\].*neon_x2"):
        bench.main(["--folds", "A", "--rollouts", "2", "--methods", "neon,neon_x4", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out" / "rows.csv").exists()


def test_summarise_seeds_counts_two_files_joined_by_a_plus_as_one_run(bench, tmp_path, capsys):
    a, b = _rows([True, True], ["accepted"] * 2), _rows([False, False], ["accepted"] * 2)
    b["network"] = b["network"] + "-fixed"  # another dataset subset of the same agent seed
    paths = []
    for name, frame in (("syn.csv", a), ("fixed.csv", b), ("other.csv", _rows([True] * 4, ["accepted"] * 4))):
        frame.to_csv(tmp_path / name, index=False)
        paths.append(str(tmp_path / name))
    assert bench.main(["--summarise-seeds", f"{paths[0]}+{paths[1]}", paths[2]]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "| neon_x4 |" in line)
    assert "| 2 | 4 |" in line and "(50%, 100%)" in line  # two runs of four networks each


def test_joined_files_must_hold_different_networks_and_a_resume_keeps_its_confidence(bench, tmp_path):
    rows = _rows([True, True], ["accepted"] * 2)
    for name in ("a.csv", "b.csv"):
        rows.to_csv(tmp_path / name, index=False)
    with pytest.raises(SystemExit, match="share 2 network"):
        bench.main(["--summarise-seeds", f"{tmp_path / 'a.csv'}+{tmp_path / 'b.csv'}"])
    out = tmp_path / "out"  # rows checked at 0.8 (the default before session 20) cannot be resumed at 0.5
    out.mkdir()
    rows.assign(protocol=bench.PROTOCOL, confidence=0.8).to_csv(out / "rows.csv", index=False)
    with pytest.raises(SystemExit, match=r"checked at neon.confidence \[0.8\].*--confidence is 0.5"):
        bench.main(["--folds", "A", "--agent-checkpoint", str(ROOT / "rayprune" / "assets" / "neon"),
                    "--confidence", "0.5", "--out", str(out)])
    rows.assign(protocol=bench.PROTOCOL, confidence=0.8, walk="every").to_csv(out / "rows.csv", index=False)
    with pytest.raises(SystemExit, match=r"checked at neon.walk \['every'\].*--walk is candidate_first"):
        bench.main(["--folds", "A", "--agent-checkpoint", str(ROOT / "rayprune" / "assets" / "neon"),
                    "--confidence", "0.8", "--out", str(out)])
    with pytest.raises(SystemExit, match=r"unknown \['neon_x1'\]"):  # one rollout: no multi-rollout methods run
        bench.main(["--folds", "A", "--rollouts", "1", "--methods", "neon_x1", "--out", str(tmp_path / "o2")])


def test_candidate_first_rows_derived_from_the_candidate_and_walk_every_rows(bench):
    every = _rows([True, True], ["fallback", "fallback"])
    alone = every[every["method"] == "neon_x4"].assign(method="neon_x4 w=candidate")
    alone["outcome"] = ["accepted", "unpruned"]
    alone["reduction"] = [50.0, 1.0]
    derived = bench.with_candidate_first(pd.concat([every, alone], ignore_index=True))
    two = derived[derived["method"] == "neon_x4 w=candidate_first"].set_index("network")
    # n0: the candidate alone was shown, so it comes back; n1: it was not, so the walk of every network decides
    assert two.loc["n0", "reduction"] == 50.0 and two.loc["n0", "outcome"] == "accepted"
    assert two.loc["n1", "reduction"] == 30.0 and two.loc["n1", "outcome"] == "fallback"
    assert len(bench.with_candidate_first(derived)) == len(derived)  # never derived twice
