"""Your own objective: search.metric and engine.loss, and regression data end to end."""

from pathlib import Path

import numpy as np
import objective_funcs
import pytest
import torch
from torch import nn

from rayprune.config import ConfigError, parse_config
from rayprune.data import dataset_from_splits
from rayprune.engine import FineTuneConfig, fine_tune
from rayprune.engine.objective import DataSplit, MetricError, neg_mse_metric, resolve_objective
from rayprune.errors import UserError

TESTS = Path(__file__).parent


def regression_data(n=600, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    w = rng.normal(size=features).astype(np.float32)
    y = (x @ w + 0.5 * np.sin(3 * x[:, 0]) + 0.05 * rng.normal(size=n)).astype(np.float32)
    return x, y


def regressor(features=6, hidden=64):
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def trained_regressor(data, steps=300):
    torch.manual_seed(0)
    net = regressor(data.input_shape[0])
    fine_tune(net, data, FineTuneConfig(iterations=steps, lr=0.01, optimizer="adam", batch_size=64, weight_decay=0.0),
              loss_fn=resolve_objective("regression").loss)
    return net.eval()


# -- the pieces --------------------------------------------------------------------------------------
def test_defaults_follow_the_task_and_user_functions_replace_them(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    assert resolve_objective().metric_name == "accuracy" and resolve_objective().loss is None
    reg = resolve_objective("regression")
    assert reg.metric_name == "neg_mse" and reg.loss is not None
    mine = resolve_objective("regression", "objective_funcs:neg_mae", "objective_funcs:l1_loss")
    assert mine.metric is objective_funcs.neg_mae and mine.loss is objective_funcs.l1_loss and mine.custom_metric
    with pytest.raises(ImportError, match="no_such_module"):
        resolve_objective(metric="no_such_module:f")
    with pytest.raises(UserError, match="data.task must be one of"):
        resolve_objective("ranking")


def test_config_fields_are_checked_and_named():
    cfg = parse_config({"search": {"metric": "pkg.mod:f"}, "engine": {"loss": "pkg.mod:g"},
                        "data": {"task": "regression"}})
    assert (cfg.search.metric, cfg.engine.loss, cfg.data.task) == ("pkg.mod:f", "pkg.mod:g", "regression")
    with pytest.raises(ConfigError, match=r"engine\.loss: .*package\.module:function"):
        parse_config({"engine": {"loss": "just_a_name"}})
    with pytest.raises(ConfigError, match=r"data\.task"):
        parse_config({"data": {"task": "ranking"}})


def test_a_metric_returning_nan_or_text_or_raising_is_a_metric_error_naming_it(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    split = DataSplit("val", torch.zeros(4, 6), torch.zeros(4))
    model = regressor()
    for name, match in (("returns_nan", "returned nan"), ("returns_text", "returned a str"),
                        ("neg_mae_small_models_fail", "raised on the val split: ValueError")):
        obj = resolve_objective("regression", f"objective_funcs:{name}")
        ctx = type("C", (), {"options": {"fail_below": 10**9}})()
        with pytest.raises(MetricError, match=match) as err:
            obj.score(model, split, ctx)
        assert f"objective_funcs:{name}" in str(err.value)


def test_neg_mse_is_minus_the_mean_squared_error_over_batches():
    x, y = torch.randn(1000, 3), torch.randn(1000)
    lin = nn.Linear(3, 1)
    with torch.no_grad():
        expected = -float(((lin(x).squeeze(1) - y) ** 2).mean())
    assert neg_mse_metric(lin, DataSplit("val", x, y), batch_size=128) == pytest.approx(expected, rel=1e-5)


def test_fine_tune_minimises_the_users_loss_and_refuses_a_non_scalar(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    data = dataset_from_splits(regression_data(), task="regression")
    net = regressor()
    before = neg_mse_metric(net, DataSplit("val", data.x_val, data.y_val))
    calls = objective_funcs.CALLS["l1"]
    fine_tune(net, data, FineTuneConfig(iterations=200, lr=0.01, optimizer="adam", batch_size=64),
              loss_fn=objective_funcs.l1_loss)
    assert objective_funcs.CALLS["l1"] - calls == 200
    assert neg_mse_metric(net, DataSplit("val", data.x_val, data.y_val)) > before
    with pytest.raises(UserError, match="engine.loss must return a scalar tensor"):
        fine_tune(regressor(), data, FineTuneConfig(iterations=2), loss_fn=objective_funcs.not_a_scalar)


def test_regression_splits_keep_real_targets_and_carve_missing_splits_by_seed():
    x, y = regression_data(n=100)
    data = dataset_from_splits((x, y), task="regression", seed=3)
    assert data.task == "regression" and data.y_train.dtype == torch.float32 and data.num_classes == 1
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (70, 10, 20)
    again = dataset_from_splits((x, y), task="regression", seed=3)
    assert torch.equal(data.y_val, again.y_val)
    seen = np.sort(np.concatenate([data.y_train.numpy(), data.y_val.numpy(), data.y_test.numpy()]))
    assert np.array_equal(seen, np.sort(y))  # disjoint and complete
    two = dataset_from_splits((x, np.stack([y, -y], axis=1)), task="regression")
    assert two.num_classes == 2 and two.y_train.shape[1] == 2
    with pytest.raises(UserError, match="must be finite"):
        dataset_from_splits((x, np.full(100, np.nan, dtype=np.float32)), task="regression")


def test_a_metric_that_raises_on_some_candidates_makes_error_rows_and_the_rest_are_scored(monkeypatch):
    """In process (the evaluator the actors wrap): candidates below the size the metric accepts become
    error rows naming the metric; the others get its value."""
    from rayprune.evaluation.candidate import CandidateEvaluator
    from rayprune.evaluation.score import ScoreSpec
    from rayprune.problem import PruningProblem

    monkeypatch.syspath_prepend(str(TESTS))
    data = dataset_from_splits(regression_data(), task="regression")
    net = trained_regressor(data, steps=100)
    base_params = sum(p.numel() for p in net.parameters())
    cfg = parse_config({"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory>", "device": "cpu",
                                                                             "task": "regression"},
                        "search": {"metric": "objective_funcs:neg_mae_small_models_fail"},
                        "costs": {"options": {"fail_below": 0.5 * base_params}}, "budgets": {"params": 0.9}})
    problem = PruningProblem.from_parts(cfg, data, net, {"source": "test"}, device=torch.device("cpu"))
    assert problem.base_accuracy["val"] < 0  # minus an absolute error
    ev = CandidateEvaluator(problem)
    spec = ScoreSpec(kind="adaptive_bn", eval_samples=None)
    big, small = ev.score([0.9, 0.9], spec), ev.score([0.2, 0.2], spec)
    assert big["status"] == "ok" and big["accuracy"] < 0
    assert small["status"] == "error" and "objective_funcs:neg_mae_small_models_fail" in small["error"]
    assert "needs a bigger model" in small["error"] and small["params"] is None


@pytest.mark.slow
def test_prune_a_regressor_scored_by_the_users_metric_end_to_end(monkeypatch, tmp_path):
    """A tabular regressor, the user's neg-MAE metric (which raises on the smallest candidates), MSE
    fine-tunes: the search goes on past the error rows and the exported model is scored by the metric."""
    import ray

    import rayprune

    monkeypatch.syspath_prepend(str(TESTS))  # as the crl tests' user costs: the actors import it by name
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                 log_to_driver=False)
    data = dataset_from_splits(regression_data(n=800), task="regression")
    net = trained_regressor(data)
    base_params = sum(p.numel() for p in net.parameters())
    result = rayprune.prune(
        net, data, budgets={"params": 0.5}, evaluations=24, out=tmp_path / "reg", progress=False, log=None,
        device="cpu", search={"metric": "objective_funcs:neg_mae_small_models_fail", "batch_size": 8,
                              "rerank": {"top_k": 2}, "finetune": {"iterations": 20, "optimizer": "adam", "lr": 0.003},
                              "final_finetune": {"iterations": 100, "optimizer": "adam", "lr": 0.003}},
        costs={"options": {"fail_below": 0.25 * base_params}}, evaluation={"evaluators": 2, "cpus": 0.75},
        pruning={"min_keep": 0.1})
    rows = result.candidates
    search = rows[rows["stage"] == "search"]
    assert len(search) == 24 and result.feasible
    assert result.summary["metric"] == "objective_funcs:neg_mae_small_models_fail"
    ok = search[search["status"] == "ok"]
    assert (ok["accuracy"] < 0).all() and len(ok) >= 8
    # the exported model's value is the user's metric on validation, and it still predicts well
    val = DataSplit("val", data.x_val, data.y_val)
    assert result.summary["pruned"]["accuracy_val"] == pytest.approx(objective_funcs.neg_mae(result.model, val, None),
                                                                     abs=1e-4)
    assert result.summary["pruned"]["accuracy_val"] > result.summary["base"]["accuracy_val"] - 0.5
    assert "neg_mae_small_models_fail_val" in str(result)


def test_a_lower_is_better_metric_is_minimised_with_metric_mode_min_and_warned_about_without_it(monkeypatch,
                                                                                               tmp_path):
    """A plain MAE as search.metric was maximised in silence: rayprune exported the candidate with the largest
    error. `search.metric_mode: min` minimises it (minus it is recorded, named `module:-function`); without it, most
    candidates scoring above the unpruned model is called out."""
    import ray

    import rayprune

    monkeypatch.syspath_prepend(str(TESTS))
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                 log_to_driver=False)
    data = dataset_from_splits(regression_data(n=800), task="regression")
    net = trained_regressor(data)
    val = DataSplit("val", data.x_val, data.y_val)
    search = {"metric": "objective_funcs:mae", "batch_size": 8, "rerank": {"top_k": 2},
              "finetune": {"iterations": 10, "optimizer": "adam", "lr": 0.003},
              "final_finetune": {"iterations": 30, "optimizer": "adam", "lr": 0.003}}
    runs, lines = {}, {}
    for mode in ("max", "min"):
        lines[mode] = []
        runs[mode] = rayprune.prune(net, data, budgets={"params": 0.5}, evaluations=24, out=tmp_path / mode,
                                    progress=False, log=lines[mode].append, device="cpu",
                                    search={**search, "metric_mode": mode},
                                    evaluation={"evaluators": 2, "cpus": 0.75}, pruning={"min_keep": 0.1})
    minimised = runs["min"]
    assert minimised.summary["metric"] == "objective_funcs:-mae" and "-mae_val" in str(minimised)
    assert "(diff)" in next(line for line in str(minimised).splitlines() if line.startswith("-mae_val"))
    import json  # the exported model says what its numbers are

    assert json.loads((minimised.out / "best" / "spec.json").read_text())["summary"]["metric"] == "objective_funcs:-mae"
    ok = minimised.candidates[(minimised.candidates["stage"] == "search") & (minimised.candidates["status"] == "ok")]
    assert (ok["accuracy"] < 0).all()  # minus the error, maximised
    assert minimised.summary["pruned"]["accuracy_val"] == pytest.approx(-objective_funcs.mae(minimised.model, val, None),
                                                                        abs=1e-4)
    assert objective_funcs.mae(minimised.model, val, None) < objective_funcs.mae(runs["max"].model, val, None)
    warned = [line for line in lines["max"] if "set search.metric_mode: min" in line]
    assert warned and "candidates scored above the unpruned model" in warned[0], lines["max"]
    assert not any("metric_mode" in line for line in lines["min"])
    with pytest.raises(ConfigError, match="metric_mode 'min' needs search.metric"):
        parse_config({"search": {"metric_mode": "min"}})


def test_a_regressor_with_a_custom_loss_is_still_checked_against_the_targets_when_the_metric_is_minus_the_mse(
        monkeypatch):
    """With engine.loss set, a model giving 3 outputs for 2 targets was not checked, and the default metric's reshape
    failed on the base model with advice about token ids."""
    from rayprune.problem import PruningProblem

    monkeypatch.syspath_prepend(str(TESTS))
    x, y = regression_data()
    data = dataset_from_splits((x, np.stack([y, -y], axis=1)), task="regression")
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    section = {"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory> data", "task": "regression"},
               "budgets": {"params": 0.5}, "engine": {"loss": "objective_funcs:l1_loss"}}
    with pytest.raises(UserError, match=r"gives 3 outputs per sample, but the regression targets have 2 values"):
        PruningProblem.from_parts(parse_config(section, source="test"), data, net, {"source": "in-memory"},
                                  device=torch.device("cpu"))
    mine = parse_config({**section, "search": {"metric": "objective_funcs:neg_mae"}}, source="test")
    with pytest.raises(UserError, match=r"search.metric 'objective_funcs:neg_mae' raised") as err:
        # both the loss and the metric the user's: they decide what the outputs mean (here the metric cannot)
        PruningProblem.from_parts(mine, data, net, {"source": "in-memory"}, device=torch.device("cpu"))
    assert "outputs per sample" not in str(err.value)


def test_a_loss_that_is_not_a_scalar_is_refused_on_the_base_model_before_the_search(monkeypatch):
    """A loss with reduction='none' was found only after the whole search, when every re-rank failed."""
    from rayprune.problem import PruningProblem

    monkeypatch.syspath_prepend(str(TESTS))
    data = dataset_from_splits(regression_data(), task="regression")
    section = {"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory> data", "task": "regression"},
               "budgets": {"params": 0.5}, "engine": {"loss": "objective_funcs:not_a_scalar"}}
    with pytest.raises(UserError, match=r"engine.loss must return a scalar tensor.*got a tensor of shape \(8, 1\) "
                                        r"\(engine.loss 'objective_funcs:not_a_scalar' on the base model's outputs"):
        PruningProblem.from_parts(parse_config(section, source="test"), data, regressor(), {"source": "in-memory"},
                                  device=torch.device("cpu"))
    fine = parse_config({**section, "engine": {"loss": "objective_funcs:l1_loss"}}, source="test")
    assert PruningProblem.from_parts(fine, data, regressor(), {"source": "in-memory"},
                                     device=torch.device("cpu")).base_accuracy["val"] < 0


def test_the_shipped_regression_example_prunes_a_model_that_still_beats_the_mean(ray_session, tmp_path, monkeypatch):
    """configs/regression.yaml (scikit-learn's bundled diabetes set, an MLP, Adam fine-tunes) runs as shipped, with
    fewer candidates: the pruned model meets its budget and still predicts better than the train mean."""
    import rayprune
    from rayprune.data import load_dataset

    monkeypatch.setenv("RAYPRUNE_CACHE", str(tmp_path / "cache"))
    result = rayprune.prune(config=str(Path(__file__).parents[1] / "configs" / "regression.yaml"), evaluations=16,
                            out=tmp_path / "run", progress=False, log=None)
    assert result.feasible and result.summary["metric"] == "neg_mse"
    data = load_dataset("sklearn:diabetes", task="regression", seed=0)
    mean_predictor = -float(((data.y_test - data.y_train.mean()) ** 2).mean())
    assert result.summary["pruned"]["accuracy_test"] > mean_predictor + 500, (result.summary, mean_predictor)
