"""Timed costs judged on a ratio to the base model timed in the same process (rayprune.costs.paired)."""

from __future__ import annotations

import doctest

import pytest
from torch import nn

from rayprune.costs import PairedTiming, paired_columns


def test_the_module_examples_hold():
    from rayprune.costs import paired

    assert doctest.testmod(paired).failed == 0


def test_the_base_is_timed_before_each_candidate_and_the_ratio_is_scaled_to_the_reference():
    order = []
    speed = {"now": 1.0}

    def latency(model, context):
        order.append(model)
        return speed["now"] * {"base": 4.0, "small": 1.0}[model]

    timer = PairedTiming("base", {"latency_ms": latency}, None, {"latency_ms": 4.0})
    quick = timer.measure("small")
    speed["now"] = 1.6  # a process (or a moment) 60 % slower: the raw medians move, the value does not
    slow = timer.measure("small")
    assert order == ["base", "small", "base", "small"]
    assert quick[0] == slow[0] == {"latency_ms": pytest.approx(1.0)}
    assert slow[1] == {"latency_ms_measured": pytest.approx(1.6), "latency_ms_base": pytest.approx(6.4)}
    assert paired_columns("latency_ms") == ("latency_ms_measured", "latency_ms_base")


def test_a_paired_cost_needs_its_reference_and_a_positive_base_time():
    with pytest.raises(ValueError, match="base value of \\['latency_ms'\\]"):
        PairedTiming(nn.Linear(2, 2), {"latency_ms": lambda m, c: 1.0}, None, {"params": 1.0})
    timer = PairedTiming("base", {"latency_ms": lambda m, c: 0.0 if m == "base" else 1.0}, None, {"latency_ms": 2.0})
    with pytest.raises(ValueError, match="base model at 0.0"):
        timer.measure("small")


def _problem(tmp_path, monkeypatch, speed, *, paired=True):
    """small_cnn on digits with a deterministic 'latency' (params × the process's speed)."""
    from rayprune.config import parse_config
    from rayprune.costs import count_params, registry
    from rayprune.problem import PruningProblem

    monkeypatch.setitem(registry.BUILTIN_COSTS, "latency_ms",
                        lambda model, context: speed["now"] * count_params(model) / 1000.0)
    cfg = parse_config({
        "name": "paired", "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.25}},
        "data": {"name": "digits", "device": "cpu"},
        "base_training": {"epochs": 1, "batch_size": 64, "cache_dir": str(tmp_path)},
        "costs": {"measure": ["params", "latency_ms"], "latency": {"paired": paired}},
        "budgets": {"latency_ms": {"value": 0.5, "relative": True}},
    })
    return PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")


@pytest.mark.parametrize("paired", [True, False])
def test_a_candidate_scored_in_a_slow_process_is_judged_on_its_ratio_to_the_base(tmp_path, monkeypatch, paired):
    """The driver times the base (the budget's limit); an evaluator running 1.6x slower times a
    candidate with 40 % of the base's 'latency'. Paired, it meets latency_ms=rel:0.5 and the row says
    what was measured; unpaired, the slow process alone puts it over (64 % of the base)."""
    from rayprune.evaluation.candidate import CandidateEvaluator
    from rayprune.evaluation.score import ScoreSpec

    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed, paired=paired)
    base = problem.base_costs["latency_ms"]
    assert base == pytest.approx(problem.base_costs["params"] / 1000.0)
    speed["now"] = 1.6
    evaluator = CandidateEvaluator(problem)
    spec = ScoreSpec.adaptive_bn(bn_batches=1, bn_batch_size=32, eval_samples=64)
    ratios = [0.6] * len(problem.space.groups)
    row = evaluator.score(ratios, spec)
    assert row["status"] == "ok", row["error"]
    share = row["params"] / problem.base_costs["params"]
    assert 0.3 < share < 0.5
    if paired:
        assert row["latency_ms"] == pytest.approx(share * base)
        assert row["latency_ms_measured"] == pytest.approx(1.6 * share * base)
        assert row["latency_ms_base"] == pytest.approx(1.6 * base)
        assert problem.feasible(row)
        assert problem.measure(problem.space.build(ratios), ["latency_ms"]) == {"latency_ms": pytest.approx(share * base)}
    else:
        assert row["latency_ms"] == pytest.approx(1.6 * share * base)
        assert "latency_ms_measured" not in row and problem.paired_raw_columns == []
        assert not problem.feasible(row)


def test_an_error_row_has_the_paired_columns_and_a_final_summary_reports_them(tmp_path, monkeypatch):
    from rayprune.config import TrainConfig
    from rayprune.evaluation.candidate import CandidateEvaluator
    from rayprune.evaluation.score import ScoreSpec

    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed)
    evaluator = CandidateEvaluator(problem)
    spec = ScoreSpec.adaptive_bn(bn_batches=1, bn_batch_size=32, eval_samples=64)
    monkeypatch.setattr(problem.space, "build", lambda ratios: (_ for _ in ()).throw(RuntimeError("boom")))
    row = evaluator.score([0.5] * len(problem.space.groups), spec)
    assert row["status"] == "error"
    assert {"latency_ms", "latency_ms_measured", "latency_ms_base"} <= set(row)
    monkeypatch.undo()
    problem = _problem(tmp_path, monkeypatch, speed)
    speed["now"] = 2.0
    evaluator = CandidateEvaluator(problem)
    _, summary = evaluator.finalize([0.5] * len(problem.space.groups),
                                    finetune=TrainConfig(iterations=1, batch_size=16))
    assert summary["latency_ms_base"] == pytest.approx(2.0 * problem.base_costs["latency_ms"])
    assert summary["latency_ms"] == pytest.approx(summary["latency_ms_measured"] / 2.0)


def test_measuring_alone_returns_the_paired_value_with_its_raw_medians(tmp_path, monkeypatch):
    """The selection's one-at-a-time check and the finals' re-timing read these (LocalPool here; the
    Ray evaluator's ``measure`` returns the same dict)."""
    from rayprune.evaluation.local import LocalPool

    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed)
    speed["now"] = 1.25
    ratios = [0.5] * len(problem.space.groups)
    [measured] = LocalPool(problem).measure_sequentially([ratios], ["latency_ms"])
    base = problem.base_costs["latency_ms"]
    assert measured["latency_ms_base"] == pytest.approx(1.25 * base)
    assert measured["latency_ms"] == pytest.approx(measured["latency_ms_measured"] / 1.25)


def test_a_burst_of_other_work_during_one_timing_does_not_move_the_ratio_when_they_take_turns():
    """One base timing caught in a burst (3x slow) halves the candidate's one-round ratio; with
    turns the lowest of each is kept and the ratio is the models' own."""
    timings = {"base": iter([12.0, 4.0, 4.2]), "small": iter([2.0, 2.1, 2.0])}
    timer = PairedTiming("base", {"latency_ms": lambda m, c: next(timings[m])}, None, {"latency_ms": 4.0})
    burst = PairedTiming("base", {"latency_ms": lambda m, c: {"base": 12.0, "small": 2.0}[m]}, None,
                         {"latency_ms": 4.0})
    assert burst.measure("small")[0] == {"latency_ms": pytest.approx(2.0 / 12.0 * 4.0)}  # one round: 0.17x
    values, raw = timer.measure("small", rounds=3)
    assert values == {"latency_ms": pytest.approx(2.0)} and raw == {"latency_ms_measured": 2.0, "latency_ms_base": 4.0}
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        timer.measure("small", rounds=0)


def test_a_base_timing_far_off_this_processs_recent_ones_takes_one_more_turn():
    """A search times each candidate in one turn with the base: a base caught at 4.52 ms among 1.85-2.07 made a
    candidate at 90 % of the MACs (2.03 ms) read 0.45 of the base, feasible under latency_ms=rel:0.9."""
    base_times = iter([2.0, 1.9, 2.1, 2.0, 4.52, 2.05, 2.0])
    cand_times = iter([1.8, 1.8, 1.8, 1.8, 2.03, 1.95, 1.6])
    timer = PairedTiming("base", {"latency_ms": lambda m, c: next(base_times if m == "base" else cand_times)}, None,
                         {"latency_ms": 2.0})
    for _ in range(4):  # the process's history: the base at about 2 ms, one turn each
        assert timer.measure("cand")[1]["latency_ms_measured"] == 1.8
    values, raw = timer.measure("cand")  # the burst: one more turn, each keeps its lowest
    assert raw == {"latency_ms_measured": 1.95, "latency_ms_base": 2.05}
    assert values["latency_ms"] == pytest.approx(1.95 / 2.05 * 2.0)  # 0.95 of the base, not 0.45
    values, raw = timer.measure("cand")  # back to normal: one turn
    assert raw == {"latency_ms_measured": 1.6, "latency_ms_base": 2.0}


def test_measuring_alone_takes_turns_with_the_base(tmp_path, monkeypatch):
    """The quiet checks (shortlist, finals) time the candidate and the base QUIET_TIMING_ROUNDS times each."""
    from rayprune.costs import count_params, registry
    from rayprune.evaluation.local import LocalPool

    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed)
    calls = []
    monkeypatch.setitem(problem.costs, "latency_ms",
                        lambda model, context: calls.append(model) or count_params(model) / 1000.0)
    problem._timing = None  # rebuilt with the counting cost
    [measured] = LocalPool(problem).measure_sequentially([[0.5] * len(problem.space.groups)], ["latency_ms"])
    assert len(calls) == 2 * registry.QUIET_TIMING_ROUNDS and registry.QUIET_TIMING_ROUNDS > 1
    assert calls[0::2] == [problem.base_model] * registry.QUIET_TIMING_ROUNDS  # base, candidate, base, ...
    assert measured["latency_ms"] == pytest.approx(measured["latency_ms_measured"] / measured["latency_ms_base"]
                                                   * problem.base_costs["latency_ms"])


def test_an_exported_models_spec_json_carries_its_latency_measured_again_alone(tmp_path, monkeypatch):
    """spec.json (the file that goes to the device with the model) kept the timing taken while other finals trained;
    summary.json, the printed table and the front had the one measured again alone, which the level was judged on."""
    import json

    from rayprune.evaluation.local import LocalPool
    from rayprune.search.selection import _remeasure_timed

    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed, paired=False)  # unpaired: the process's speed shows
    pool = LocalPool(problem)
    ratios = [0.5] * len(problem.space.groups)
    speed["now"] = 3.0  # the finals ran beside each other
    [final] = pool.finalize_many([{"keep_ratios": ratios, "seed": 0, "export_dir": str(tmp_path / "m"),
                                   "finetune": {"iterations": 1, "batch_size": 16}}])
    busy = json.loads((tmp_path / "m" / "spec.json").read_text())["summary"]["latency_ms"]
    speed["now"] = 1.0
    final = {**final, "row": {"keep_ratios": ratios}}
    _remeasure_timed([final], pool, ["params", "latency_ms"], log=lambda m: None)
    summary = json.loads((tmp_path / "m" / "spec.json").read_text())["summary"]
    assert final["latency_ms"] == pytest.approx(busy / 3.0)
    assert summary["latency_ms"] == final["latency_ms"] and summary["latency_ms_during_finals"] == busy
    assert summary["params"] == final["params"]  # the analytic costs as they were


def test_a_latency_budget_below_the_fixed_cost_is_refused_with_the_advice_that_fits(tmp_path, monkeypatch):
    """'Lower pruning.min_keep' was the advice for a latency budget the smallest model missed though it had 2 % of the
    MACs left: most of the time was the runtime's fixed cost. And the smallest model is timed in turns with the base
    (one noisy round refused a reachable budget)."""
    from rayprune.costs import count_params, registry
    from rayprune.costs.levels import Level
    from rayprune.search.prune import BudgetUnreachable, check_reachable

    calls = []
    speed = {"now": 1.0}
    problem = _problem(tmp_path, monkeypatch, speed)
    fixed = problem.base_costs["params"] / 1000.0  # as much again as the base's own work: a floor of about half
    monkeypatch.setitem(problem.costs, "latency_ms",
                        lambda model, context: calls.append(model) or count_params(model) / 1000.0 + fixed)
    problem._timing = None
    problem.base_costs["latency_ms"] = 2 * fixed
    with pytest.raises(BudgetUnreachable, match=r"Raise the budget\. The smallest model keeps 5\d % of the base's "
                                                r"latency_ms with \d+ % of its MACs.*would hardly move it.*runtime torch"):
        check_reachable(problem)
    assert len(calls) == 2 * registry.QUIET_TIMING_ROUNDS  # the smallest model and the base, in turns
    monkeypatch.setitem(problem.costs, "latency_ms", lambda model, context: count_params(model) / 1000.0)
    problem._timing = None
    problem.base_costs["latency_ms"] = problem.base_costs["params"] / 1000.0
    limit = 0.001 * problem.base_costs["latency_ms"]  # below what min_keep leaves, the time shrinking with the work
    with pytest.raises(BudgetUnreachable, match="Lower pruning.min_keep or raise the budget") as err:
        check_reachable(problem, [Level("tight", {"latency_ms": limit}, {"latency_ms": limit})])
    assert "would hardly move it" not in str(err.value)
