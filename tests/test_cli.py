"""Smoke tests of every CLI command, run as a user would (subprocess), on a tiny config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

TINY = """
name: tiny
seed: 0
model: {name: small_cnn, kwargs: {width_mult: 0.5}}
data: {name: digits, device: cpu}
base_training: {epochs: 4, lr: 0.05, batch_size: 64}
pruning: {importance: l2, min_keep: 0.2}
costs:
  measure: [params, macs, latency_ms]
  latency: {repeats: 3, warmup: 1}
budgets: {params: 0.5}
search:
  finetune: {iterations: 5, batch_size: 64}
  final_finetune: {iterations: 20, batch_size: 64}
  eval_samples: 200
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {**os.environ, "RAYPRUNE_CACHE": str(cache), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY)
    return path


def rayprune(*args, env, cwd=None):
    return subprocess.run([sys.executable, "-m", "rayprune.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=cwd)


@pytest.mark.slow
def test_train_base_trains_once_then_uses_the_cache(tiny_config, env):
    first = rayprune("train-base", tiny_config, "-q", env=env)
    assert first.returncode == 0, first.stderr
    info = json.loads(first.stdout)
    assert info["source"] == "trained" and info["val_accuracy"] > 0.5
    second = rayprune("train-base", tiny_config, "-q", env=env)
    assert json.loads(second.stdout)["source"] == "cache"


def test_base_training_progress_into_a_log_file_is_a_line_per_tenth_not_a_redrawn_bar(tiny_config, env, tmp_path):
    """stderr redirected to a file (CI, a job's log) got tqdm's bar redrawn with carriage returns a few times a
    second: one line of thousands of characters (a new user's pass, s32)."""
    res = rayprune("train-base", tiny_config, "--out", tmp_path / "base.pt", env={**env, "RAYPRUNE_CACHE": str(tmp_path)})
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("train base model: ")]
    assert "\r" not in res.stderr and 1 <= len(lines) <= 10, res.stderr
    assert lines[-1].split(": ")[1].startswith(lines[-1].split(": ")[1].split("/")[1].split(" ")[0] + "/")  # n/n


def test_validate_prints_base_costs_and_smallest_reachable(tiny_config, env):
    res = rayprune("validate", tiny_config, "-q", "--groups", env=env)
    assert res.returncode == 0, res.stderr
    assert "smallest reachable" in res.stdout and "params" in res.stdout and "features.0" in res.stdout


def test_validate_prints_the_changed_settings_and_every_value_on_request(tiny_config, env):
    """validate printed the whole resolved config (about 250 lines) above its tables: a user's few settings were
    lost in it. It prints the settings that differ from the defaults (with the model's and data's names), and
    every value with --full."""
    import yaml

    from rayprune.config import load_config

    short = rayprune("validate", tiny_config, "-q", env=env)
    full = rayprune("validate", tiny_config, "-q", "--full", env=env)
    assert short.returncode == 0 and full.returncode == 0, short.stderr + full.stderr
    head = yaml.safe_load(short.stdout.split("\n# base model")[0])
    cfg = load_config(tiny_config)
    assert head["model"]["name"] == cfg.model.name and head["data"]["name"] == cfg.data.name
    assert head["budgets"] == cfg.model_dump(mode="json")["budgets"]
    assert "adaptive_bn" not in head.get("search", {})  # a default, not printed
    every = yaml.safe_load(full.stdout.split("\n# base model")[0])
    assert every == cfg.model_dump(mode="json")  # --full: every resolved value, as YAML a config can take
    assert len(short.stdout.splitlines()) < len(full.stdout.splitlines()) / 2


def test_validate_never_trains_the_base_model(tiny_config, env, tmp_path):
    fresh = {**env, "RAYPRUNE_CACHE": str(tmp_path / "empty-cache")}
    res = rayprune("validate", tiny_config, "-q", env=fresh)
    assert res.returncode == 0, res.stderr
    assert "not trained yet" in res.stdout and "Training base model" not in res.stderr
    assert not list((tmp_path / "empty-cache").rglob("*.pt"))  # nothing trained, nothing cached
    res = rayprune("validate", tiny_config, "-q", "--budget", "params=0.001", env=fresh)
    assert res.returncode == 3 and "Budget cannot be met" in res.stderr  # the answer still comes, untrained


def test_an_onnx_opset_the_base_cannot_be_written_in_is_refused_before_the_search(tiny_config, env, tmp_path):
    """`export.onnx_opset: 99` ran the whole search, exported no model.onnx and exited 0 (a new user's pass, s32)."""
    pytest.importorskip("onnx")
    fresh = {**env, "RAYPRUNE_CACHE": str(tmp_path / "cache")}
    for opset in (99, 13):
        cfg = tmp_path / f"opset{opset}.yaml"
        cfg.write_text(TINY + f"export: {{onnx_opset: {opset}}}\n")
        res = rayprune("validate", cfg, "-q", env=fresh)
        if opset == 99:
            assert res.returncode == 2 and "export.onnx_opset is 99" in res.stderr, res.stderr
            assert "Traceback" not in res.stderr and "up to" in res.stderr
            res = rayprune("prune", cfg, "-q", "--agent", "random", "--evaluations", "2", "--out", tmp_path / "p",
                           env=fresh)
            assert res.returncode == 2 and "export.onnx_opset is 99" in res.stderr, res.stderr
            assert not (tmp_path / "p" / "candidates.parquet").exists()  # refused before any candidate
        else:
            assert res.returncode == 0, res.stderr


def test_the_neon_agent_on_a_cnn_is_refused_by_validate_and_prune_before_the_base_trains(tiny_config, env, tmp_path,
                                                                                           monkeypatch):
    """It was a ValueError traceback (exit 1) from inside the prune, after `validate` had said nothing, and it sent
    the user to crl."""
    cfg = tmp_path / "neon.yaml"
    cfg.write_text(TINY + "  agent: neon\n")
    fresh = {**env, "RAYPRUNE_CACHE": str(tmp_path / "empty-cache")}
    for res in (rayprune("validate", cfg, "-q", env=fresh),
                rayprune("prune", tiny_config, "--agent", "neon", "--out", tmp_path / "out", "-q", env=fresh)):
        assert res.returncode == 2, res.stderr
        assert "Traceback" not in res.stderr
        assert "neon agent prunes dense networks only" in res.stderr and "features.0 (Conv2d)" in res.stderr
        assert "--agent random --budget params=0.25" in res.stderr
    assert not list((tmp_path / "empty-cache").rglob("*.pt"))  # refused before any base model was trained
    from rayprune.config import load_config  # the config says neon, the command line another agent: that one runs
    from rayprune.search import prune

    built = []
    monkeypatch.setattr(prune, "_prune", lambda cfg, *a, **kw: built.append(cfg.search.agent) or {})
    with pytest.raises(FileNotFoundError):  # (the stand-in exports nothing, so the summary has nowhere to go)
        prune.run_prune(load_config(cfg), tmp_path / "other", agent="random", progress=False, log=lambda m: None)
    assert built == ["random"]  # it was built as neon's, and refused


def test_validate_a_csv_regression_checkpoint_names_its_metric_and_warns_about_carved_rows(tmp_path, env):
    """A tabular user's checkpoint: validate showed minus the MSE as "val accuracy -5.00%", and said nothing
    about val/test rows split off the very file the model was trained on."""
    import numpy as np
    import pandas as pd
    import torch

    from rayprune.models import load_model

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({f"f{i}": rng.normal(size=200) for i in range(4)}).assign(price=rng.normal(size=200))
    frame.to_csv(tmp_path / "h.csv", index=False)
    torch.save(load_model("mlp", num_classes=1, in_features=4).state_dict(), tmp_path / "mlp.pt")
    config = tmp_path / "reg.yaml"
    config.write_text("model: {name: mlp, checkpoint: mlp.pt}\n"
                      "data: {name: tabular, path: h.csv, label: price, task: regression}\nbudgets: {params: 0.5}\n")
    res = rayprune("validate", config, "-q", env=env)
    assert res.returncode == 0, res.stderr
    assert "val neg_mse -" in res.stdout and "%" not in res.stdout.split("# base model")[1].splitlines()[0]
    assert "split the val and test rows off" in res.stderr and "data.split_column" in res.stderr
    [line] = [ln for ln in res.stdout.splitlines() if ln.startswith("# data:")]
    assert line.endswith("; features: f0, f1, f2, f3; outputs: 1 target: price"), line  # the order to check a model by
    merged = subprocess.run([sys.executable, "-m", "rayprune.cli", "validate", str(config), "-q"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600).stdout
    assert merged.index("smallest reachable") < merged.index("split the val and test rows off")  # said last, not
    # above a page of resolved config
    frame.assign(part=["train"] * 150 + ["val"] * 20 + ["test"] * 30).to_csv(tmp_path / "h.csv", index=False)
    config.write_text(config.read_text().replace("task: regression", "task: regression, split_column: part"))
    res = rayprune("validate", config, "-q", env=env)
    assert res.returncode == 0 and "split the val" not in res.stderr, res.stderr
    # a text column the model never saw: the checkpoint's size error says where the extra inputs come from
    frame.assign(town=["north", "south", "east", "west"] * 50, part=["train"] * 150 + ["val"] * 20 + ["test"] * 30
                 ).to_csv(tmp_path / "h.csv", index=False)
    res = rayprune("validate", config, "-q", env=env)
    assert res.returncode == 2 and "the data gives 8 features per row" in res.stderr and "town_east" in res.stderr
    assert "one-hot encoded" in res.stderr, res.stderr


def test_validate_checks_every_sweep_level(tmp_path, env):
    config = tmp_path / "sweep.yaml"
    config.write_text(TINY + "sweep: {budgets: {params: [0.5, 0.001]}}\n")
    res = rayprune("validate", config, "-q", env=env)
    assert res.returncode == 3, res.stderr
    assert "params=0.5" in res.stdout and "params=0.001" in res.stdout  # the table of levels
    assert "params=0.001: params <=" in res.stderr and "params=0.5:" not in res.stderr  # only the bad one
    # the levels about to be passed to `sweep --budgets`, checked before the sweep (validate had no --budgets)
    res = rayprune("validate", config, "-q", "--budgets", "params=0.4,0.3", env=env)
    assert res.returncode == 0, res.stderr
    assert "params=0.4" in res.stdout and "params=0.3" in res.stdout and "params=0.001" not in res.stdout


def test_validate_catches_an_impossible_budget(tiny_config, env, tmp_path):
    res = rayprune("validate", tiny_config, "-q", "--budget", "params=0.001", env=env)
    assert res.returncode == 3
    assert "Budget cannot be met" in res.stderr and "min_keep" in res.stderr
    # prune says it the same way: 3, not the 2 of bad input (a pipeline told the two apart only by the text)
    res = rayprune("prune", tiny_config, "-q", "--budget", "params=0.001", "--out", tmp_path / "p", env=env)
    assert res.returncode == 3 and "Budget cannot be met" in res.stderr and not (tmp_path / "p").exists()


def test_one_cost_budgeted_twice_is_refused_naming_both_values(tiny_config, tmp_path, capsys):
    from rayprune import cli

    out = tmp_path / "o"
    assert cli.main(["prune", str(tiny_config), "--budget", "params=0.3", "--budget", "macs=0.5",
                     "--budget", "params=20%", "--out", str(out)]) == 2
    assert "--budget params is given twice (params=0.3 and params=20%)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["uniform", "global"])
def test_prune_uniform_writes_rows_and_a_loadable_model_within_budget(tiny_config, env, tmp_path, agent):
    out = tmp_path / "run"  # given relative, from its folder, as a pipeline's step does
    res = rayprune("prune", tiny_config, "--agent", agent, "--budget", "params=0.4", "--out", "run", "-q", env=env,
                   cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "accuracy_test" in res.stdout and "pruned/base" in res.stdout
    rows = pd.read_parquet(out / "candidates.parquet")
    assert sorted(rows["stage"]) == ["final", "rerank", "search"]  # one candidate, re-ranked, fine-tuned
    assert rows["export_path"].dropna().tolist() == [str(out / "best")]  # absolute: it was relative to the cwd
    assert set(rows["agent"]) == {agent}
    summary = json.loads((out / "best" / "summary.json").read_text())
    assert summary["feasible"] and summary["pruned"]["params"] <= 0.4 * summary["base"]["params"]
    for key in ("params", "macs", "latency_ms", "accuracy_test"):
        assert key in summary["base"] and key in summary["pruned"]
    # the final row points at the exported model, and its latency is the one the summary reports (the budget's)
    final = rows[rows["stage"] == "final"].iloc[0]
    assert Path(final["export_path"]) == out / "best" and (out / "best" / "weights.pt").is_file()
    assert not (out / "models").exists()
    assert summary["pruned"]["latency_ms"] == pytest.approx(final["latency_ms"])
    signal = summary["search_signal"]  # the one candidate's search score against chance and the base
    assert signal["candidates"] == 1 and signal["best"] == signal["median"] and 0 < signal["chance"] < 1
    assert signal["base"] == pytest.approx(summary["base"]["accuracy_val"])
    # re-measured in a fresh process, the exported model meets the budget
    check = subprocess.run(
        [sys.executable, "-c",
         "import sys, rayprune; m = rayprune.load_pruned(sys.argv[1]); print(sum(p.numel() for p in m.parameters()))",
         str(out / "best")], capture_output=True, text=True, env=env, timeout=300)
    assert check.returncode == 0, check.stderr
    assert int(check.stdout.strip()) == summary["pruned"]["params"] <= summary["budgets"]["params"]["limit"]


@pytest.mark.slow
def test_prune_random_evaluates_the_requested_number_of_candidates(tiny_config, env, tmp_path):
    out = tmp_path / "rand"
    res = rayprune("prune", tiny_config, "--agent", "random", "--evaluations", "3", "--out", out, "-q", env=env)
    assert res.returncode == 0, res.stderr
    # no error-level line from Ray about the evaluators' restarts (ray-project/ray#53727): nothing went wrong
    assert "constructor arguments in the object store" not in res.stderr
    # nor Ray's start-up lines for a private instance (the token notice; "View the dashboard" in colour codes)
    assert "Token authentication is enabled" not in res.stderr and "Started a local Ray instance." not in res.stderr
    rows = pd.read_parquet(out / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 3 and search["feasible"].all()
    assert (search["params"] <= search["limit_params"]).all()
    # random directions scaled to the boundary: each candidate uses most of the budget
    assert (search["params"] >= 0.6 * search["limit_params"]).all()
    # the exported spec.json carries the latency re-timed alone after the finals, as summary.json does (it kept the
    # timing taken beside the other finals until session 32)
    summary = json.loads((out / "best" / "summary.json").read_text())
    spec = json.loads((out / "best" / "spec.json").read_text())["summary"]
    assert spec["latency_ms"] == summary["pruned"]["latency_ms"] and "latency_ms_during_finals" in spec
    again = rayprune("prune", tiny_config, "--agent", "random", "--out", out, "-q", env=env)  # never mix two runs
    assert again.returncode == 2 and "not empty" in again.stderr
    assert len(pd.read_parquet(out / "candidates.parquet")) == len(rows)


def test_candidates_a_cost_function_failed_on_are_counted_in_the_summary_with_the_message(tiny_config, env, tmp_path):
    """A user cost that raises on some models (2,950-3,030 parameters, where about half of the random candidates
    under the 50 % budget of a 6,274-parameter base land): the run still exports a model, and the summary says
    how many candidates failed and why (before: only 'N errors' in the batch lines)."""
    config = tmp_path / "flaky.yaml"
    config.write_text(TINY.replace("  measure: [params, macs, latency_ms]\n",
                                   "  measure: [params, macs]\n  custom: {flaky: crl_user_costs:fails_between}\n"
                                   "  options: {fail_between: [2950, 3030]}\n"))
    out = tmp_path / "o"
    res = rayprune("prune", config, "--agent", "random", "--evaluations", "24", "--out", out,
                   env={**env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])})
    assert res.returncode == 0, res.stderr[-3000:]
    rows = pd.read_parquet(out / "candidates.parquet")
    bad = rows[(rows["stage"] == "search") & (rows["status"] == "error")]
    assert 0 < len(bad) < 24
    failed = json.loads((out / "best" / "summary.json").read_text())["failed"]
    assert failed["count"] == len(bad) and failed["of"] == 24 and "exporter cannot handle" in failed["message"]
    line = next(x for x in res.stdout.splitlines() if "candidates failed" in x)
    assert line.startswith(f"{len(bad)} of 24 candidates failed and were not scored") and "exporter cannot handle" in line
    config.write_text(config.read_text().replace("[2950, 3030]", "[2900, 3200]"))  # every candidate fails
    res = rayprune("prune", config, "--agent", "random", "--evaluations", "8", "--out", tmp_path / "all",
                   env={**env, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])})
    assert res.returncode == 4, res.stderr[-3000:]  # the reason is the cost function, not only "nothing fits"
    assert "No model for params=0.5: 8 of the 8 candidates failed and were not scored" in res.stderr
    assert "exporter cannot handle" in res.stderr and "fits this level" not in res.stderr


@pytest.mark.slow
def test_a_final_fine_tune_that_diverges_is_one_line_naming_the_cause_and_keeps_the_candidates(tmp_path, env):
    config = tmp_path / "diverge.yaml"
    config.write_text(TINY.replace("final_finetune: {iterations: 20, batch_size: 64}",
                                   "final_finetune: {iterations: 20, batch_size: 64, lr: 1.0e+8}")
                      + "  rerank: {top_k: 2}\n")
    out = tmp_path / "out"
    res = rayprune("prune", config, "--agent", "random", "--evaluations", "4", "--out", out, "-q", env=env)
    assert res.returncode == 4, res.stderr  # no model (as a sweep's level without one), not a refused input (2)
    lines = [line for line in res.stderr.splitlines() if line.startswith("rayprune prune: error")]
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert "search.final_finetune, failed for all 2 candidate(s)" in lines[0] and "lower 'lr'" in lines[0]
    rows = pd.read_parquet(out / "candidates.parquet")  # nothing computed is lost
    assert (rows["stage"] == "search").sum() == 4
    final = rows[rows["stage"] == "final"]
    assert len(final) == 2 and (final["status"] == "error").all()


def test_bad_config_exits_2_naming_the_key(tmp_path, env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: small_cnn}\nsearch: {agnt: random}\n")
    res = rayprune("validate", bad, env=env)
    assert res.returncode == 2 and "search.agnt: unknown key" in res.stderr


def test_unknown_model_exits_2_listing_models(tmp_path, env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {name: resnet99}\ndata: {name: digits}\nbudgets: {params: 0.5}\n")
    res = rayprune("validate", bad, "-q", env=env)
    assert res.returncode == 2 and "resnet99" in res.stderr and "vgg16" in res.stderr


def test_bad_budget_flag_exits_2(tiny_config, env):
    res = rayprune("validate", tiny_config, "--budget", "params=1.5", env=env)
    assert res.returncode == 2 and "(0, 1]" in res.stderr


def test_config_mistakes_found_after_parsing_name_their_field_without_a_traceback(tmp_path, env):
    """A new user's typos (session 22's pass): each exits 2 with one line naming the config field."""
    cases = {
        "device": (TINY.replace("device: cpu", "device: gpu"), "data.device"),
        "ignored": (TINY.replace("pruning: {importance: l2, min_keep: 0.2}",
                                 "pruning: {importance: l2, min_keep: 0.2, ignored_layers: [stem.9]}"),
                    "pruning.ignored_layers"),
        "kwargs": (TINY.replace("kwargs: {width_mult: 0.5}", "kwargs: {width_mult: 0.5, num_classes: 10}"),
                   "model.kwargs must not repeat 'num_classes'"),
        "dataset": (TINY.replace("name: digits", "name: digitz"), "data.name must be one of"),
    }
    for name, (text, expected) in cases.items():
        config = tmp_path / f"{name}.yaml"
        config.write_text(text)
        res = rayprune("validate", config, "-q", env=env)
        assert res.returncode == 2 and expected in res.stderr and "Traceback" not in res.stderr, (name, res.stderr[-2000:])


@pytest.mark.slow
def test_a_prune_whose_evaluators_cannot_fit_is_refused_with_the_numbers(tiny_config, env, tmp_path):
    config = tmp_path / "cpus.yaml"
    config.write_text(tiny_config.read_text() + "evaluation: {evaluators: 2, cpus: 64}\n")
    res = rayprune("prune", config, "--agent", "random", "--evaluations", "4", "--out", tmp_path / "out", "-q",
                   env=env)
    assert res.returncode == 2, res.stderr[-2000:]
    assert "need CPU: 128, the cluster has" in res.stderr and "evaluation.cpus" in res.stderr


def test_submit_refuses_a_relative_out_before_anything_reaches_the_cluster(tiny_config, env, tmp_path):
    """The job runs in Ray's temporary copy of the working directory: a relative --out would be deleted with it."""
    res = subprocess.run([sys.executable, "-m", "rayprune.cli", "submit", str(tiny_config), "--address",
                          "http://127.0.0.1:9", "--working-dir", str(tiny_config.parent), "--out", "runs/job"],
                         capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert res.returncode == 2 and "--out 'runs/job' is relative" in res.stderr, res.stderr[-2000:]
    assert f"--out {tmp_path / 'runs' / 'job'}" in res.stderr and "Traceback" not in res.stderr


def test_submits_jobs_page_budgets_are_the_levels_the_jobs_sweep_will_run(tiny_config, tmp_path, monkeypatch):
    """--budgets merges into the config's sweep.budgets (as `rayprune sweep` applies it) and keeps its marks."""
    from rayprune import cli, submit

    config = tmp_path / "with-levels.yaml"
    config.write_text(tiny_config.read_text() + "sweep:\n  budgets: {params: [0.5, 0.3]}\n")
    seen = {}
    monkeypatch.setattr(submit, "submit_sweep", lambda *a, **kw: seen.update(kw) or ("job-1", None))
    assert cli.main(["submit", str(config), "--address", "http://127.0.0.1:9", "--working-dir", str(tmp_path),
                     "--out", str(tmp_path / "o"), "--budgets", "latency_ms=90%,80%", "--no-follow"]) == 0
    assert seen["metadata"]["budgets"] == "params=0.5,0.3;latency_ms=90%,80%"
    assert seen["budgets"] == ["latency_ms=90%,80%"]  # the job's own command line gets them as typed


def test_a_sweep_to_an_address_nothing_answers_on_is_one_line_at_once(tiny_config, env, tmp_path):
    """A mistyped GCS port: Ray's join retried for minutes with no rayprune line at all."""
    import time

    started = time.time()
    res = rayprune("sweep", tiny_config, "--address", "127.0.0.1:9", "--out", tmp_path / "never", "-q", env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert "Could not connect to the Ray cluster at 127.0.0.1:9: nothing accepts a connection there" in res.stderr
    assert time.time() - started < 120 and not (tmp_path / "never").exists()


def test_validate_on_a_neon_config_says_whether_its_check_can_resolve_tau(env, tmp_path):
    """It described the budgeted agents' space alone; what decides a neon run is the check split's resolution."""
    root = Path(__file__).resolve().parents[1]
    res = rayprune("validate", root / "configs" / "neon_prune.yaml", "-q", env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("# neon: "))
    assert "tolerance 1 points, shown at 70 % confidence on" in line and "cannot be shown" not in line
    strict = tmp_path / "strict.yaml"
    strict.write_text((root / "configs" / "neon_prune.yaml").read_text().replace("tolerance: 1.0 ", "tolerance: 0.05 "))
    res = rayprune("validate", strict, "-q", env=env)
    line = next(x for x in res.stdout.splitlines() if x.startswith("# neon: "))
    assert "tau = 0.05 cannot be shown on so few samples" in line, res.stdout[-2000:]
    assert "(the tolerance is in accuracy points: 0.05 accepts a loss of 0.05 %; for a loss of 5 %, give 5)" in line


def test_a_bad_sweep_flag_is_blamed_on_the_flag_not_the_file(tiny_config, tmp_path, capsys):
    from rayprune import cli

    assert cli.main(["sweep", str(tiny_config), "--agents", "randm", "--out", str(tmp_path / "never")]) == 2
    err = capsys.readouterr().err
    assert f"{tiny_config} with the command line's --agents: 1 problem(s)" in err and "'randm'" in err
    assert not (tmp_path / "never").exists()


def test_a_device_this_machine_lacks_is_one_line(tiny_config, env):
    """`--device cuda` on a machine without CUDA was a traceback with exit 1, for every command."""
    import torch

    device = "cuda:64" if torch.cuda.is_available() else "cuda"
    res = rayprune("validate", tiny_config, "--device", device, "-q", env=env)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-2000:]
    assert f"data.device (--device) is '{device}' but" in res.stderr
    res = rayprune("validate", tiny_config, "--device", "gpu", "-q", env=env)
    assert res.returncode == 2 and "data.device: expected a torch device" in res.stderr, res.stderr[-2000:]


def test_submit_resume_sends_the_stored_sweep_and_refuses_a_config(tiny_config, tmp_path, monkeypatch, capsys):
    from rayprune import cli, submit

    seen = {}
    monkeypatch.setattr(submit, "submit_sweep", lambda *a, **kw: seen.update(args=a, **kw) or ("job-2", None))
    assert cli.main(["submit", "--resume", "--address", "http://127.0.0.1:9", "--out", str(tmp_path / "o"),
                     "--no-follow"]) == 0
    assert seen["args"] == ("http://127.0.0.1:9", None, str(tmp_path / "o")) and seen["metadata"]["resume"] == "true"
    assert submit.sweep_entrypoint(None, "/shared/o") == "rayprune sweep --resume --out /shared/o -q"
    capsys.readouterr()
    assert cli.main(["submit", str(tiny_config), "--resume", "--agents", "random", "--address", "http://127.0.0.1:9",
                     "--out", str(tmp_path / "o")]) == 2
    assert "takes no config or sweep options (given: a config, --agents)" in capsys.readouterr().err
    assert cli.main(["submit", "--address", "http://127.0.0.1:9", "--out", str(tmp_path / "o")]) == 2
    assert "submit needs a YAML config" in capsys.readouterr().err


def test_an_interrupted_submitted_sweep_says_to_submit_it_again(monkeypatch):
    from rayprune.submit import SUBMITTED_FROM
    from rayprune.sweeps.driver import resume_how

    monkeypatch.setenv(SUBMITTED_FROM, "http://head:8265")
    assert resume_how(Path("/shared/s"), False).startswith(
        "rayprune submit --resume --out /shared/s --address http://head:8265")
    assert resume_how(Path("/shared/s"), True).startswith("rayprune.sweep(")  # started from Python: Python
    monkeypatch.delenv(SUBMITTED_FROM)
    assert resume_how(Path("/shared/s"), False).startswith("rayprune sweep --resume --out /shared/s")


def test_submit_to_an_address_nothing_answers_on_is_one_line(tiny_config, env, tmp_path):
    """A mistyped --address was a 91-line traceback with exit 1."""
    res = subprocess.run([sys.executable, "-m", "rayprune.cli", "submit", str(tiny_config), "--address",
                          "http://127.0.0.1:9", "--working-dir", str(tiny_config.parent), "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert "--address http://127.0.0.1:9: no Ray job server answers there" in res.stderr


def test_prune_says_which_flag_its_agent_ignores(tiny_config, tmp_path, monkeypatch, capsys):
    from rayprune import cli
    from rayprune.search import prune

    summary = {"feasible": True, "agent": "x"}
    monkeypatch.setattr(prune, "run_prune", lambda *a, **kw: summary)
    assert cli.main(["prune", str(tiny_config), "--agent", "neon", "--evaluations", "32", "--out", str(tmp_path / "a")]) == 0
    assert "--evaluations (neon's work is its rollouts" in capsys.readouterr().err
    assert cli.main(["prune", str(tiny_config), "--agent", "random", "--tolerance", "2", "--out", str(tmp_path / "b")]) == 0
    assert "--tolerance (it is neon's tau; agent 'random' meets budgets) does not apply" in capsys.readouterr().err
    assert cli.main(["prune", str(tiny_config), "--agent", "random", "--out", str(tmp_path / "c")]) == 0
    assert "does not apply" not in capsys.readouterr().err
    assert cli.main(["prune", str(tiny_config), "--agent", "neon", "--tolerance", "1e9", "--out", str(tmp_path / "d")]) == 2


@pytest.mark.slow
def test_a_prune_refused_before_it_wrote_anything_gives_its_out_back(env, tmp_path):
    out = tmp_path / "never"
    mlp = tmp_path / "mlp.yaml"  # (neon prunes MLPs: the tiny CNN config is refused before the checkpoint is read)
    mlp.write_text("model: {name: mlp, kwargs: {hidden_sizes: [16]}}\ndata: {name: 'sklearn:iris', device: cpu}\n"
                   "base_training: {optimizer: adam, lr: 0.01, epochs: 100, batch_size: 16}\n")
    res = rayprune("prune", mlp, "--agent", "neon", "--agent-checkpoint", tmp_path / "typo", "--out", out, env=env)
    assert res.returncode == 2 and "does not exist" in res.stderr, res.stderr[-2000:]
    assert not out.exists()  # not an empty directory left behind


def test_a_failed_run_gives_back_every_folder_it_created_and_nothing_else(tmp_path):
    from rayprune.search.prune import check_out_dir, given_back_if_empty

    kept = tmp_path / "runs"
    kept.mkdir()
    out = kept / "new" / "deeper" / "out"  # three folders created by the run, under one that existed
    with pytest.raises(ValueError), given_back_if_empty(out):
        check_out_dir(out)
        raise ValueError("refused model")
    assert kept.is_dir() and not (kept / "new").exists()
    with pytest.raises(ValueError), given_back_if_empty(out):  # a file written: nothing is removed
        check_out_dir(out)
        (out / "rows.parquet").write_text("x")
        raise ValueError("failed later")
    assert (out / "rows.parquet").is_file()
    (kept / "new" / "other").mkdir()
    out2 = kept / "new" / "second"
    with pytest.raises(ValueError), given_back_if_empty(out2):  # "new" existed before this run: kept
        check_out_dir(out2)
        raise ValueError("refused")
    assert not out2.exists() and (kept / "new" / "other").is_dir()
    out3 = kept / "made" / ".." / "x"  # 'made' is created on the way to x, named only through '..'
    with pytest.raises(ValueError), given_back_if_empty(out3):
        check_out_dir(out3)
        assert (kept / "made").is_dir() and (kept / "x").is_dir()
        raise ValueError("refused")
    assert not (kept / "made").exists() and not (kept / "x").exists()


def test_a_failing_cost_function_shows_its_own_frames_and_one_error_line(tiny_config, env, tmp_path):
    """Not rayprune's internals: the user's function's traceback, then what failed, exit code 2."""
    (tmp_path / "my_costs.py").write_text("def energy(model, context):\n    table = {}\n    return table['conv1']\n")
    config = tmp_path / "cost.yaml"
    config.write_text(tiny_config.read_text().replace("  measure: [params, macs, latency_ms]\n",
                                                      "  measure: [params, macs]\n  custom: {energy: my_costs:energy}\n"))
    res = subprocess.run([sys.executable, "-m", "rayprune.cli", "validate", str(config)], capture_output=True,
                         text=True, env={**env, "PYTHONPATH": f"{tmp_path}:{env.get('PYTHONPATH', '')}"}, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("rayprune validate: error: Cost 'energy' (my_costs:energy) raised KeyError")
    assert "my_costs.py\", line 3, in energy" in res.stderr and "rayprune/problem.py" not in res.stderr


def test_sweep_without_a_config_or_resume_and_resume_with_new_options_are_one_line_errors(tiny_config, env, tmp_path):
    res = rayprune("sweep", "--out", tmp_path / "x", env=env)
    assert res.returncode == 2 and "needs a YAML config" in res.stderr and "Traceback" not in res.stderr
    res = rayprune("sweep", tiny_config, "--resume", "--evaluations", "9", "--out", tmp_path / "x", env=env)
    assert res.returncode == 2 and "(given: a config, --evaluations)" in res.stderr and "Traceback" not in res.stderr


def test_a_sweep_with_a_level_left_without_a_model_does_not_exit_0():
    from rayprune.cli import _sweep_status

    whole = {"levels": [{"level": "params=0.5", "candidate_id": "a"}, {"level": "params=0.25", "candidate_id": "b"}]}
    partial = {"levels": [{"level": "latency_ms=0.25", "candidate_id": "a"}, {"level": "latency_ms=0.23",
                                                                             "candidate_id": None}]}
    assert _sweep_status(whole) == 0 and _sweep_status(partial) == 4
    assert _sweep_status({**partial, "trial_errors": ["RuntimeError"]}) == 5


def test_sweep_budgets_on_the_command_line_may_be_relative_for_any_cost(tiny_config, tmp_path, monkeypatch):
    """`--budgets latency_ms=90%,80%` (or rel:) sweeps fractions of the base latency, as `--budget` does for prune."""
    from rayprune import cli
    from rayprune.costs.levels import levels_from_config
    from rayprune.sweeps import driver

    seen = {}
    monkeypatch.setattr(driver, "run_sweep", lambda cfg, out, **kw: seen.update(cfg=cfg) or {"levels": []})
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "o"), "--budgets", "latency_ms=90%,rel:0.8"]) == 0
    levels = levels_from_config(seen["cfg"], {"params": 100.0, "macs": 1e4, "latency_ms": 2.0}, sweep=True)
    assert [lvl.limits["latency_ms"] for lvl in levels] == pytest.approx([1.8, 1.6])
    # the marks say how the levels read; the config's own budgets (prune's) are left as written, none added
    assert seen["cfg"].sweep.relative == {"latency_ms": True} and "latency_ms" not in seen["cfg"].budgets
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "p"), "--budgets", "latency_ms=90%,abs:3"]) == 2
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "q"), "--budgets", "latency_ms=rel:0.9,2"]) == 2
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "r"), "--budgets", "params=abs:4e4,2e4"]) == 0
    levels = levels_from_config(seen["cfg"], {"params": 1e5, "macs": 1e4, "latency_ms": 2.0}, sweep=True)
    assert [lvl.limits["params"] for lvl in levels] == [4e4, 2e4]  # both absolute


def test_a_sweeps_trial_seeds_start_at_first_seed_and_leave_the_data_split_alone(tiny_config, tmp_path, monkeypatch):
    """Trials always searched with seeds 0..N-1: seeds 3 and 4 could not be run beside an earlier sweep's 0-2, and
    `--seed 3` moved the data split instead (a checkpoint then scored on its own training samples)."""
    from rayprune import cli
    from rayprune.sweeps import driver

    seen = {}
    monkeypatch.setattr(driver, "run_sweep", lambda cfg, out, **kw: seen.update(cfg=cfg) or {"levels": []})
    assert cli.main(["sweep", str(tiny_config), "--out", str(tmp_path / "o"), "--seeds", "2", "--first-seed", "3"]) == 0
    assert driver.trial_seeds(seen["cfg"]) == [3, 4] and seen["cfg"].seed == 0  # the split's seed untouched
    assert cli.main(["sweep", "--resume", "--out", str(tmp_path / "o"), "--first-seed", "5"]) == 2  # not on resume


def test_validate_says_how_inputs_are_prepared_and_which_layers_each_group_edits(tiny_config, env):
    """A user training their own model on an image folder had to guess the normalisation (it appeared only in
    spec.json after a run), and --groups counted each group's layers without naming them."""
    res = rayprune("validate", tiny_config, "-q", "--groups", env=env)
    assert res.returncode == 0, res.stderr
    [line] = [ln for ln in res.stdout.splitlines() if ln.startswith("# data:")]
    from rayprune.data import load_dataset

    mean = load_dataset("digits", seed=0).mean  # digits is normalised like an image folder: its numbers are shown
    assert " train / " in line and "population std" in line and f"mean [{round(float(mean[0]), 4)}]" in line, line
    assert line.endswith("; outputs: 10 classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9"), line
    assert "layers it edits" in res.stdout and "features.0" in res.stdout


def test_prune_quiet_keeps_the_runs_warnings_on_stderr(capsys):
    """`prune -q` dropped every line of the run's log, its warnings too."""
    from rayprune.cli import _warnings_only

    _warnings_only("warning: latency is timed with ONNX Runtime and pruning.round_to is 1: ...")
    _warnings_only("random batch 1: 16/48 scored")
    _warnings_only("note: parameter(s) used outside a layer ...")
    out, err = capsys.readouterr()
    assert out == "" and err == "warning: latency is timed with ONNX Runtime and pruning.round_to is 1: ...\n"


def test_prune_and_sweep_write_warnings_to_stderr_and_progress_to_stdout(capsys):
    """Without -q the run's warnings went to stdout with its progress: `2> warnings.txt` caught none of them, though
    docs/reliability.md says errors and warnings go to stderr."""
    from rayprune.cli import _console

    _console("warning: 2 group(s) are left whole ...")
    _console("random batch 1: 16/48 scored")
    out, err = capsys.readouterr()
    assert out == "random batch 1: 16/48 scored\n" and err == "warning: 2 group(s) are left whole ...\n"
