"""The search without Ray: agents through one interface, the loop, scores, and the selection path."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from rayprune.agents import SearchSpace, make_agent
from rayprune.config import parse_config
from rayprune.costs.levels import Level, contains, levels_from_config
from rayprune.engine import recalibrate_batchnorm
from rayprune.evaluation.candidate import CandidateEvaluator
from rayprune.evaluation.local import LocalPool
from rayprune.evaluation.score import ScoreSpec, score_specs
from rayprune.problem import PruningProblem
from rayprune.results import CandidateWriter, read_candidates
from rayprune.search.loop import SearchRun
from rayprune.search.selection import monotone_choice, select_and_finalize

PLAIN_AGENTS = ["uniform", "random", "sequential_random", "evolution", "tpe"]


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    cfg = parse_config({
        "name": "search-tests", "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.5}},
        "data": {"name": "digits", "device": "cpu"}, "pruning": {"min_keep": 0.2},
        "base_training": {"epochs": 2, "batch_size": 64, "cache_dir": str(tmp_path_factory.mktemp("cache"))},
        "costs": {"measure": ["params", "macs"]}, "budgets": {"params": 0.5},
        "search": {"evaluations": 24, "batch_size": 8, "eval_samples": 120, "rerank": {"top_k": 3},
                   "adaptive_bn": {"batches": 2, "batch_size": 32},
                   "finetune": {"iterations": 3, "batch_size": 32}, "final_finetune": {"iterations": 4, "batch_size": 32},
                   "evolution": {"population": 4}, "tpe": {"startup": 4}},
        "sweep": {"budgets": {"params": [0.6, 0.4, 0.25]}},
    })
    return PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")


@pytest.fixture(scope="module")
def levels(problem):
    return levels_from_config(problem.config, problem.base_costs, sweep=True)


def run_search(problem, levels, agent_name, out, *, seed=0, evaluations=24):
    space = SearchSpace.from_problem(problem, levels)
    agent = make_agent(agent_name, space, seed=seed, search=problem.config.search)
    spec, _ = score_specs(problem.config)
    writer = CandidateWriter(out, constants={"stage": "search", "trial_id": agent_name, "agent": agent_name},
                             name=agent_name)
    run = SearchRun(agent, space, LocalPool(problem).score_batch, spec=spec, writer=writer, evaluations=evaluations,
                    seed=seed)
    run.run()
    return run, read_candidates(out)


# -- scores ----------------------------------------------------------------------------------------
def _with_channels_last(problem, setting):
    cfg = problem.config.model_copy(deep=True)
    cfg.evaluation.channels_last = setting
    return dataclasses.replace(problem, config=cfg)


def test_channels_last_forward_passes_score_the_same_and_fine_tunes_and_exports_stay_contiguous(problem, monkeypatch):
    seen = []  # per forward of the first conv: (grad enabled, weight held channels_last)
    build = problem.space.build

    def recording_build(ratios):
        model = build(ratios)
        conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]  # several input channels: the layouts differ
        conv.register_forward_hook(lambda m, i, o: seen.append(
            (torch.is_grad_enabled(), m.weight.is_contiguous(memory_format=torch.channels_last)
             and not m.weight.is_contiguous())))
        return model

    monkeypatch.setattr(problem.space, "build", recording_build)
    g = problem.space.num_groups
    cheap = ScoreSpec.adaptive_bn(bn_batches=2, bn_batch_size=32, eval_samples=120)
    tuned = ScoreSpec.fine_tuned(problem.config.search.finetune.engine_config(), eval_samples=120,
                                 bn_batches=2, bn_batch_size=32)
    rows = {}
    for setting in (False, True):
        ev = CandidateEvaluator(_with_channels_last(problem, setting))
        seen.clear()
        rows[setting] = [ev.score([r] * g, spec) for r in (0.9, 0.5) for spec in (cheap, tuned)]
        passes = list(seen)
        if setting:  # a model with 2-D convolutions: every forward without gradients in channels_last
            assert any(not grad for grad, _ in passes) and all(last for grad, last in passes if not grad)
            assert any(grad for grad, _ in passes) and not any(last for grad, last in passes if grad)
        else:
            assert not any(last for _, last in passes)
        model, summary = ev.finalize([0.5] * g)
        assert all(p.is_contiguous() for p in model.parameters())  # what is exported: the usual layout
    for a, b in zip(rows[False], rows[True]):
        assert a["status"] == b["status"] == "ok" and a["accuracy"] == pytest.approx(b["accuracy"], abs=1e-9)


def test_adaptive_bn_changes_batchnorm_statistics_and_nothing_else(problem):
    model = problem.space.build([0.5] * problem.space.num_groups)
    before = copy.deepcopy(model.state_dict())
    recalibrate_batchnorm(model, problem.data.x_train, batch_size=32, max_batches=2)
    after = model.state_dict()
    bn_stats = {n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    assert changed, "adaptive BN changed nothing"
    assert all(k.rsplit(".", 1)[0] in bn_stats and k.rsplit(".", 1)[1] in ("running_mean", "running_var",
                                                                            "num_batches_tracked") for k in changed)
    assert all(torch.equal(before[k], after[k]) for k in after if k.endswith(("weight", "bias")))


def test_scores_are_rows_with_their_kind_and_one_schema_on_error(problem):
    ev = CandidateEvaluator(problem)
    cheap = ScoreSpec.adaptive_bn(bn_batches=2, bn_batch_size=32, eval_samples=100)
    row = ev.score([0.5] * problem.space.num_groups, cheap)
    assert row["status"] == "ok" and row["score_kind"] == "adaptive_bn" and row["finetune_iterations"] == 0
    assert row["t_bn_s"] > 0 and row["t_finetune_s"] == 0 and 0 <= row["accuracy"] <= 1
    assert ev.score([0.5] * problem.space.num_groups, cheap)["cached"]

    def broken_cost(model, counts):
        raise RuntimeError("user cost exploded")

    ev.costs_with_raw = broken_cost  # e.g. a user cost that raises for some candidates: an error row, not a crash
    bad = ev.score([0.4] * problem.space.num_groups, cheap)
    assert bad["status"] == "error" and bad["accuracy"] is None and "user cost exploded" in bad["error"]
    assert set(bad) == set(row)  # the same columns whatever the status


def test_the_score_cache_keeps_the_newest_rows_only(problem):
    ev = CandidateEvaluator(problem, cache_size=2)
    cheap = ScoreSpec.adaptive_bn(bn_batches=1, bn_batch_size=32, eval_samples=50)
    g = problem.space.num_groups
    for r in (0.9, 0.7, 0.5):
        assert not ev.score([r] * g, cheap)["cached"]
    assert ev.score([0.5] * g, cheap)["cached"] and ev.score([0.7] * g, cheap)["cached"]
    assert not ev.score([0.9] * g, cheap)["cached"]  # the oldest was dropped: scored again
    assert len(ev._cache) == 2


# -- agents ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("agent_name", ["random", "sequential_random", "evolution", "tpe", "uniform"])
def test_every_candidate_meets_the_analytic_budget_of_its_level(problem, levels, agent_name, tmp_path):
    run, rows = run_search(problem, levels, agent_name, tmp_path)
    assert len(rows) == (len(levels) if agent_name == "uniform" else 24)
    assert set(rows["agent"]) == {agent_name}
    by_name = {lvl.name: lvl for lvl in levels}
    for _, r in rows.iterrows():
        limit = by_name[r["level"]].limits["params"]
        assert r["params"] <= limit * (1 + 1e-9) and r["feasible"]
        assert r["params"] >= 0.85 * limit or agent_name == "uniform", (r["level"], r["params"], limit)
    if agent_name != "uniform":  # levels get equal shares, round robin
        assert rows["level"].value_counts().tolist() == [8, 8, 8]


@pytest.mark.parametrize("agent_name", PLAIN_AGENTS)
def test_save_and_restore_continue_the_same_search(problem, levels, agent_name, tmp_path):
    """An agent saved after two batches and restored into a fresh one proposes what the uninterrupted
    one proposes next, given the same outcomes."""
    space = SearchSpace.from_problem(problem, levels)
    search = problem.config.search

    def outcome_for(p):
        from rayprune.agents.base import Outcome

        score = float(np.sum(p.keep_ratios * np.linspace(1, 2, space.num_groups)))  # a fixed fake score
        return Outcome(score=score, costs={"params": space.predict("params", p.keep_ratios)}, feasible=True)

    def step(agent):
        proposals = agent.ask()
        agent.tell(proposals, [outcome_for(p) for p in proposals])
        return [p.keep_ratios for p in proposals]

    straight = make_agent(agent_name, space, seed=3, search=search)
    for _ in range(2):
        step(straight)
    saved = make_agent(agent_name, space, seed=3, search=search)
    for _ in range(2):
        step(saved)
    saved.save(tmp_path)
    state = saved.state_dict()
    import json

    state = json.loads(json.dumps(state))  # checkpoints hold it as JSON
    restored = make_agent(agent_name, space, seed=99, search=search)  # another seed: the state must win
    restored.load_state_dict(state)
    restored.restore(tmp_path)
    for _ in range(2):
        expected, got = step(straight), step(restored)
        assert got == expected


def test_evolution_breeds_from_the_best_after_its_population_fills(problem, levels):
    from rayprune.agents.base import Outcome

    space = SearchSpace.from_problem(problem, levels[:1])
    agent = make_agent("evolution", space, seed=0, search=problem.config.search)
    for _ in range(3):
        proposals = agent.ask()
        agent.tell(proposals, [Outcome(score=float(p.keep_ratios[0]), costs={}, feasible=True) for p in proposals])
    pop = agent.populations[0]
    assert len(pop) == problem.config.search.evolution.population
    assert [s for s, _ in pop] == sorted((s for s, _ in pop), reverse=True)  # elitist: the best kept, in order


def test_evolution_and_random_search_at_the_same_seed_propose_different_candidates(problem, levels):
    """Side by side in one sweep (same seed), evolution's random warm-up must not re-score random search's picks."""
    space = SearchSpace.from_problem(problem, levels)
    evo = make_agent("evolution", space, seed=0, search=problem.config.search)
    rnd = make_agent("random", space, seed=0, search=problem.config.search)
    a, b = evo.ask(), rnd.ask()
    assert len(a) == len(b) > 0
    assert not any(np.allclose(p.keep_ratios, q.keep_ratios) for p in a for q in b)


# -- the loop --------------------------------------------------------------------------------------
def test_the_loop_writes_a_row_per_proposal_and_restores_from_its_checkpoint(problem, levels, tmp_path):
    from rayprune.results import drop_rows_after

    space = SearchSpace.from_problem(problem, levels)
    spec, _ = score_specs(problem.config)
    pool = LocalPool(problem)

    def new_run(out):
        agent = make_agent("random", space, seed=1, search=problem.config.search)
        writer = CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t")
        return SearchRun(agent, space, pool.score_batch, spec=spec, writer=writer, evaluations=24, seed=1)

    run = new_run(tmp_path)
    run.step()
    run.save(tmp_path / "ckpt")
    run.step()  # written, then "lost" with the process: the restart must drop it
    resumed = new_run(tmp_path)
    resumed.restore(tmp_path / "ckpt")
    assert drop_rows_after(tmp_path, "t", resumed.batch) == 8
    resumed.run()
    rows = read_candidates(tmp_path)
    assert len(rows) == 24 and sorted(rows["iteration"].unique()) == [1, 2, 3]
    reference = new_run(tmp_path / "ref")
    reference.run()
    ref = read_candidates(tmp_path / "ref")
    def order(frame):
        return frame.sort_values("iteration", kind="stable")["candidate_id"].tolist()

    assert order(rows) == order(ref)  # the resumed search proposed exactly what an uninterrupted one did


# -- selection -------------------------------------------------------------------------------------
class FakePool:
    """Re-rank scores from a table; finals report the candidate's costs and a table's accuracy."""

    def __init__(self, rerank: dict, final: dict, costs: dict, fail=()) -> None:
        self.rerank, self.final, self.costs, self.fail = rerank, final, costs, set(fail)
        self.reranked: list[str] = []
        self.finalized: list[list[str]] = []

    def score_batch(self, ratios, spec, seeds=None):
        rows = []
        for r in ratios:
            cid = _cid(r)
            self.reranked.append(cid)
            rows.append({"candidate_id": cid, "status": "ok", "accuracy": self.rerank[cid], "keep_ratios": list(r),
                         "keep_counts": [int(100 * r[0])], **self.costs.get(cid, {})})
        return rows

    def finalize_many(self, jobs):
        from pathlib import Path

        out = []
        self.finalized.append([_cid(job["keep_ratios"]) for job in jobs])
        for job in jobs:
            cid = _cid(job["keep_ratios"])
            if cid in self.fail:
                out.append({"status": "error", "error": "FloatingPointError: The fine-tuning loss became nan"})
                continue
            Path(job["export_dir"]).mkdir(parents=True)
            (Path(job["export_dir"]) / "id.txt").write_text(cid)
            out.append({"status": "ok", "candidate_id": cid, "accuracy_val": self.final[cid], "accuracy_test": 0.5,
                        "export_path": job["export_dir"], "wall_start": 100.0, "wall_end": 112.5,
                        "finetune_iterations": 7, **self.costs[cid]})
        return out


def _cid(ratios):
    return f"c{int(round(1000 * ratios[0]))}"


def _rows(cands):
    return pd.DataFrame([{"candidate_id": _cid([r]), "keep_ratios": [r], "keep_counts": [int(100 * r)],
                          "status": "ok", "stage": "search", "accuracy": acc, "params": params, "agent": "a",
                          "level": lvl} for r, acc, params, lvl in cands])


SMALL = Level("params=0.1", {"params": 0.1}, {"params": 10.0})
LARGE = Level("params=0.5", {"params": 0.5}, {"params": 50.0})


def test_rerank_picks_the_best_reranked_candidate_not_the_best_cheap_one(tmp_path):
    rows = _rows([(0.40, 0.90, 40.0, "params=0.5"), (0.30, 0.80, 30.0, "params=0.5"), (0.20, 0.70, 20.0, "params=0.5")])
    pool = FakePool(rerank={"c400": 0.5, "c300": 0.9, "c200": 0.6}, final={"c300": 0.95},
                    costs={"c300": {"params": 30.0}})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [LARGE], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=3,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], log=lambda m: None)
    assert sorted(pool.reranked) == ["c200", "c300", "c400"]
    assert res.candidate_id == "c300" and res.rerank_accuracy == 0.9 and res.search_accuracy == 0.8
    assert (tmp_path / "models" / "params=0.5" / "id.txt").read_text() == "c300"
    final = read_candidates(tmp_path)
    assert final[final["stage"] == "final"]["candidate_id"].tolist() == ["c300"]


def test_a_level_nothing_fits_says_how_close_the_candidates_came(tmp_path):
    rows = _rows([(0.40, 0.90, 40.0, "params=0.5"), (0.30, 0.80, 30.0, "params=0.5")])
    pool = FakePool(rerank={}, final={}, costs={})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [SMALL], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=3,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], log=lambda m: None)
    assert res.candidate_id is None and res.error.startswith("no scored candidate fits this level")
    assert "of 2 scored candidates, 2 distinct, the smallest params was 30 against a limit of 10" in res.error
    assert "more evaluations" in res.error and "proxy" not in res.error  # params is analytic: nothing to learn
    from rayprune.search.selection import _closest

    timed = rows.assign(latency_ms=[0.5, 0.4], candidate_id=["a", "a"])
    level = Level("latency_ms=0.2", {"latency_ms": 0.2}, {"latency_ms": 0.2})
    message = _closest(timed, level)  # a measured cost: what lets the search aim at it, and how few were distinct
    assert "1 distinct" in message and "search.pipeline: false" in message and "smaller search.batch_size" in message


def test_reranks_and_finals_are_handed_out_largest_first_and_each_candidate_keeps_its_seed(tmp_path):
    """Longest first, so that fine-tunes of different lengths end together on the pool; the order
    changes nothing else (the seeds follow the candidates, the winners are the same)."""
    rows = _rows([(0.20, 0.90, 20.0, "params=0.5"), (0.40, 0.80, 40.0, "params=0.5"), (0.30, 0.70, 30.0, "params=0.5"),
                  (0.08, 0.60, 8.0, "params=0.1")])

    class SeededPool(FakePool):
        seeds: dict = {}

        def score_batch(self, ratios, spec, seeds=None):
            self.seeds.update({_cid(r): s for r, s in zip(ratios, seeds)})
            return super().score_batch(ratios, spec, seeds)

    pool = SeededPool(rerank={"c200": 0.7, "c400": 0.6, "c300": 0.5, "c80": 0.4}, final={"c200": 0.9, "c80": 0.8},
                      costs={"c200": {"params": 20.0}, "c80": {"params": 8.0}})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    small, large = select_and_finalize(rows, [SMALL, LARGE], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=3,
                                       writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], seed=2,
                                       log=lambda m: None)
    assert pool.reranked == ["c400", "c300", "c200", "c80"]
    # seeds as numbered by the shortlists (the small level's first, then the large level's by search score)
    assert pool.seeds == {"c80": 2 * 7919, "c200": 2 * 7919 + 1, "c400": 2 * 7919 + 2, "c300": 2 * 7919 + 3}
    assert pool.finalized == [["c200", "c80"]]  # the large level's winner first, though listed second
    assert (small.candidate_id, large.candidate_id) == ("c80", "c200")


def test_a_failed_final_falls_back_to_the_next_reranked_candidate_and_is_kept_as_an_error_row(tmp_path):
    from rayprune.results import exported_rows

    rows = _rows([(0.40, 0.90, 40.0, "params=0.5"), (0.30, 0.80, 30.0, "params=0.5"), (0.20, 0.70, 20.0, "params=0.5")])
    pool = FakePool(rerank={"c400": 0.5, "c300": 0.9, "c200": 0.6}, final={"c200": 0.93},
                    costs={"c200": {"params": 20.0}}, fail={"c300"})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [LARGE], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=3,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], log=lambda m: None)
    assert pool.finalized == [["c300"], ["c200"]]  # the re-rank winner first, then the runner-up
    assert res.candidate_id == "c200" and (tmp_path / "models" / "params=0.5" / "id.txt").read_text() == "c200"
    final = read_candidates(tmp_path)
    final = final[final["stage"] == "final"]
    assert final.set_index("candidate_id")["status"].to_dict() == {"c300": "error", "c200": "ok"}
    assert "nan" in final.set_index("candidate_id").loc["c300", "error"]
    assert exported_rows(final)["candidate_id"].tolist() == ["c200"]
    # the exported row describes the final fine-tune, not the search score it was copied from
    exported = exported_rows(final).iloc[0]
    assert exported["score_kind"] == "final" and exported["score_key"] == "final:it=7"
    assert exported["t_total_s"] == 12.5


def test_final_latencies_are_measured_again_one_at_a_time_before_the_levels_choose(tmp_path):
    """The finals run in parallel, so their latencies were measured while other finals trained; a
    latency budget decides on the numbers measured again with nothing else running."""
    rows = _rows([(0.40, 0.90, 40.0, "lat"), (0.30, 0.80, 30.0, "lat")])
    rows["latency_ms"] = [1.0, 1.0]

    class TimedPool(FakePool):
        measured: list = []

        def measure_sequentially(self, ratios, names):
            self.measured.append((len(ratios), list(names)))
            if len(self.measured) == 1:  # the shortlist's check: both fit
                return [{"latency_ms": 1.9} for r in ratios]
            return [{"latency_ms": 3.0 if _cid(r) == "c400" else 1.5,  # c400 is slow, alone
                     "latency_ms_measured": 3.6 if _cid(r) == "c400" else 1.8, "latency_ms_base": 2.4} for r in ratios]

    level = Level("lat", {"latency_ms": 2.0}, {"latency_ms": 2.0})
    pool = TimedPool(rerank={"c400": 0.9, "c300": 0.8}, final={"c400": 0.95, "c300": 0.90},
                     costs={"c400": {"latency_ms": 1.2}, "c300": {"latency_ms": 1.1, "latency_ms_measured": 0.9,
                                                                   "latency_ms_base": 1.6}})  # noisy, during the finals
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [level], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=2,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["latency_ms"],
                                log=lambda m: None)
    assert pool.finalized == [["c400"], ["c300"]]  # the re-rank winner, over budget alone: the next one
    # the shortlist's check, then after each round of finals, one at a time
    assert pool.measured == [(2, ["latency_ms"]), (1, ["latency_ms"]), (1, ["latency_ms"])]
    assert res.candidate_id == "c300" and res.costs["latency_ms"] == 1.5
    final = read_candidates(tmp_path)
    final = final[final["stage"] == "final"]
    assert final.set_index("candidate_id")["status"].to_dict() == {"c400": "error", "c300": "ok"}
    over = final.set_index("candidate_id").loc["c400"]  # fine-tuned, then over the limit: kept with its numbers
    assert over["latency_ms"] == 3.0 and not over["feasible"] and "latency_ms 3 > 2" in over["error"]
    # the final's own numbers, not the search row's: its score kind, time and the raw medians of its re-timing
    assert over["score_kind"] == "final" and over["accuracy"] == 0.95 and over["t_total_s"] == 12.5
    assert over["latency_ms_measured"] == 3.6 and over["latency_ms_base"] == 2.4
    final = final[final["status"] == "ok"]
    assert final["latency_ms"].tolist() == [1.5]
    # the raw medians behind the paired value are the re-measured ones too, not the finals' noisy ones
    assert final["latency_ms_measured"].tolist() == [1.8] and final["latency_ms_base"].tolist() == [2.4]


def test_shortlisted_candidates_over_a_latency_limit_when_measured_alone_give_their_place_before_any_fine_tune(tmp_path):
    """The search timed its candidates while other evaluators trained; the best-scoring ones sit on
    the limit. Measured again alone, the two best are over it: the third takes the shortlist."""
    rows = _rows([(0.40, 0.90, 40.0, "lat"), (0.30, 0.85, 30.0, "lat"), (0.20, 0.80, 20.0, "lat"),
                  (0.10, 0.70, 10.0, "lat")])
    rows["latency_ms"] = [1.9, 1.9, 1.8, 1.0]
    alone = {"c400": 3.0, "c300": 2.5, "c200": 1.5, "c100": 1.0}

    class TimedPool(FakePool):
        measured: list = []

        def measure_sequentially(self, ratios, names):
            self.measured.append([_cid(r) for r in ratios])
            return [{"latency_ms": alone[_cid(r)]} for r in ratios]

    level = Level("lat", {"latency_ms": 2.0}, {"latency_ms": 2.0})
    pool = TimedPool(rerank={"c200": 0.9, "c100": 0.8}, final={"c200": 0.95, "c100": 0.9},
                     costs={"c200": {"latency_ms": 1.5}, "c100": {"latency_ms": 1.0}})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    logs = []
    [res] = select_and_finalize(rows, [level], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=2,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["latency_ms"], log=logs.append)
    assert pool.measured[:2] == [["c400", "c300"], ["c200", "c100"]]  # the top 2, then the next 2 for the lost places
    assert sorted(pool.reranked) == ["c100", "c200"]  # no re-rank spent on c400 and c300
    assert pool.finalized == [["c200"]] and res.candidate_id == "c200" and res.costs["latency_ms"] == 1.5
    assert any("2 over their level's limit gave their place" in m for m in logs)


def test_a_level_whose_every_shortlisted_candidate_is_over_its_latency_limit_alone_says_so(tmp_path):
    rows = _rows([(0.40, 0.90, 40.0, "lat"), (0.30, 0.85, 30.0, "lat")])
    rows["latency_ms"] = [1.9, 1.9]

    class TimedPool(FakePool):
        def measure_sequentially(self, ratios, names):
            return [{"latency_ms": 2.5} for _ in ratios]

    level = Level("lat", {"latency_ms": 2.0}, {"latency_ms": 2.0})
    pool = TimedPool(rerank={}, final={}, costs={})
    [res] = select_and_finalize(rows, [level], pool=pool, out_dir=tmp_path, rerank_spec=None, top_k=2,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["latency_ms"],
                                log=lambda m: None)
    assert res.candidate_id is None and pool.finalized == []
    assert "latency_ms is measured again one at a time (2 of its best tried" in res.error
    assert "the smallest latency_ms measured alone was 2.5 against a limit of 2" in res.error


def test_a_level_whose_every_final_model_is_over_its_latency_limit_says_by_how_much(tmp_path):
    """The shortlist fit when timed alone, the fine-tuned models do not: the level names their numbers and
    the re-rank rows say whether they fit the level (they were timed under load, during the re-rank)."""
    rows = _rows([(0.40, 0.90, 40.0, "lat"), (0.30, 0.85, 30.0, "lat")])
    rows["latency_ms"] = [1.9, 1.9]

    class TimedPool(FakePool):
        calls = 0

        def measure_sequentially(self, ratios, names):
            TimedPool.calls += 1
            return [{"latency_ms": 1.9 if TimedPool.calls == 1 else 2.5} for _ in ratios]

    level = Level("lat", {"latency_ms": 2.0}, {"latency_ms": 2.0})
    pool = TimedPool(rerank={"c400": 0.9, "c300": 0.8}, final={"c400": 0.95, "c300": 0.9},
                     costs={"c400": {"latency_ms": 2.2}, "c300": {"latency_ms": 1.8}})
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [level], pool=pool, out_dir=tmp_path, rerank_spec=spec, top_k=2,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["latency_ms"],
                                log=lambda m: None)
    assert res.candidate_id is None and pool.finalized == [["c400"], ["c300"]]
    assert "2 final model(s) measured over its limits when re-timed alone" in res.error
    assert "c400: latency_ms 2.5 > 2; c300: latency_ms 2.5 > 2" in res.error
    rows = read_candidates(tmp_path)
    final = rows[rows["stage"] == "final"]
    assert sorted(final["candidate_id"]) == ["c300", "c400"] and set(final["status"]) == {"error"}
    rerank = rows[rows["stage"] == "rerank"].set_index("candidate_id")["feasible"].to_dict()
    assert rerank == {"c400": False, "c300": True}


def test_a_level_whose_every_final_fails_says_so_with_the_cause(tmp_path):
    rows = _rows([(0.40, 0.90, 40.0, "params=0.5"), (0.30, 0.80, 30.0, "params=0.5")])
    pool = FakePool(rerank={}, final={}, costs={}, fail={"c400", "c300"})
    [res] = select_and_finalize(rows, [LARGE], pool=pool, out_dir=tmp_path, rerank_spec=None, top_k=2,
                                writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"], log=lambda m: None)
    assert res.candidate_id is None and pool.finalized == [["c400"], ["c300"]]  # search order without a re-rank
    assert "failed for all 2 candidate(s)" in res.error and "search.final_finetune" in res.error and "nan" in res.error


def test_a_candidate_found_under_a_small_level_serves_a_larger_one_and_the_front_is_monotone(tmp_path):
    # the small level's candidate (params 9) ends more accurate than the large level's own winner
    rows = _rows([(0.09, 0.70, 9.0, "params=0.1"), (0.45, 0.75, 45.0, "params=0.5")])
    pool = FakePool(rerank={}, final={"c90": 0.93, "c450": 0.91}, costs={"c90": {"params": 9.0}, "c450": {"params": 45.0}})
    small, large = select_and_finalize(rows, [SMALL, LARGE], pool=pool, out_dir=tmp_path, rerank_spec=None, top_k=1,
                                       writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"],
                                       log=lambda m: None)
    assert small.candidate_id == "c90" and small.found_for == "params=0.1"
    assert large.candidate_id == "c90" and large.found_for == "params=0.1"  # the smaller level's model
    assert (tmp_path / "models" / "params=0.5" / "id.txt").read_text() == "c90"
    assert contains(LARGE, SMALL) and large.accuracy_val >= small.accuracy_val
    assert large.candidates == 2 and small.candidates == 1  # the store: both candidates fit the large level


def test_a_levels_candidate_count_counts_each_network_once(tmp_path):
    """summary.levels[].candidates counted rows, a cached repeat (or two agents finding one network) again: 270
    where 209 distinct candidates fit (a new user's crl/random/evolution sweep). Docs: "the distinct scored
    candidates that fit the level"."""
    rows = _rows([(0.09, 0.70, 9.0, "params=0.1"), (0.45, 0.75, 45.0, "params=0.5")])
    rows = pd.concat([rows, rows.iloc[[0, 0]].assign(agent="b")], ignore_index=True)  # c90 three times
    pool = FakePool(rerank={}, final={"c90": 0.93, "c450": 0.91}, costs={"c90": {"params": 9.0}, "c450": {"params": 45.0}})
    small, large = select_and_finalize(rows, [SMALL, LARGE], pool=pool, out_dir=tmp_path, rerank_spec=None, top_k=1,
                                       writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"],
                                       log=lambda m: None)
    assert (small.candidates, large.candidates) == (1, 2)


def test_monotone_choice_never_gives_a_larger_level_a_worse_model():
    rng = np.random.default_rng(0)
    levels = [Level(f"p={v}", {"p": v}, {"p": 100 * v}) for v in (0.1, 0.2, 0.4, 0.8)]
    for _ in range(50):
        finals = [{"p": float(rng.uniform(0, 80)), "accuracy_val": float(rng.uniform())} for _ in range(6)]
        choice = monotone_choice(levels, finals)
        accs = [None if c is None else finals[c]["accuracy_val"] for c in choice]
        known = [a for a in accs if a is not None]
        assert known == sorted(known)  # levels ascending: accuracy never drops
        for lvl, c in zip(levels, choice):
            if c is not None:
                assert finals[c]["p"] <= lvl.limits["p"]


def test_the_whole_path_on_a_real_model_exports_a_loadable_model_per_level(problem, levels, tmp_path):
    from rayprune.pruning import load_pruned

    run, rows = run_search(problem, levels, "random", tmp_path)
    _, rerank = score_specs(problem.config)
    results = select_and_finalize(rows, levels, pool=LocalPool(problem), out_dir=tmp_path, rerank_spec=rerank, top_k=3,
                                  writer=CandidateWriter(tmp_path, constants={"trial_id": "selection"}, name="sel"),
                                  cost_names=list(problem.costs), log=lambda m: None)
    accs = [r.accuracy_val for r in results]
    for res in results:
        assert res.feasible and res.export_path
        model = load_pruned(res.export_path)
        assert sum(p.numel() for p in model.parameters()) <= res.level.limits["params"]
        from rayprune.pruning import read_spec  # how to prepare a raw input travels with the model

        assert read_spec(res.export_path)["preprocessing"]["mean"] == list(problem.data.mean)
    # levels are 0.6, 0.4, 0.25: accuracy never rises as the budget shrinks
    assert accs[0] >= accs[1] >= accs[2]
    staged = read_candidates(tmp_path)
    assert (staged["stage"] == "rerank").sum() >= 3
    finals = staged[staged["stage"] == "final"]
    assert (finals["status"] == "ok").sum() == 3  # one exported model per level; a level's own final served by a
    # smaller level's model stays as a superseded row, as good as or worse than the model that serves its level
    exported = finals[finals["status"] == "ok"].set_index("level")["accuracy"]
    for _, row in finals[finals["status"] == "superseded"].iterrows():
        assert row["accuracy"] <= exported[row["level"]]



def test_a_weak_levels_structured_candidates_are_scored_finalised_and_exported_on_a_real_model(problem, levels, tmp_path):
    """The product's pool rows carry what a uniform or global candidate's final and export need (counts, costs)."""
    from rayprune.pruning import load_pruned
    from rayprune.search.selection import UNIFORM_AGENT, prior_agent

    tight = levels[-1:]  # params=0.25
    _, rows = run_search(problem, tight, "random", tmp_path, evaluations=8)
    space = SearchSpace.from_problem(problem, tight)
    _, rerank = score_specs(problem.config)
    pool, finalised = LocalPool(problem), []
    finalize_many = pool.finalize_many
    pool.finalize_many = lambda jobs: (finalised.extend(j["keep_ratios"] for j in jobs), finalize_many(jobs))[1]
    # a reference base of 10 (1,000 %): every score keeps under a quarter of the margin over chance, so weak
    [res] = select_and_finalize(rows, tight, pool=pool, out_dir=tmp_path, rerank_spec=rerank, top_k=2,
                                writer=CandidateWriter(tmp_path, constants={"trial_id": "selection"}, name="sel"),
                                cost_names=list(problem.costs), log=lambda m: None, reference=(0.0, 10.0),
                                weak_finals=1, priors={"uniform": space.uniform, "global": space.global_candidate})
    assert res.search_signal.weak and res.feasible
    staged = read_candidates(tmp_path)
    assert space.uniform(0) != space.global_candidate(0)
    for agent, ratios in ((UNIFORM_AGENT, space.uniform(0)), (prior_agent("global"), space.global_candidate(0))):
        mine = staged[staged["agent"] == agent]
        assert mine["stage"].tolist()[0] == "rerank" and mine["status"].tolist()[0] == "ok"
        assert list(mine["keep_ratios"].iloc[0]) == ratios
        assert mine["params"].iloc[0] <= tight[0].limits["params"]
        assert ratios in finalised
    assert len(finalised) == 3  # the re-rank's winner, then the uniform and the global candidates
    finals = staged[(staged["stage"] == "final") & (staged["status"] == "ok")]
    assert len(finals) == 1  # one exported model for the level: the best final by validation
    superseded = staged[staged["status"] == "superseded"]  # the two others, with their numbers, not exported
    assert len(superseded) == 2 and superseded["accuracy"].notna().all() and superseded["export_path"].isna().all()
    assert (res.found_by == UNIFORM_AGENT) == (list(finals["keep_ratios"].iloc[0]) == space.uniform(0))
    model = load_pruned(res.export_path)
    assert sum(p.numel() for p in model.parameters()) <= tight[0].limits["params"]


# -- overlapping batches ---------------------------------------------------------------------------
class DeferredPool:
    """``submit_batch`` that scores only when the result is read, logging submits, reads, asks and tells."""

    def __init__(self, problem, events: list) -> None:
        self.local, self.events = LocalPool(problem), events

    def submit_batch(self, ratios, spec, seeds):
        self.events.append(("submit", len(ratios)))
        pool, events = self.local, self.events

        class Handle:
            def result(self):
                events.append(("read", len(ratios)))
                return pool.score_batch(ratios, spec, seeds)

        return Handle()


def _logged(agent, events):
    ask, tell = agent.ask, agent.tell
    agent.ask = lambda n=None: (events.append(("ask", n)), ask(n))[1]
    agent.tell = lambda p, o: (events.append(("tell", len(p))), tell(p, o))[1]
    return agent


def test_pipelined_batches_submit_the_next_before_the_last_is_told_and_resume_exactly(problem, levels, tmp_path):
    from rayprune.results import drop_rows_after

    space = SearchSpace.from_problem(problem, levels)
    spec, _ = score_specs(problem.config)

    def new_run(out, events, submit=True):
        agent = _logged(make_agent("random", space, seed=1, search=problem.config.search), events)
        writer = CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t")
        pool = DeferredPool(problem, events)
        return SearchRun(agent, space, pool.local.score_batch, submit=pool.submit_batch if submit else None,
                         spec=spec, writer=writer, evaluations=24, seed=1)

    events: list = []
    run = new_run(tmp_path / "a", events)
    assert run.pipelined
    run.run()
    kinds = [e[0] for e in events]
    # batch 2 is asked for and submitted before batch 1 is read and told; 3 after 2 ... and nothing past 24
    assert kinds == ["ask", "submit", "ask", "submit", "read", "tell", "ask", "submit", "read", "tell", "read", "tell"]
    assert [e[1] for e in events if e[0] == "ask"] == [24, 16, 8]  # what is left, counting the batch in flight
    rows = read_candidates(tmp_path / "a")
    assert len(rows) == 24 and rows["row_id"].is_unique and sorted(rows["iteration"].unique()) == [1, 2, 3]

    # a checkpoint drains the batch in flight; a restart from it proposes what the uninterrupted run did
    events2: list = []
    run2 = new_run(tmp_path / "b", events2)
    run2.step()
    with pytest.raises(RuntimeError, match="drain"):
        run2.save(tmp_path / "ckpt")
    assert run2.drain()["evaluations"] == 16 and run2.drain() is None
    run2.save(tmp_path / "ckpt")
    run2.step()  # written, then "lost" with the process
    resumed = new_run(tmp_path / "b", [])
    resumed.restore(tmp_path / "ckpt")
    assert drop_rows_after(tmp_path / "b", "t", resumed.batch) == 8
    resumed.run()
    b = read_candidates(tmp_path / "b")

    def order(frame):
        return frame.sort_values("iteration", kind="stable")["candidate_id"].tolist()

    assert len(b) == 24 and order(b) == order(rows)
    # the same search without overlap proposes the same candidates (random needs no outcomes)
    plain = new_run(tmp_path / "c", [], submit=False)
    assert not plain.pipelined
    plain.run()
    assert order(read_candidates(tmp_path / "c")) == order(rows)


def test_an_agent_that_needs_the_last_outcomes_is_never_pipelined(problem, levels, tmp_path):
    space = SearchSpace.from_problem(problem, levels)
    spec, _ = score_specs(problem.config)
    agent = make_agent("random", space, seed=1, search=problem.config.search)
    agent.pipelined = False  # as crl: its next episodes come from the policy the last batch updated
    events: list = []
    pool = DeferredPool(problem, events)
    run = SearchRun(_logged(agent, events), space, pool.local.score_batch, submit=pool.submit_batch, spec=spec,
                    writer=CandidateWriter(tmp_path, constants={"stage": "search"}, name="t"), evaluations=16)
    run.run()
    assert [e[0] for e in events] == ["ask", "tell", "ask", "tell"]  # scored through score(), one at a time


@pytest.mark.parametrize("agent_name", ["evolution", "tpe"])
def test_an_overlapping_search_proposes_the_same_however_often_it_is_checkpointed(problem, levels, agent_name,
                                                                                    tmp_path):
    """Agents that learn from outcomes (evolution, tpe) under overlapping batches: a drain for a
    checkpoint (a sweep trial's, every checkpoint_seconds) must not change what is proposed next, and a
    restart from a drained checkpoint proposes what the uninterrupted run did."""
    space = SearchSpace.from_problem(problem, levels)
    spec, _ = score_specs(problem.config)
    search = problem.config.search.model_copy(update={"batch_size": 6})

    def new_run(out):
        pool = DeferredPool(problem, [])
        agent = make_agent(agent_name, space, seed=2, search=search)
        writer = CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t")
        return SearchRun(agent, space, pool.local.score_batch, submit=pool.submit_batch, spec=spec, writer=writer,
                         evaluations=36, seed=2)

    def order(out):
        return read_candidates(out).sort_values("iteration", kind="stable")["candidate_id"].tolist()

    straight = new_run(tmp_path / "a")
    straight.run()
    drained = new_run(tmp_path / "b")
    for k in range(3):
        drained.step()
        if k in (1, 2):
            drained.drain()
    while not drained.done:
        drained.step()
    resumed = new_run(tmp_path / "c")
    resumed.step()
    resumed.drain()
    resumed.save(tmp_path / "ckpt")
    again = new_run(tmp_path / "c")
    again.restore(tmp_path / "ckpt")
    again.run()
    assert order(tmp_path / "b") == order(tmp_path / "a")
    assert order(tmp_path / "c") == order(tmp_path / "a")


def test_an_agent_that_never_leaves_its_random_warmup_says_so(problem, levels):
    import doctest

    from rayprune.agents import registry

    assert doctest.testmod(registry).failed == 0
    space = SearchSpace.from_problem(problem, levels)  # three levels
    messages: list[str] = []
    search = problem.config.search.model_copy(update={"evaluations": 24})
    make_agent("evolution", space, seed=0, search=search, log=messages.append)  # 8 per level, population 4
    assert not messages
    few = search.model_copy(update={"evaluations": 9})  # 3 per level
    make_agent("evolution", space, seed=0, search=few, log=messages.append)
    make_agent("random", space, seed=0, search=few, log=messages.append)
    assert len(messages) == 1 and "search.evolution.population (4)" in messages[0]


def test_the_sweeps_uniform_candidates_are_the_search_spaces_fitted_on_the_sweeps_rows(problem, levels, tmp_path):
    from rayprune.sweeps.driver import _priors_of

    _, rows = run_search(problem, levels, "random", tmp_path, evaluations=8)
    priors = _priors_of(problem, levels, problem.config, rows[rows["stage"] == "search"])
    space = SearchSpace.from_problem(problem, levels)
    assert [priors["uniform"](i) for i in range(len(levels))] == [space.uniform(i) for i in range(len(levels))]
    off = problem.config.model_copy(deep=True)
    off.search.rerank.weak_uniform = False
    off.search.rerank.weak_global = False
    assert _priors_of(problem, levels, off, rows) == {}
    global_ = priors["global"]
    assert [global_(i) for i in range(len(levels))] == [space.global_candidate(i) for i in range(len(levels))]


def test_the_progress_line_says_when_many_proposals_repeat_candidates_already_scored():
    from types import SimpleNamespace

    from rayprune.search.loop import SearchRun

    run = SimpleNamespace(agent=SimpleNamespace(name="random"), evaluations=64, best=[0.9],
                          space=SimpleNamespace(levels=[Level("params=0.3", {"params": 0.3}, {"params": 3.0})]))
    line = SearchRun.describe(run, {"iteration": 4, "evaluations": 64, "evals_per_s": 100.0, "repeats": 36})
    assert "36 of them repeated a candidate already scored" in line
    assert "repeated" not in SearchRun.describe(run, {"iteration": 4, "evaluations": 64, "evals_per_s": 1.0,
                                                      "repeats": 3})
    # crl completes its last round of episodes: "48/40 scored" read like a bug
    crl = SimpleNamespace(**{**vars(run), "agent": SimpleNamespace(name="crl"), "evaluations": 40})
    line = SearchRun.describe(crl, {"iteration": 3, "evaluations": 48, "evals_per_s": 1.0, "repeats": 0})
    assert "48 scored (search.evaluations is 40: crl finishes its last round of episodes)" in line and "48/40" not in line


def test_a_black_box_budget_is_measured_once_before_batches_overlap_and_checkpoints_keep_the_order(problem, tmp_path):
    """With no measurement of a timed budget yet, the second batch waits for the first one's rows (it would aim on
    the same guess); then batches overlap. A checkpoint in the blind phase proposes what the run without one did."""
    from rayprune.costs.budget import Budget
    from rayprune.results import drop_rows_after

    cfg = problem.config.model_copy(update={"costs": problem.config.costs.model_copy(
        update={"measure": ["params", "macs", "peak_memory_mb"]})})
    timed = PruningProblem.from_parts(cfg, problem.data, problem.base_model, problem.base_info,
                                      device=problem.device, base_accuracy=problem.base_accuracy)
    level = [Level.from_budgets([Budget("peak_memory_mb", 0.9, True)], timed.base_costs)]
    spec, _ = score_specs(cfg)

    def new_run(out, events):
        space = SearchSpace.from_problem(timed, level)
        assert space.aiming_blind
        agent = _logged(make_agent("random", space, seed=1, search=cfg.search), events)
        pool = DeferredPool(timed, events)
        return SearchRun(agent, space, pool.local.score_batch, submit=pool.submit_batch, spec=spec, evaluations=24,
                         writer=CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t"), seed=1)

    events: list = []
    run = new_run(tmp_path / "a", events)
    run.run()
    assert [e[0] for e in events] == ["ask", "submit", "read", "tell",  # blind: measured before the next is asked
                                      "ask", "submit", "ask", "submit", "read", "tell", "read", "tell"]
    assert not run.space.aiming_blind
    rows = read_candidates(tmp_path / "a")
    interrupted = new_run(tmp_path / "b", [])
    interrupted.step(launch_next=False)  # a checkpoint right after the blind batch
    interrupted.save(tmp_path / "ckpt")
    resumed = new_run(tmp_path / "b", [])
    resumed.restore(tmp_path / "ckpt")
    assert drop_rows_after(tmp_path / "b", "t", resumed.batch) == 0
    resumed.run()

    def order(frame):
        return frame.sort_values("iteration", kind="stable")["candidate_id"].tolist()

    assert order(read_candidates(tmp_path / "b")) == order(rows)


def test_failed_candidates_count_one_error_whose_numbers_differ_as_one():
    """'7 of them: ... no entry for 20784 params' when all 32 failed for that reason, each with its own count."""
    import doctest

    import pandas as pd

    import rayprune.search.prune as module
    from rayprune.results import failed_candidates

    rows = pd.DataFrame({"status": ["error"] * 4 + ["ok"],
                         "error": [f"CostFunctionError: no entry for {n} params\ntrace" for n in (20784, 19000, 2.5e4)]
                         + ["KeyError: b", None]})
    assert failed_candidates(rows) == {"count": 4, "of": 5, "message": "CostFunctionError: no entry for 20784 params",
                                       "with_message": 3}
    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_a_level_whose_every_rerank_failed_says_why(tmp_path):
    """'every re-ranked candidate failed' was all a user saw when their loss was not a scalar or diverged at the
    fine-tune's lr; the reason sat in candidates.parquet."""

    class FailingPool(FakePool):
        def score_batch(self, ratios, spec, seeds=None):
            return [{"candidate_id": _cid(r), "status": "error", "accuracy": None, "keep_ratios": list(r),
                     "error": f"FloatingPointError: The fine-tuning loss became inf at step {2 + i}; lower 'lr'\ntrace"}
                    for i, r in enumerate(ratios)]

    rows = _rows([(0.40, 0.90, 40.0, "params=0.5"), (0.30, 0.80, 30.0, "params=0.5")])
    spec = ScoreSpec.fine_tuned(__import__("rayprune.engine", fromlist=["FineTuneConfig"]).FineTuneConfig(iterations=1))
    [res] = select_and_finalize(rows, [LARGE], pool=FailingPool({}, {}, {}), out_dir=tmp_path, rerank_spec=spec,
                                top_k=3, writer=CandidateWriter(tmp_path, name="sel"), cost_names=["params"],
                                log=lambda m: None)
    assert res.candidate_id is None
    assert res.error == ("every re-ranked candidate failed (2 of them, in the short fine-tune of search.finetune; all "
                         "with: FloatingPointError: The fine-tuning loss became inf at step 2; lower 'lr')")


def test_the_header_says_how_many_candidates_uniform_and_global_will_score():
    """'scoring 12 candidates' was printed and 6 were: uniform stops once each level is met."""
    from types import SimpleNamespace

    from rayprune.search.prune import _planned

    analytic = SimpleNamespace(num_levels=2, macs_aim=lambda level: None)
    measured = SimpleNamespace(num_levels=1, macs_aim=lambda level: 0.5)
    assert _planned("random", 12, measured) == "12 candidates"
    assert _planned("uniform", 12, measured).startswith("about 6 of 12 candidates (it stops once each level is met")
    assert _planned("global", 64, analytic).startswith("about 2 of 64 candidates")
    assert _planned("uniform", 4, measured) == "4 candidates"  # fewer than it may take: all of them
