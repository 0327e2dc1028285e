"""NEON's result is checked on a selection split the episodes never saw (docs/neon.md, "Tolerance").

The paired interval (rayprune.neon.interval) and the split and walk (rayprune.neon.selection) as
small functions first, then short runs of the shipped agent on a tiny MLP: the steps see only the
decide split, and a network whose every cut breaks τ on the selection split comes back unpruned.
"""

import copy
import dataclasses
import doctest
import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rayprune.config import parse_config
from rayprune.models import build_model
from rayprune.neon import interval, selection
from rayprune.neon.interval import PairedChange, paired_counts, paired_lower_bound, tango_statistic, z_value
from rayprune.neon.selection import check_path, correct, describe, resolution_points, selection_split
from rayprune.neon.suite import load_suite_dataset
from rayprune.neon.training import RetrainSettings, train_early_stopping
from rayprune.problem import PruningProblem
from rayprune.pruning import load_pruned
from rayprune.search.prune import run_prune


def test_the_modules_doctests_hold():
    for module in (interval, selection):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


# -- the interval -------------------------------------------------------------------------------------
@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95])
@pytest.mark.parametrize("n", [20, 60, 150, 1000])
def test_full_agreement_leaves_the_closed_form_bound(n, confidence):
    # no disagreement: the score bound is -z^2 / (n + z^2), not the single point a Wald interval gives
    z = z_value(confidence)
    assert paired_lower_bound(0, 0, n, confidence=confidence) == pytest.approx(-z * z / (n + z * z), abs=1e-12)


@pytest.mark.parametrize("gains, losses, n, delta", [(3, 7, 100, -0.05), (10, 2, 60, 0.05), (5, 5, 300, -0.02),
                                                     (1, 12, 80, -0.2), (4, 9, 50, 0.0)])
def test_the_score_statistic_uses_the_restricted_maximum_likelihood(gains, losses, n, delta):
    from scipy.optimize import minimize_scalar

    # the share of losses q that maximises the multinomial likelihood when the change is held at delta
    concordant = n - gains - losses

    def nll(q):
        return -(gains * np.log(q + delta) + losses * np.log(q) + concordant * np.log(1 - 2 * q - delta))

    lo, hi = max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12
    q = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12}).x
    expected = (gains - losses - n * delta) / np.sqrt(n * ((q + delta) + q - delta**2))
    assert tango_statistic(delta, gains, losses, n) == pytest.approx(expected, rel=1e-5)


def test_the_bound_solves_the_score_equation_and_falls_with_confidence():
    gains, losses, n = 4, 11, 200
    estimate = (gains - losses) / n
    bounds = [paired_lower_bound(gains, losses, n, confidence=c) for c in (0.5, 0.8, 0.9, 0.95, 0.99)]
    assert bounds[0] == estimate  # confidence 0.5: no margin
    assert all(a > b for a, b in zip(bounds, bounds[1:]))
    for c, bound in zip((0.8, 0.9, 0.95, 0.99), bounds[1:]):
        assert tango_statistic(bound, gains, losses, n) == pytest.approx(z_value(c), abs=1e-6)
    grid = np.linspace(-0.5, estimate, 50)  # decreasing in delta, so bisection finds the one root
    values = [tango_statistic(d, gains, losses, n) for d in grid]
    assert all(a > b for a, b in zip(values, values[1:]))
    assert paired_lower_bound(0, n, n, confidence=0.9) == -1.0  # every sample lost


def test_the_interval_shrinks_as_the_split_grows():
    sizes = [60, 120, 240, 480, 960, 1920]
    # the same disagreement rates (2 % gains, 3 % losses) on larger and larger splits
    counts = [(round(0.02 * n), round(0.03 * n), n) for n in sizes]
    margins = [(g - l) / n - paired_lower_bound(g, l, n, confidence=0.9) for g, l, n in counts]
    assert all(a > b for a, b in zip(margins, margins[1:]))
    resolutions = [resolution_points(n, 0.9) for n in sizes]
    assert all(a < b < 0 for a, b in zip(resolutions, resolutions[1:]))
    # 60 samples do not resolve a 1-point change, even when the networks agree on every one, at 80 or 90 %
    assert resolution_points(60, 0.9) < resolution_points(60, 0.8) < -1.0
    assert PairedChange(0, 1, 60, 0.9).lower_points < -5.0  # one lost sample: a 1.7-point drop, bound -5.4
    assert resolution_points(1000, 0.9) > -0.2


def test_the_bound_covers_the_true_change_about_as_often_as_it_claims():
    rng = np.random.default_rng(0)
    n, p_gain, p_loss = 150, 0.02, 0.05
    truth = p_gain - p_loss
    draws = rng.multinomial(n, [p_gain, p_loss, 1 - p_gain - p_loss], size=1500)
    covered = np.mean([paired_lower_bound(int(g), int(l), n, confidence=0.9) <= truth for g, l, _ in draws])
    assert 0.86 <= covered <= 0.97, covered


def test_paired_counts_and_parameter_errors():
    base = np.array([True, True, True, False, False])
    pruned = np.array([True, False, False, True, False])
    assert paired_counts(base, pruned) == (1, 2)
    change = PairedChange.of(base, pruned, confidence=0.9)
    assert (change.gains, change.losses, change.samples) == (1, 2, 5) and change.points == pytest.approx(-20.0)
    assert PairedChange.unchanged(50, confidence=0.9).lower_points == 0.0  # the base itself: no uncertainty
    with pytest.raises(ValueError, match="'gains' \\+ 'losses' must be <= 'samples'"):
        paired_lower_bound(30, 40, 60, confidence=0.9)
    with pytest.raises(ValueError, match="'samples' must be >= 1"):
        paired_lower_bound(0, 0, 0, confidence=0.9)
    for bad in (1.0, 0.4, True):
        with pytest.raises(ValueError, match="'confidence' must be a number in \\[0.5, 1\\)"):
            paired_lower_bound(1, 1, 10, confidence=bad)
    with pytest.raises(ValueError, match="same length"):
        paired_counts(base, pruned[:3])


# -- the split and the walk ---------------------------------------------------------------------------
def test_the_selection_split_is_disjoint_from_the_decide_split():
    data = load_suite_dataset("clf_easy", seed=0)
    split = selection_split(data, 0.4, seed=3)
    n = len(data.y_val)
    decide, select = split.decide_indices, split.select_indices
    assert len(np.intersect1d(decide, select)) == 0
    assert np.array_equal(np.union1d(decide, select), np.arange(n))
    assert split.samples == round(0.4 * n) and len(split.decide.y_val) == n - split.samples
    assert torch.equal(split.decide.x_val, data.x_val[decide]) and torch.equal(split.x, data.x_val[select])
    assert torch.equal(split.decide.y_val, data.y_val[decide]) and torch.equal(split.y, data.y_val[select])
    assert split.decide.x_train is data.x_train and split.decide.x_test is data.x_test  # nothing else moves
    share = data.y_val.float().mean().item()
    assert split.y.float().mean().item() == pytest.approx(share, abs=0.02)  # stratified by label
    assert np.array_equal(selection_split(data, 0.4, seed=3).select_indices, select)  # seeded
    assert not np.array_equal(selection_split(data, 0.4, seed=4).select_indices, select)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="'selection_fraction' must be a number in \\(0, 1\\)"):
            selection_split(data, bad, seed=0)
    tiny = load_suite_dataset("iris", seed=0)
    one = dataclasses.replace(tiny, x_val=tiny.x_val[:1], y_val=tiny.y_val[:1])
    with pytest.raises(ValueError, match="too few to hold a selection split"):
        selection_split(one, 0.5, seed=0)


def test_correct_marks_each_sample():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))
        model.bias.zero_()
    model.train()
    hits = correct(model, torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0]]), torch.tensor([0, 0, 1]))
    assert hits.tolist() == [True, False, False] and model.training  # the flag is restored


def test_the_walk_stops_at_the_first_network_it_cannot_show_within_tolerance():
    base = np.ones(400, dtype=bool)
    base[:40] = False  # the base gets 90 % right
    same = base.copy()
    bad = base.copy()
    bad[40:80] = False  # 10 points worse
    good = base.copy()
    good[:2] = True  # 2 gains
    kwargs = {"tolerance": 1.0, "confidence": 0.9}
    walk = check_path(base, [good, same], **kwargs)
    assert walk.complete and walk.shown == 2 and walk.result.points == 0.0 and walk.failed is None
    walk = check_path(base, [good, bad, same], **kwargs)  # a fixed sequence: nothing after a failure is tried
    assert walk.shown == 1 and not walk.complete and walk.failed.points == pytest.approx(-10.0)
    assert len(walk.changes) == 2 and walk.result.points == pytest.approx(0.5)
    walk = check_path(base, [bad, good], **kwargs)
    assert walk.shown == 0 and walk.result is None
    # the same networks on a 40-sample split: even full agreement cannot be shown within 1 point
    walk = check_path(base[::10], [same[::10]], **kwargs)
    assert walk.shown == 0 and walk.failed.points == 0.0 and walk.failed.lower_points < -1.0


def test_walk_positions_pick_the_networks_the_check_walks():
    from rayprune.neon.selection import walk_positions

    reductions = [1.0, 1.2, 1.5, 2.0, 2.2, 3.9, 4.1, 17.0, 20.0]
    assert walk_positions(reductions, "every") == list(range(9))
    # the first network at or past x2, x4, x8 (x16 is reached at x17, in the same step), then the candidate
    assert walk_positions(reductions, "doubling") == [0, 3, 6, 7, 8]
    assert walk_positions(reductions, "candidate") == [0, 8]
    assert walk_positions([1.0], "doubling") == [0] and walk_positions([1.0, 1.5], "doubling") == [0, 1]
    with pytest.raises(ValueError, match="walk"):
        walk_positions(reductions, "all")


def test_a_dip_in_the_middle_of_the_path_stops_every_walk_but_not_the_doubling_one():
    from rayprune.neon.selection import walk_positions

    base = np.ones(400, dtype=bool)
    base[:40] = False
    same, dip = base.copy(), base.copy()
    dip[40:60] = False  # 5 points down: a cut the next step's retraining recovers from
    hits = {1: dip, 2: same, 3: same}  # the path after the unpruned network: x1.5 (the dip), x2.5, x5
    reductions = [1.0, 1.5, 2.5, 5.0]
    kwargs = {"tolerance": 1.0, "confidence": 0.8}
    every = check_path(base, [hits[i] for i in walk_positions(reductions, "every")[1:]], **kwargs)
    doubling = check_path(base, [hits[i] for i in walk_positions(reductions, "doubling")[1:]], **kwargs)
    assert every.shown == 0 and not every.complete  # stopped at the dip: the unpruned network comes back
    assert doubling.complete and doubling.shown == 2  # x2.5 and x5 shown within 1 point; the dip is never asked


# -- runs of the shipped agent ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_net():
    """A 32-16 MLP trained on the suite's clf_easy (225 validation samples): a few seconds."""
    data = load_suite_dataset("clf_easy", seed=0)
    torch.manual_seed(0)
    net = build_model("mlp", num_classes=2, in_features=10, hidden_sizes=[32, 16])
    train_early_stopping(net, data, RetrainSettings(max_epochs=30, patience=5, max_samples=None), seed=0)
    return data, net.eval()


def problem_for(tiny_net, **neon):
    data, net = tiny_net
    cfg = parse_config({"name": "neon-selection", "model": {"name": "mlp", "kwargs": {"hidden_sizes": [32, 16]}},
                        "data": {"name": "<in-memory>", "device": "cpu"}, "costs": {"measure": ["params"]},
                        "neon": {"rollouts": 2, "passes": 2, "retrain": {"max_epochs": 2, "patience": 1}, **neon}})
    return cfg, PruningProblem.from_parts(cfg, data, copy.deepcopy(net), {"source": "test"}, device=torch.device("cpu"))


def row_indices(x: torch.Tensor, rows: dict[bytes, int]) -> set[int]:
    return {rows[r.numpy().tobytes()] for r in x}


def test_the_steps_never_see_the_selection_split(tiny_net, tmp_path, monkeypatch):
    import rayprune.neon.episode as episode_module
    import rayprune.neon.training as training_module

    data, _ = tiny_net
    rows = {r.numpy().tobytes(): i for i, r in enumerate(data.x_val)}
    assert len(rows) == len(data.x_val)  # every validation sample is identified by its features
    seen: set[int] = set()
    real_evaluate, real_loss = episode_module.evaluate, training_module.validation_loss

    def evaluate(model, x, y, **kw):  # the episode's accuracy: rollback and reward
        seen.update(row_indices(x, rows))
        return real_evaluate(model, x, y, **kw)

    def validation_loss(model, x, y, *a, **kw):  # the retraining's early stopping
        seen.update(row_indices(x, rows))
        return real_loss(model, x, y, *a, **kw)

    monkeypatch.setattr(episode_module, "evaluate", evaluate)
    monkeypatch.setattr(training_module, "validation_loss", validation_loss)
    cfg, problem = problem_for(tiny_net, tolerance=5.0, selection_fraction=0.5)
    said: list[str] = []
    summary = run_prune(cfg, tmp_path / "out", agent="neon", problem=problem, progress=False, log=said.append)
    # the promise under the table, for the Python API's user too (it was printed by the CLI alone)
    assert said[-1].splitlines()[-1].startswith("neon (tolerance 5 pt): x") or "neon (tolerance 5 pt): x" in said[-1]
    split = selection_split(data, 0.5, seed=cfg.seed)  # the split the run made (seeded by the run's seed)
    assert seen and seen <= set(split.decide_indices.tolist())
    assert not seen & set(split.select_indices.tolist())
    neon = summary["neon"]
    sel = neon["selection"]
    assert sel["samples"] == split.samples == 112 and sel["decide_samples"] == len(split.decide_indices) == 113
    assert sel["confidence"] == cfg.neon.confidence == 0.7 and sel["lower_bound_points"] <= sel["accuracy_change_points"]
    assert neon["outcome"] in ("accepted", "fallback") and neon["reduction_factor"] > 1.0
    assert sel["lower_bound_points"] >= -5.0  # what was handed back is shown within tau
    assert neon["accuracy_change_test_points"] == pytest.approx(
        100 * (summary["pruned"]["accuracy_test"] - summary["base"]["accuracy_test"]))
    saved = json.loads((tmp_path / "out" / "best" / "summary.json").read_text())["neon"]
    assert saved["outcome"] == neon["outcome"] and saved["selection"]["samples"] == 112
    line = describe(neon)
    assert line.startswith("neon (tolerance 5 pt): x") and "selection split (112 samples" in line and "test" in line


def test_a_tolerance_that_reads_like_a_fraction_is_named_in_the_reason_it_came_back_unpruned(tiny_net, tmp_path):
    """--tolerance 0.01 meant "1 %" to a user and a hundredth of a point to the agent: the network came back unpruned
    with a reason about sample counts alone."""
    cfg, problem = problem_for(tiny_net, tolerance=0.01)
    summary = run_prune(cfg, tmp_path / "out", agent="neon", problem=problem, progress=False, log=lambda m: None)
    neon = summary["neon"]
    assert neon["outcome"] == "unpruned" and neon["reduction_factor"] == 1.0
    assert neon["reason"].endswith("(the tolerance is in accuracy points: 0.01 accepts a loss of 0.01 %; for a loss "
                                   "of 1 %, give 1)")
    cfg, problem = problem_for(tiny_net, tolerance=5.0)  # a tolerance in points: no such note, whatever the outcome
    summary = run_prune(cfg, tmp_path / "out5", agent="neon", problem=problem, progress=False, log=lambda m: None)
    assert "accuracy points" not in summary["neon"]["reason"]


def test_a_network_whose_every_cut_breaks_tolerance_on_the_selection_split_comes_back_unpruned(
        tiny_net, tmp_path, monkeypatch):
    import rayprune.neon.apply as apply_module

    data, net = tiny_net
    base_params = sum(p.numel() for p in net.parameters())
    real_correct = apply_module.correct

    def correct_on_selection(model, x, y, **kw):  # every pruned network loses a quarter of the selection samples
        hits = real_correct(model, x, y, **kw)
        if sum(p.numel() for p in model.parameters()) < base_params:
            hits[: len(hits) // 4] = False
        return hits

    monkeypatch.setattr(apply_module, "correct", correct_on_selection)
    cfg, problem = problem_for(tiny_net, tolerance=5.0)
    summary = run_prune(cfg, tmp_path / "out", agent="neon", problem=problem, progress=False, log=lambda m: None)
    neon = summary["neon"]
    assert neon["candidate"]["reduction_factor"] > 1.0  # the decide split accepted cuts ...
    assert neon["outcome"] == "unpruned" and neon["reduction_factor"] == 1.0  # ... the check none of them
    assert "cannot be shown within 5 pt on the selection split" in neon["reason"]
    assert "handed back the unpruned network" in neon["reason"]
    assert neon["stopped_at"]["lower_bound_points"] < -5.0 and neon["path"]["shown"] == 0
    assert neon["selection"]["accuracy_change_points"] == 0.0 and neon["selection"]["lower_bound_points"] == 0.0
    rows = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    pruned = search[search["params"] < base_params]
    assert len(pruned) and (pruned["selection_accuracy_change"] < -5.0).all()  # every rollout broke tau there
    assert search[search["chosen"]]["step"].tolist() == [-1]
    model = load_pruned(tmp_path / "out" / "best")
    assert sum(p.numel() for p in model.parameters()) == base_params == summary["pruned"]["params"]
    # the default walk (candidate_first) looked at the candidate alone first, then walked the path
    assert describe(neon).splitlines()[1].startswith("neon: the candidate alone is not shown within 5 pt")
    assert "; then every network of its path: rollout " in neon["reason"] and "first_look" in neon


def test_a_fine_tuned_network_that_fails_the_check_is_not_exported(tiny_net, tmp_path, monkeypatch):
    import rayprune.neon.apply as apply_module

    def ruin(model, data, config, **kw):  # a "fine-tune" that breaks the network: one class for everything
        with torch.no_grad():
            last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
            last.weight.zero_()
            last.bias.copy_(torch.tensor([1.0, 0.0]))
        return {"iterations": 1}

    monkeypatch.setattr(apply_module, "fine_tune", ruin)
    cfg, problem = problem_for(tiny_net, tolerance=5.0, final_finetune=True)
    summary = run_prune(cfg, tmp_path / "out", agent="neon", problem=problem, progress=False, log=lambda m: None)
    neon = summary["neon"]
    assert neon["final_finetune_kept"] is False and "fine-tuned network was not exported" in neon["reason"]
    assert neon["accuracy_change_val_points"] >= -5.0  # the checked network went out instead
    assert "fine-tuned network was not exported" in describe(neon)


def test_the_episodes_spend_only_their_share_of_tolerance_and_the_check_asks_for_all_of_it(tiny_net, tmp_path):
    cfg, problem = problem_for(tiny_net, tolerance=4.0, episode_tolerance=0.25, walk="doubling")
    summary = run_prune(cfg, tmp_path / "out", agent="neon", problem=problem, progress=False, log=lambda m: None)
    neon = summary["neon"]
    assert neon["episode_tolerance"] == 1.0 and neon["tolerance"] == 4.0 and neon["walk"] == "doubling"
    rows = pd.read_parquet(tmp_path / "out" / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert set(search["tolerance"]) == {1.0}  # rollback and the reward used 1 point, not 4
    assert (search.loc[search["chosen"].fillna(False).astype(bool), "accuracy_change"] >= -1.0).all()
    if neon["outcome"] != "unpruned":  # the check: shown within the user's 4 points
        assert neon["selection"]["lower_bound_points"] >= -4.0
    assert neon["path"]["networks"] <= neon["path_networks"]  # doubling walks at most the path


@pytest.mark.parametrize("tolerance,confidence", [(5.0, 0.5), (1.0, 0.9)])
def test_candidate_first_hands_back_the_candidate_if_it_alone_is_shown_else_what_walking_every_network_does(
        tiny_net, tmp_path, tolerance, confidence):
    got = {}
    for walk in ("candidate", "every", "candidate_first"):  # the same episodes (the run's seed): only the check differs
        cfg, problem = problem_for(tiny_net, tolerance=tolerance, confidence=confidence, walk=walk)
        summary = run_prune(cfg, tmp_path / walk, agent="neon", problem=problem, progress=False, log=lambda m: None)
        got[walk] = summary["neon"]
    assert got["candidate_first"]["walk"] == "candidate_first"
    expected = got["candidate"] if got["candidate"]["outcome"] == "accepted" else got["every"]
    assert got["candidate_first"]["reduction_factor"] == pytest.approx(expected["reduction_factor"])
    assert got["candidate_first"]["outcome"] == expected["outcome"]
    # at τ = 5 the candidate alone is shown (one look); at τ = 1 and 90 % it is not, and walking every
    # network hands back an earlier one of its path (two looks)
    assert (got["candidate"]["outcome"] == "accepted") == (tolerance == 5.0)
    if got["candidate"]["outcome"] != "accepted" and "stopped_at" in got["candidate"]:  # the second look, said so
        assert got["candidate_first"]["reason"].startswith("the candidate alone is not shown within")
        assert "first_look" in got["candidate_first"]


def test_the_printed_line_counts_the_samples_behind_the_bound_and_warns_when_test_breaks_tau():
    """A user read "at least +1.42 pt" (one gained sample of 42) as "better", and a test change of -4.71 pt sat next
    to "accepted" with no word (a new user's report, session 31)."""
    neon = {"tolerance": 1.0, "reduction_factor": 16.9, "outcome": "accepted", "reason": "accepted: ...",
            "accuracy_change_val_points": 1.12, "accuracy_change_test_points": -1.48,
            "selection": {"samples": 42, "gains": 1, "losses": 0, "confidence": 0.7, "accuracy_change_points": 2.38,
                          "lower_bound_points": 1.42}}
    text = describe(neon)
    assert "(42 samples the episodes never saw: the pruned network right where the base was wrong on 1, wrong " \
           "where it was right on 0)" in text
    warning = text.splitlines()[-1]
    assert warning.startswith("neon: warning: on the test split the pruned network is -1.48 pt from the base, "
                              "beyond the tolerance of 1 pt") and "70 % confidence" in warning
    assert "warning" not in describe({**neon, "accuracy_change_test_points": -0.9})
    assert "warning" not in describe({**neon, "accuracy_change_test_points": None})
