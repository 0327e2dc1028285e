"""A level whose search score stays close to chance is named, with what to do (rayprune.search.score_signal)."""

from __future__ import annotations

import doctest
import math

import pytest
from test_search import FakePool, _rows  # the selection tests' fakes

from rayprune.costs.levels import Level
from rayprune.evaluation.score import ScoreSpec
from rayprune.results import CandidateWriter
from rayprune.search import score_signal as module
from rayprune.search.score_signal import WEAK_BELOW, ScoreSignal, chance_and_base, score_signal
from rayprune.search.selection import select_and_finalize


def test_the_modules_doctests_hold():
    assert doctest.testmod(module).failed == 0


def test_retained_is_the_share_of_the_base_margin_over_chance_and_weak_below_the_threshold():
    s = score_signal([0.3125, 0.375, 0.25], chance=0.25, base=0.75)  # binary fractions: exact arithmetic
    assert (s.best, s.median, s.candidates) == (0.375, 0.3125, 3)
    assert s.retained == 0.25 and not s.weak
    assert score_signal([0.1 + 0.8 * WEAK_BELOW - 1e-6], chance=0.1, base=0.9).weak
    assert not score_signal([0.1 + 0.8 * WEAK_BELOW + 1e-6], chance=0.1, base=0.9).weak
    assert score_signal([0.1, 0.2, 0.3, 0.4], chance=0.1, base=0.9).median == pytest.approx(0.25)


def test_no_verdict_without_a_reference_or_finite_scores():
    assert score_signal([0.5], chance=None, base=0.9) is None
    assert score_signal([0.5], chance=0.1, base=None) is None
    assert score_signal([float("nan"), None], chance=0.1, base=0.9) is None
    # a base no better than chance: the share is undefined, and that is not called weak
    s = ScoreSignal(best=0.2, median=0.2, chance=0.5, base=0.5, candidates=1)
    assert math.isnan(s.retained) and not s.weak and s.to_json()["retained"] is None


class _Objective:
    def __init__(self, name="accuracy", custom=False):
        self.metric_name, self.custom_metric = name, custom


class _Data:
    def __init__(self, classes=10, task="classification"):
        self.num_classes, self.task = classes, task


class _Problem:
    def __init__(self, objective=None, data=None, val=0.98):
        self.objective, self.data = objective or _Objective(), data or _Data()
        self.base_accuracy = {"val": val, "test": 0.97}


def test_chance_is_one_over_the_classes_for_the_built_in_accuracy_only():
    assert chance_and_base(_Problem()) == (0.1, 0.98)
    assert chance_and_base(_Problem(data=_Data(classes=4))) == (0.25, 0.98)
    assert chance_and_base(_Problem(objective=_Objective("my:metric", custom=True))) == (None, None)
    assert chance_and_base(_Problem(objective=_Objective("neg_mse"), data=_Data(1, "regression"))) == (None, None)


LEVEL = Level("params=0.1", {"params": 0.1}, {"params": 10.0})


def _select(rows, tmp_path, reference, log, pool=None, weak_finals=1, top_k=2, uniform=None, priors=None):
    pool = pool or FakePool(rerank={"c90": 0.3, "c80": 0.2}, final={"c90": 0.6, "c80": 0.5},
                            costs={"c90": {"params": 9.0}, "c80": {"params": 8.0}})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [LEVEL], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=top_k,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], log=log,
                                reference=reference, weak_finals=weak_finals,
                                priors=priors if priors is not None else {"uniform": uniform} if uniform else None)
    return res


def test_selection_warns_on_a_weak_level_stores_the_signal_and_chooses_as_before(tmp_path):
    rows = _rows([(0.09, 0.16, 9.0, "params=0.1"), (0.08, 0.13, 8.0, "params=0.1")])
    messages: list[str] = []
    res = _select(rows, tmp_path / "weak", (0.1, 0.984), messages.append)
    assert res.candidate_id == "c90"  # the verdict is advice: the same choice as without it
    assert res.search_signal.weak and res.to_json()["search_signal"]["best"] == 0.16
    warning = [m for m in messages if "stays close to chance" in m]
    assert len(warning) == 1 and "params=0.1" in warning[0] and "16.0 %" in warning[0] and "search.score: finetune" in warning[0] and "not resolved" in warning[0]
    # the same rows without a reference: no verdict, no warning, the same model
    quiet: list[str] = []
    plain = _select(rows, tmp_path / "plain", (None, None), quiet.append)
    assert plain.candidate_id == "c90" and plain.search_signal is None
    assert not any("chance" in m for m in quiet) and plain.to_json()["search_signal"] is None


def test_a_level_whose_candidates_keep_their_accuracy_gets_no_warning(tmp_path):
    rows = _rows([(0.09, 0.90, 9.0, "params=0.1"), (0.08, 0.85, 8.0, "params=0.1")])
    messages: list[str] = []
    res = _select(rows, tmp_path, (0.1, 0.98), messages.append)
    assert not res.search_signal.weak and res.search_signal.retained == pytest.approx(0.8 / 0.88)
    assert not any("chance" in m for m in messages)


def test_the_summary_lines_name_only_weak_levels():
    from rayprune.report import weak_score_lines

    state = {"summary": {"levels": [
        {"level": "params=0.5", "search_signal": {"best": 0.8, "chance": 0.1, "base": 0.98, "retained": 0.8, "weak": False}},
        {"level": "params=0.1", "search_signal": {"best": 0.16, "chance": 0.1, "base": 0.98, "retained": 0.07, "weak": True}},
        {"level": "params=0.05", "search_signal": None}]}}
    lines = weak_score_lines(state)
    assert len(lines) == 1 and lines[0].startswith("params=0.1: weak search score (best 16.0 %")
    assert weak_score_lines({}) == []


def test_an_exported_model_near_chance_is_called_out_in_the_sweep_and_prune_summaries():
    """A sweep exported a 4-class model at 28.7 % validation (chance 25 %, base 82.8 %) on its front and exited 0:
    the only sign was the weak-search-score line. The summaries now say the model itself is near chance."""
    from rayprune.report import near_chance_lines
    from rayprune.search.prune import summary_table

    signal = {"best": 0.24, "chance": 0.25, "base": 0.828, "retained": -0.02, "weak": True}
    state = {"summary": {"levels": [
        {"level": "params=0.3", "candidate_id": "a", "accuracy_val": 0.287, "search_signal": signal},
        {"level": "params=0.5", "candidate_id": "b", "accuracy_val": 0.825, "search_signal": signal},
        {"level": "params=0.1", "candidate_id": None, "accuracy_val": None, "search_signal": signal}]}}
    lines = near_chance_lines(state)
    assert len(lines) == 1 and lines[0].startswith("params=0.3: NEAR CHANCE: the exported model scores 28.7 %")
    assert "6 % of the base's margin over chance" in lines[0]
    summary = {"model": "m", "dataset": "d", "agent": "random", "feasible": True, "metric": "accuracy",
               "budgets": {"params": {"value": 0.3, "relative": True, "limit": 9620.0}}, "search_signal": signal,
               "base": {"params": 32000.0, "accuracy_val": 0.828}, "pruned": {"params": 3000.0, "accuracy_val": 0.287}}
    assert "params=0.3: NEAR CHANCE" in summary_table(summary)
    assert "NEAR CHANCE" not in summary_table({**summary, "pruned": {"params": 3000.0, "accuracy_val": 0.80}})
    assert "NEAR CHANCE" not in summary_table({**summary, "metric": "pkg.m:neg_mae"})  # no chance to measure from


def _three_pool():
    # the re-rank prefers c90, then c80, then c70; the final fine-tune prefers c70
    return FakePool(rerank={"c90": 0.30, "c80": 0.25, "c70": 0.20, "c60": 0.10},
                    final={"c90": 0.60, "c80": 0.50, "c70": 0.80, "c60": 0.95},
                    costs={c: {"params": float(c[1:]) / 10} for c in ("c90", "c80", "c70", "c60")})


_FOUR = [(0.09, 0.16, 9.0, "params=0.1"), (0.08, 0.15, 8.0, "params=0.1"), (0.07, 0.14, 7.0, "params=0.1"),
         (0.06, 0.13, 6.0, "params=0.1")]


def test_a_weak_level_finalises_its_best_reranked_candidates_and_takes_the_best_by_validation(tmp_path):
    from rayprune.results import read_candidates

    pool, messages = _three_pool(), []
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), messages.append, pool=pool, weak_finals=3, top_k=4)
    # the re-rank's winner first (its own round), then the next two re-ranked; c60 (4th) gets none
    assert pool.finalized[0] == ["c90"] and sorted(pool.finalized[1]) == ["c70", "c80"] and len(pool.finalized) == 2
    assert res.candidate_id == "c70" and res.accuracy_val == 0.80  # the best final validation accuracy
    assert any("weak level(s) params=0.1" in m and "weak_finals=3" in m for m in messages)
    final = read_candidates(tmp_path)
    final = final[final["stage"] == "final"]
    assert final[final["status"] == "ok"]["candidate_id"].tolist() == ["c70"]
    # the runners-up were fine-tuned too: their numbers are kept, marked as not exported and why
    runners = final[final["status"] == "superseded"].set_index("candidate_id")
    assert sorted(runners.index) == ["c80", "c90"] and runners["accuracy"].notna().all()
    assert all("the model found for params=0.1 (validation 0.8 " in e for e in runners["error"])


def test_an_extra_weak_level_final_over_the_levels_limit_leaves_its_numbers(tmp_path):
    from rayprune.results import read_candidates

    pool = _three_pool()
    pool.costs["c70"] = {"params": 12.0}  # its final model measures over the level's 10
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), lambda m: None, pool=pool, weak_finals=3, top_k=4)
    assert res.candidate_id == "c90"  # the best final that fits
    final = read_candidates(tmp_path)
    final = final[final["stage"] == "final"].set_index("candidate_id")
    assert final.loc["c70", "status"] == "error" and "params 12 > 10" in final.loc["c70", "error"]
    assert final.loc["c70", "accuracy"] == 0.80 and final.loc["c90", "status"] == "ok"


def test_weak_finals_change_nothing_at_a_level_whose_score_is_not_weak_or_without_a_reference(tmp_path):
    informative = [(r, acc + 0.7, p, lvl) for r, acc, p, lvl in _FOUR]  # the same candidates scoring 83-86 %
    for name, rows, reference in (("informative", informative, (0.1, 0.984)), ("no reference", _FOUR, (None, None))):
        pool = _three_pool()
        res = _select(_rows(rows), tmp_path / name.replace(" ", "_"), reference, lambda m: None, pool=pool,
                      weak_finals=3, top_k=4)
        assert pool.finalized == [["c90"]] and res.candidate_id == "c90", name


def _uniform_pool(final_of_uniform):
    pool = _three_pool()
    pool.rerank["c50"], pool.final["c50"], pool.costs["c50"] = 0.05, final_of_uniform, {"params": 5.0}
    return pool


def test_a_weak_levels_uniform_candidate_is_reranked_and_finalised_and_wins_by_validation(tmp_path):
    from rayprune.results import read_candidates
    from rayprune.search.selection import UNIFORM_AGENT

    pool, messages, asked = _uniform_pool(0.99), [], []
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), messages.append, pool=pool, weak_finals=2, top_k=4,
                  uniform=lambda li: asked.append(li) or [0.05])
    assert asked == [0] and pool.reranked[-1] == "c50"  # re-ranked after the shortlist, once
    # the re-rank's winner first, then the next re-ranked and the uniform candidate together
    assert pool.finalized[0] == ["c90"] and sorted(pool.finalized[1]) == ["c50", "c80"] and len(pool.finalized) == 2
    assert res.candidate_id == "c50" and res.accuracy_val == 0.99 and res.found_by == UNIFORM_AGENT
    assert res.rerank_accuracy == 0.05 and res.search_accuracy is None  # never a search row
    rows = read_candidates(tmp_path)
    uniform = rows[rows["agent"] == UNIFORM_AGENT]
    assert uniform["stage"].tolist() == ["rerank", "final"] and uniform["level"].tolist() == ["params=0.1"] * 2
    assert any("uniform candidate" in m and "weak_uniform" in m for m in messages)
    # a worse uniform final changes nothing but its cost: the weak level's own pick stands
    worse = _select(_rows(_FOUR), tmp_path / "worse", (0.1, 0.984), lambda m: None, pool=_uniform_pool(0.1),
                    weak_finals=2, top_k=4, uniform=lambda li: [0.05])
    assert worse.candidate_id == "c90" and worse.found_by == "a"


def test_the_uniform_candidate_is_left_alone_where_the_score_is_informative_or_already_finalised(tmp_path):
    informative = [(r, acc + 0.7, p, lvl) for r, acc, p, lvl in _FOUR]
    pool = _uniform_pool(0.99)
    res = _select(_rows(informative), tmp_path / "informative", (0.1, 0.984), lambda m: None, pool=pool,
                  weak_finals=2, top_k=4, uniform=lambda li: pytest.fail("asked for an informative level"))
    assert pool.finalized == [["c90"]] and res.candidate_id == "c90"
    # the uniform candidate is the re-rank's winner itself: one final, not two
    pool = _uniform_pool(0.99)
    res = _select(_rows(_FOUR), tmp_path / "same", (0.1, 0.984), lambda m: None, pool=pool, weak_finals=1, top_k=4,
                  uniform=lambda li: [0.09])
    assert pool.finalized == [["c90"]] and res.candidate_id == "c90" and res.search_accuracy == 0.16


def test_the_prune_summary_names_a_uniform_winner_and_is_quiet_otherwise():
    from rayprune.search.prune import summary_table
    from rayprune.search.selection import UNIFORM_AGENT

    summary = {"model": "m", "dataset": "d", "agent": "random", "budgets": {}, "feasible": True,
               "base": {"params": 10.0}, "pruned": {"params": 5.0}, "found_by": UNIFORM_AGENT}
    assert f"agent random (the exported model: {UNIFORM_AGENT})" in summary_table(summary)
    for found in ("random", None):
        assert "exported model" not in summary_table({**summary, "found_by": found})


def test_a_uniform_candidate_the_search_shortlisted_keeps_its_own_row_and_an_unaimed_one_is_skipped(tmp_path):
    from rayprune.results import read_candidates
    from rayprune.search.selection import UNIFORM_AGENT

    # c70 is the uniform candidate, shortlisted third by the re-rank; its final validates best (0.80)
    pool = _three_pool()
    res = _select(_rows(_FOUR), tmp_path / "listed", (0.1, 0.984), lambda m: None, pool=pool, weak_finals=1,
                  top_k=4, uniform=lambda li: [0.07])
    assert res.candidate_id == "c70" and res.found_by == "a" and res.search_accuracy == 0.14
    rows = read_candidates(tmp_path / "listed")
    assert (rows["agent"] == UNIFORM_AGENT).sum() == 0 and (rows["stage"] == "rerank").sum() == 4  # no second row
    assert pool.reranked.count("c70") == 1  # and no second re-rank
    # no steering limits to aim at (uniform() gives all ones: the base): nothing is spent on it
    pool = _three_pool()
    res = _select(_rows(_FOUR), tmp_path / "unaimed", (0.1, 0.984), lambda m: None, pool=pool, weak_finals=1,
                  top_k=4, uniform=lambda li: [1.0])
    assert pool.finalized == [["c90"]] and sorted(pool.reranked) == ["c60", "c70", "c80", "c90"]


def test_a_weak_level_whose_reranks_all_failed_but_exports_its_uniform_candidate_reports_no_error(tmp_path):
    pool = _uniform_pool(0.9)
    score = pool.score_batch

    def failing(ratios, spec, seeds=None):  # every shortlisted re-rank fails; the uniform candidate's works
        rows = score(ratios, spec, seeds)
        return [r if r["candidate_id"] == "c50" else {**r, "status": "error", "accuracy": None} for r in rows]

    pool.score_batch = failing
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), lambda m: None, pool=pool, weak_finals=2, top_k=4,
                  uniform=lambda li: [0.05])
    assert res.candidate_id == "c50" and res.error is None and res.to_json()["error"] is None


def test_the_reports_agent_table_names_a_level_won_by_the_weak_levels_uniform_candidate():
    import pandas as pd

    from rayprune.report import agent_table
    from rayprune.search.selection import UNIFORM_AGENT

    rows = pd.DataFrame([
        {"stage": "search", "status": "ok", "agent": "random", "level": LEVEL.name, "accuracy": 0.16, "params": 9.0,
         "candidate_id": "c90"},
        {"stage": "final", "status": "ok", "agent": UNIFORM_AGENT, "level": LEVEL.name, "accuracy": 0.8, "params": 5.0,
         "candidate_id": "c50"}])
    table = agent_table({"setup": {"levels": [LEVEL.to_json()]}}, rows)
    line = next(line for line in table.splitlines() if UNIFORM_AGENT in line)
    assert line.rstrip().endswith(LEVEL.name)  # its "exported" cell
    random_line = next(line for line in table.splitlines() if line.startswith("random"))
    assert random_line.rstrip().endswith("-")  # random found the other candidates, not the exported one


def test_a_weak_levels_global_candidate_competes_with_the_uniform_one_and_the_report_names_its_win(tmp_path):
    import pandas as pd

    from rayprune.report import agent_table
    from rayprune.results import read_candidates
    from rayprune.search.selection import prior_agent

    pool = _uniform_pool(0.90)  # c50: the uniform candidate, final 0.90
    pool.rerank["c40"], pool.final["c40"], pool.costs["c40"] = 0.04, 0.97, {"params": 4.0}  # c40: global, 0.97
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), lambda m: None, pool=pool, weak_finals=1, top_k=4,
                  priors={"uniform": lambda li: [0.05], "global": lambda li: [0.04]})
    assert sorted(pool.finalized[1]) == ["c40", "c50"]  # both finalised after the re-rank's winner
    assert res.candidate_id == "c40" and res.found_by == prior_agent("global") == "global (weak level)"
    rows = read_candidates(tmp_path)
    assert rows[rows["agent"] == prior_agent("global")]["stage"].tolist() == ["rerank", "final"]
    uniform = rows[rows["agent"] == prior_agent("uniform")]
    assert uniform["stage"].tolist() == ["rerank", "final"]  # finalised, not chosen:
    assert uniform["status"].tolist() == ["ok", "superseded"] and uniform["accuracy"].iloc[1] == 0.90
    table = agent_table({"setup": {"levels": [LEVEL.to_json()]}}, pd.concat([_rows(_FOUR), rows], ignore_index=True))
    assert next(x for x in table.splitlines() if "global (weak level)" in x).rstrip().endswith(LEVEL.name)
    assert all("uniform (weak level)" not in x for x in table.splitlines())  # it won nothing


def test_two_structured_candidates_that_are_the_same_candidate_cost_one_rerank_and_one_final(tmp_path):
    from rayprune.results import read_candidates

    pool = _uniform_pool(0.99)
    res = _select(_rows(_FOUR), tmp_path, (0.1, 0.984), lambda m: None, pool=pool, weak_finals=1, top_k=4,
                  priors={"uniform": lambda li: [0.05], "global": lambda li: [0.05]})
    assert pool.reranked.count("c50") == 1 and sum(f.count("c50") for f in pool.finalized) == 1
    assert res.candidate_id == "c50" and res.found_by == "uniform (weak level)"
    rows = read_candidates(tmp_path)
    assert (rows["candidate_id"] == "c50").sum() == 2  # one re-rank row, one final row


def test_weak_level_priors_follow_the_config_and_build_the_space_only_when_asked():
    from rayprune.config.search import RerankConfig
    from rayprune.search.selection import weak_level_priors

    class Space:
        importance = [1.0]

        def uniform(self, li):
            return [0.5]

        def global_candidate(self, li):
            return [0.4]

    built = []

    def space():
        built.append(1)
        return Space()

    assert list(weak_level_priors(RerankConfig(weak_global=False), space)) == ["uniform"]
    both = weak_level_priors(RerankConfig(), space)  # the defaults
    assert list(both) == ["uniform", "global"] and built == []
    assert both["uniform"](0) == [0.5] and both["global"](0) == [0.4] and built
    assert weak_level_priors(RerankConfig(weak_uniform=False, weak_global=False), space) == {}
    Space.importance = None  # a space without importance scores has no global candidate
    assert both["global"](0) is None


def test_two_agents_that_found_the_exported_network_both_get_the_credit_and_a_row_is_named_for_what_it_serves():
    """The selection keeps one row per candidate: the report credits every agent that scored it, and a front
    member found for a level it did not end up meeting is named after the level it serves."""
    import pandas as pd

    from rayprune.costs.levels import Level
    from rayprune.report import agent_table, front_table

    loose, tight = Level("params=0.5", {"params": 0.5}, {"params": 50.0}), LEVEL
    state = {"setup": {"levels": [loose.to_json(), tight.to_json()], "base_costs": {"params": 100.0},
                       "base_accuracy": {"val": 0.9, "test": 0.9}}}
    rows = pd.DataFrame([
        {"stage": "search", "status": "ok", "agent": "random", "level": tight.name, "accuracy": 0.5, "params": 9.0,
         "candidate_id": "shared"},
        {"stage": "search", "status": "ok", "agent": "evolution", "level": tight.name, "accuracy": 0.5, "params": 9.0,
         "candidate_id": "shared"},
        {"stage": "search", "status": "ok", "agent": "evolution", "level": loose.name, "accuracy": 0.4, "params": 40.0,
         "candidate_id": "other"},
        {"stage": "final", "status": "ok", "agent": "evolution", "level": loose.name, "accuracy": 0.8, "params": 40.0,
         "candidate_id": "late", "found_for": tight.name, "export_path": "x"}])
    rows.loc[len(rows)] = {"stage": "final", "status": "ok", "agent": "random", "level": tight.name, "accuracy": 0.85,
                           "params": 9.0, "candidate_id": "shared", "found_for": tight.name, "export_path": "y"}
    table = agent_table(state, rows)
    assert next(x for x in table.splitlines() if x.startswith("random")).rstrip().endswith(tight.name)
    assert next(x for x in table.splitlines() if x.startswith("evolution")).rstrip().endswith(tight.name)
    front = pd.DataFrame([{"candidate_id": "late", "found_for": tight.name, "level": loose.name, "accuracy": 0.8,
                           "accuracy_final": 0.8, "params": 40.0}])
    late = front_table(state, front, rows).splitlines()[-1]
    assert late.startswith("params=0.5 ") and "params=0.1" not in late  # it serves 0.5 only: not named for 0.1


def test_the_metric_direction_warning_is_only_for_a_users_maximised_metric_on_unfine_tuned_scores():
    """Candidates scored after a fine-tune (search.score: finetune) may beat a weak base on a good metric: telling
    that user to set metric_mode: min would make rayprune pick the worst models."""
    from types import SimpleNamespace

    import pandas as pd

    from rayprune.search.score_signal import say_metric_direction

    rows = pd.DataFrame({"stage": ["search"] * 20, "status": ["ok"] * 20, "candidate_id": list("abcdefghijklmnopqrst"),
                         "accuracy": [0.9] * 20})

    def told(score="two_stage", mode="max", custom=True, scored=rows):
        problem = SimpleNamespace(objective=SimpleNamespace(custom_metric=custom, metric_name="p.m:mae"),
                                  config=SimpleNamespace(search=SimpleNamespace(score=score, metric_mode=mode)),
                                  base_accuracy={"val": 0.5})
        lines: list = []
        say_metric_direction(scored, problem, lines.append)
        return lines

    assert len(told()) == 1 and "search.metric_mode: min" in told()[0]
    assert told(score="adaptive_bn")
    assert told(score="finetune") == [] and told(mode="min") == [] and told(custom=False) == []
    assert told(scored=rows.iloc[:10]) == []  # fewer than 16 candidates: too few to say
    assert told(scored=rows.assign(accuracy=[0.9] * 10 + [0.4] * 10)) == []  # half above the base: no sign
