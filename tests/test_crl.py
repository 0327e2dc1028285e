"""The constrained-RL agent and the evaluator pool on local Ray: ask/tell, failures, budgets, export."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rayprune.config import parse_config
from rayprune.search.prune import run_prune

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent


def tiny(tmp_cache, agent="crl", **search):
    evaluation = search.pop("evaluation", {})
    return parse_config({
        "name": "tiny-crl",
        "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.5}},
        "data": {"name": "digits", "device": "cpu"},
        "base_training": {"epochs": 3, "lr": 0.05, "batch_size": 64, "cache_dir": str(tmp_cache)},
        "pruning": {"min_keep": 0.2},
        "budgets": {"params": 0.5},
        "search": {"agent": agent, "evaluations": 16, "batch_size": 8, "rerank": {"top_k": 2},
                   "finetune": {"iterations": 5, "batch_size": 64}, "final_finetune": {"iterations": 10, "batch_size": 64},
                   "eval_samples": 200, **search},
        "evaluation": {"evaluators": 2, "cpus": 1.0, **evaluation},
    })


def problem_and_space(cfg):
    """The problem, the sweep's budget levels and the search space the agents propose in."""
    from rayprune.agents import SearchSpace
    from rayprune.costs.levels import levels_from_config
    from rayprune.problem import PruningProblem

    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")
    levels = levels_from_config(cfg, problem.base_costs, sweep=True)
    return problem, levels, SearchSpace.from_problem(problem, levels)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("base-cache")


def _intervals_overlap(a, b):
    return a["wall_start"] < b["wall_end"] and b["wall_start"] < a["wall_end"]


def scripted_outcomes(space, proposals):
    """A made-up score that prefers keeping the first group over the last, with the predicted params."""
    from rayprune.agents.base import Outcome

    return [Outcome(score=float(p.keep_ratios[0] - p.keep_ratios[-1]), feasible=True,
                    costs={"params": space.predict("params", p.keep_ratios)}) for p in proposals]


def scripted_search(agent, space, rounds, *, save_to=None, save_after=None, between=lambda r: None):
    """``rounds`` ask/tell rounds on :func:`scripted_outcomes`; the keep ratios asked per round, and the
    agent's state when it was saved to ``save_to`` after round ``save_after``."""
    asked, state = [], None
    for r in range(rounds):
        between(r)
        proposals = agent.ask()
        asked.append([p.keep_ratios for p in proposals])
        agent.tell(proposals, scripted_outcomes(space, proposals))
        if save_after == r:
            agent.save(save_to)
            state = json.loads(json.dumps(agent.state_dict()))
    return asked, state


def resumed_search(space, search_config, state, directory, rounds, run):
    """The keep ratios a new crl agent asks for in ``rounds`` rounds of ``run`` once restored from
    ``state`` and ``directory`` (another seed: the checkpoint must carry everything)."""
    from rayprune.agents import make_agent

    agent = make_agent("crl", space, seed=11, search=search_config)
    try:
        agent.load_state_dict(state)
        agent.restore(directory)
        return run(agent, rounds)[0]
    finally:
        agent.close()


def test_crl_prunes_through_the_pool_with_both_evaluators_busy_at_once(ray_session, cache, tmp_path):
    cfg = tiny(cache, score="finetune", finetune={"iterations": 40, "batch_size": 64})
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 16 and set(search["iteration"]) == {1, 2}  # 2 PPO iterations x 8 episodes
    fresh = search[~search["cached"]]
    assert set(fresh["evaluator"]) == {0, 1}
    pairs = [(a, b) for _, a in fresh.iterrows() for _, b in fresh.iterrows()
             if a["evaluator"] != b["evaluator"] and _intervals_overlap(a, b)]
    assert pairs, "no two scores on different evaluators overlapped in time"
    assert summary["feasible"] and summary["evaluations"] == 16
    assert (search["feasible"] == (search["params"] <= search["limit_params"])).all()
    assert search["feasible"].all()  # every direction is projected onto (under) the analytic budget
    # the multipliers the policy trained with are recorded in the progress, λ moved from its initial 1.0
    best = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert best["pruned"]["params"] <= best["budgets"]["params"]["limit"]


def test_overlapping_batches_keep_both_evaluators_busy_across_the_batch_boundary(ray_session, cache, tmp_path):
    """random is pipelined: batch k+1 is submitted before batch k is written and told, so an
    evaluator that finishes batch k's last chunks early starts on batch k+1 (rows' wall times)."""
    cfg = tiny(cache, agent="random", evaluations=24, score="finetune", finetune={"iterations": 40, "batch_size": 64})
    summary = run_prune(cfg, tmp_path, progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    search = rows[(rows["stage"] == "search") & ~rows["cached"].astype(bool)]
    assert len(rows[rows["stage"] == "search"]) == 24 and rows["row_id"].is_unique and summary["feasible"]
    # without the overlap no batch could start before the one before it had finished; on a loaded
    # machine one boundary can still miss (the driver submits late), so one of the two must overlap
    overlapped = []
    for k in (1, 2):
        last_of_k = search.loc[search["iteration"] == k, "wall_end"].max()
        first_of_next = search.loc[search["iteration"] == k + 1, "wall_start"].min()
        overlapped.append(first_of_next < last_of_k)
    assert any(overlapped), "each batch started only after the one before it had finished"


@pytest.fixture
def pools(monkeypatch):
    """Every EvaluatorPool created during the test, in order (to reach its actors)."""
    import rayprune.evaluation.pool as pool_module

    created = []
    original = pool_module.EvaluatorPool.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(pool_module.EvaluatorPool, "__init__", recording)
    return created


def test_killed_evaluator_is_restarted_and_every_row_lands_once(ray_session, cache, tmp_path, pools):
    cfg = tiny(cache, agent="random", evaluations=24, score="finetune", finetune={"iterations": 80, "batch_size": 64})
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
    summary = run_prune(cfg, tmp_path, progress=False, log=lambda m: None)
    killer.join(timeout=5)
    assert killed, "the test did not manage to kill an evaluator mid-run"
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 24 and search["row_id"].is_unique  # nothing lost, nothing duplicated
    assert (search["status"] == "ok").all()  # the retried call scored them
    assert set(search.loc[search["evaluator"] == 0, "pid"]) - {killed["pid"]}  # the restarted actor worked on
    assert summary["feasible"]


def test_the_pools_score_cache_is_bounded_and_a_search_runs_through_evictions(ray_session, cache, tmp_path, pools,
                                                                               monkeypatch):
    import rayprune.evaluation.pool as pool_module

    monkeypatch.setattr(pool_module, "SCORE_CACHE_SIZE", 4)
    summary = run_prune(tiny(cache, agent="random", evaluations=16), tmp_path, progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    assert (rows["stage"] == "search").sum() == 16 and summary["feasible"]
    assert pools and all(len(p._cache) <= 4 for p in pools)


def test_a_dead_pool_stops_the_search_and_keeps_what_it_scored(ray_session, cache, tmp_path, pools):
    from rayprune.evaluation.pool import PoolDeadError

    cfg = tiny(cache, agent="random", evaluations=64, score="finetune", finetune={"iterations": 60, "batch_size": 64},
               evaluation={"evaluators": 1, "max_restarts": 0, "max_task_retries": 0})

    def kill_the_evaluator():
        deadline = time.time() + 300
        while time.time() < deadline:
            if pools and (tmp_path / "candidates").exists() and list((tmp_path / "candidates").glob("*.parquet")):
                os.kill(pools[0].stats()[0]["pid"], signal.SIGKILL)
                return
            time.sleep(0.2)

    threading.Thread(target=kill_the_evaluator, daemon=True).start()
    with pytest.raises(PoolDeadError, match="evaluator"):
        run_prune(cfg, tmp_path, progress=False, log=lambda m: None)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")  # merged on the way out
    assert len(rows) >= 8 and (rows.head(8)["status"] == "ok").all()  # the first batch is kept
    assert len(rows) < 64  # and it did not go on "scoring" failures at full speed


def test_a_hung_evaluation_times_out_restarts_its_evaluator_and_the_search_goes_on(ray_session, cache, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    hang_file = tmp_path / "hang-armed"
    base = tiny(cache, agent="random", evaluations=16, batch_size=8, score="adaptive_bn",
                evaluation={"timeout_s": 5.0})
    cfg = parse_config(base.model_dump(mode="json"), overrides={
        "costs": {"custom": {"hang": "crl_user_costs:hangs_once_in_an_evaluator"},
                  "options": {"hang_file": str(hang_file)}},
    })
    out = tmp_path / "out"
    hang_file.write_text("armed")
    t0 = time.time()
    summary = run_prune(cfg, out, progress=False, log=lambda m: None)
    assert time.time() - t0 < 240  # the hour-long hang did not hold the run
    assert not hang_file.exists()  # the hang happened
    rows = pd.read_parquet(out / "candidates.parquet")
    search = rows[rows["stage"] == "search"]
    assert len(search) == 16 and search["row_id"].is_unique
    failed = search[search["status"] == "error"]
    assert 1 <= len(failed) <= 4  # the hung call's chunk only
    assert failed["error"].str.contains("EvaluationTimeout").all()
    assert failed["error"].str.contains("timeout_s").all()  # names the setting to change
    assert (search["status"] == "ok").sum() == 16 - len(failed)  # the restarted evaluator scored on
    assert summary["feasible"]


def test_a_black_box_cost_that_grows_with_macs_is_steered_so_most_candidates_meet_it(ray_session, cache, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    base = tiny(cache, evaluations=48)
    cfg = parse_config(base.model_dump(mode="json"), overrides={
        "costs": {"custom": {"activation_kib": "crl_user_costs:activation_kib"}},
        "budgets": {"activation_kib": {"value": 0.4, "relative": True}},
    })
    messages = []
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=messages.append)
    assert summary["feasible"] and not any("does not grow with MACs" in m for m in messages)
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    # the proxy starts as "proportional to MACs" (too optimistic for memory) and is refitted after each
    # batch; once it has seen a few batches (here 8 candidates each), candidates meet the budget
    search = rows[rows["stage"] == "search"]
    meets = search["activation_kib"] <= search["limit_activation_kib"] * (1 + 1e-9)
    first, late = meets[search["iteration"] == 1].mean(), meets[search["iteration"] >= 5].mean()
    assert late >= 0.6 and late >= first + 0.4, (first, late)


def test_two_constraints_with_a_user_cost_and_the_export_meets_both(ray_session, cache, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    base = tiny(cache, evaluations=24)
    cfg = parse_config(base.model_dump(mode="json"), overrides={
        "costs": {"custom": {"conv_channels": "crl_user_costs:conv_channels"}},
        "budgets": {"params": 0.6, "conv_channels": {"value": 40.0, "relative": False}},
    })
    messages = []
    summary = run_prune(cfg, tmp_path, agent="crl", progress=False, log=messages.append)
    assert set(summary["budgets"]) == {"params", "conv_channels"}
    assert summary["feasible"]
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    assert {"conv_channels", "limit_conv_channels", "params"} <= set(rows.columns)
    # a black-box budget next to an analytic one: the search aims at it through its MACs proxy (fitted
    # from the rows), and the selection exports a candidate that meets both, measured in a new process
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


def test_crl_checkpoint_round_trip_keeps_the_policy_and_the_multipliers(ray_session, cache, tmp_path):
    from rayprune.agents import make_agent
    from rayprune.agents.base import Outcome

    cfg = parse_config(tiny(cache).model_dump(mode="json"), overrides={"sweep": {"budgets": {"params": [0.6, 0.3]}}})
    problem, levels, space = problem_and_space(cfg)

    def outcomes(proposals, over=1.3):
        return [Outcome(score=float(np.mean(p.keep_ratios)), feasible=False,
                        costs={"params": over * levels[p.level].limits["params"]}) for p in proposals]

    agent = make_agent("crl", space, seed=0, search=cfg.search)
    try:
        proposals = agent.ask()
        assert {p.level for p in proposals} == {0, 1}  # one budget-conditioned policy serves both levels
        agent.tell(proposals, outcomes(proposals))
        lam = agent.metrics()["lambda/params"]
        assert lam > 1.0  # every candidate over budget: the multiplier rose
        agent.save(tmp_path)
        state = json.loads(json.dumps(agent.state_dict()))
        weights = agent.policies[0].algo.get_module().state_dict()
    finally:
        agent.close()
    restored = make_agent("crl", space, seed=5, search=cfg.search)
    try:
        restored.load_state_dict(state)
        restored.restore(tmp_path)
        assert restored.metrics()["lambda/params"] == pytest.approx(lam)
        again = restored.policies[0].algo.get_module().state_dict()
        assert all(np.allclose(np.asarray(weights[k]), np.asarray(again[k])) for k in weights)
        proposals = restored.ask()  # and it goes on searching
        restored.tell(proposals, outcomes(proposals, over=0.5))
        assert restored.metrics()["lambda/params"] < lam  # under budget now: the multiplier falls
    finally:
        restored.close()


def test_a_zero_multiplier_learning_rate_keeps_a_fixed_penalty(ray_session, cache):
    """search.crl.lagrange_lr 0: the ablation without dual ascent, λ stays lagrange_init however far over budget."""
    from rayprune.agents import make_agent
    from rayprune.agents.base import Outcome

    cfg = parse_config(tiny(cache).model_dump(mode="json"),
                       overrides={"search": {"crl": {"lagrange_lr": 0.0, "lagrange_init": 2.0}}})
    problem, levels, space = problem_and_space(cfg)
    agent = make_agent("crl", space, seed=0, search=cfg.search)
    try:
        for _ in range(2):
            proposals = agent.ask()
            agent.tell(proposals, [Outcome(score=0.5, feasible=False, costs={"params": 3 * levels[p.level].limits["params"]})
                                   for p in proposals])
            assert agent.metrics()["lambda/params"] == pytest.approx(2.0)
    finally:
        agent.close()


@pytest.mark.parametrize(("conditioned", "rollout"), [(True, 16), (False, 24)])
def test_the_counted_rollout_is_what_the_agent_proposes_and_the_header_says_so(ray_session, cache, conditioned,
                                                                               rollout):
    """Headers said search.evaluations where crl scores whole rollouts (one policy per level: 3 x 8 = 24 a rollout
    for a batch of 16), so a user's sweep ran past the count it announced without a word."""
    from rayprune.agents import make_agent
    from rayprune.agents.crl_batches import crl_evaluations, crl_rollout_size, rounds_note

    cfg = parse_config(tiny(cache).model_dump(mode="json"), overrides={
        "search": {"batch_size": 16, "evaluations": 40, "crl": {"budget_conditioned": conditioned, "num_envs": 4}},
        "sweep": {"budgets": {"params": [0.8, 0.6, 0.4]}}})
    problem, levels, space = problem_and_space(cfg)
    agent = make_agent("crl", space, seed=0, search=cfg.search)
    try:
        assert len(agent.ask()) == crl_rollout_size(16, 3, cfg.search.crl) == rollout
    finally:
        agent.close()
    assert crl_evaluations(40, 16, 3, cfg.search.crl) == 48
    note = rounds_note("crl", cfg.search, 3)
    assert note.startswith(f"crl: 48, whole rollouts of {rollout}") and "num_envs=4" in note
    assert ("3 policies" in note) is not conditioned
    assert rounds_note("random", cfg.search, 3) == ""


def test_the_examples_of_crls_batch_counts_hold():
    import doctest

    import rayprune.agents.crl_batches as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0


def test_crl_with_direction_actions_proposes_its_directions_projected_onto_each_levels_boundary(ray_session, cache):
    from rayprune.agents import make_agent
    from rayprune.agents.base import Outcome
    from rayprune.agents.env import CANDIDATE_INFO

    cfg = parse_config(tiny(cache).model_dump(mode="json"), overrides={
        "sweep": {"budgets": {"params": [0.6, 0.3]}}, "search": {"crl": {"action": "direction"}}})
    problem, levels, space = problem_and_space(cfg)
    agent = make_agent("crl", space, seed=0, search=cfg.search)
    try:
        for _ in range(2):  # before and after a PPO update
            proposals = agent.ask()
            assert {p.level for p in proposals} == {0, 1}
            directions = [list(e.get_infos(-1)[CANDIDATE_INFO]) for e in agent._rollouts[(0, agent._rollout - 1)]]
            assert [p.keep_ratios for p in proposals] == space.project_many(directions, [p.level for p in proposals])
            used = [space.predict("params", p.keep_ratios) / levels[p.level].limits["params"] for p in proposals]
            assert max(used) <= 1.0  # every candidate meets its budget
            # and spends most of it (a 3-group model's channel rounding can leave one candidate well short)
            assert np.median(used) >= 0.85 and min(used) >= 0.5, used
            agent.tell(proposals, [Outcome(score=float(p.keep_ratios[0]), feasible=True,
                                           costs={"params": space.predict("params", p.keep_ratios)}) for p in proposals])
    finally:
        agent.close()


def test_one_seed_gives_one_search_and_a_restored_agent_continues_it(ray_session, cache, tmp_path):
    """Same seed, same candidates — whatever else the process draws — and a resume proposes what the
    uninterrupted search would have proposed next (three levels: 8 episodes a rollout do not share
    them evenly, so the levels' round robin must resume where it was too)."""
    import torch

    from rayprune.agents import make_agent

    cfg = parse_config(tiny(cache).model_dump(mode="json"), overrides={"sweep": {"budgets": {"params": [0.7, 0.45, 0.3]}}})
    problem, levels, space = problem_and_space(cfg)

    def search(agent, rounds, *, save_after=None):
        def other_work(r):  # other work in the process draws in between
            torch.rand(17 + r), np.random.rand(3)
        return scripted_search(agent, space, rounds, save_to=tmp_path, save_after=save_after, between=other_work)

    runs = []
    for _ in range(2):
        agent = make_agent("crl", space, seed=3, search=cfg.search)
        try:
            runs.append(search(agent, 3, save_after=0))
        finally:
            agent.close()
    (first, state), (second, _) = runs
    assert first == second
    other = make_agent("crl", space, seed=4, search=cfg.search)
    try:
        assert [p.keep_ratios for p in other.ask()] != first[0]
    finally:
        other.close()
    assert resumed_search(space, cfg.search, state, tmp_path, 2, search) == first[1:]


def test_crl_with_overlapping_batches_learns_one_batch_behind_and_resumes_exactly(ray_session, cache, tmp_path):
    """search.crl.pipeline: the loop asks for batch k+1 before it tells batch k (the order it uses on the
    Ray pool); the policy still learns every batch, and drains for checkpoints or a restart from a
    drained checkpoint (its untold episodes saved with it) propose what the uninterrupted search did."""
    from rayprune.agents import make_agent
    from rayprune.evaluation.local import LocalPool
    from rayprune.evaluation.score import score_specs
    from rayprune.results import CandidateWriter, read_candidates
    from rayprune.search.loop import SearchRun

    cfg = parse_config(tiny(cache).model_dump(mode="json"), overrides={
        "sweep": {"budgets": {"params": [0.7, 0.45, 0.3]}}, "search": {"crl": {"pipeline": True}}})
    problem, levels, space = problem_and_space(cfg)
    spec, _ = score_specs(cfg)
    pool = LocalPool(problem)
    events: list = []

    def new_run(out, log=False):
        agent = make_agent("crl", space, seed=2, search=cfg.search)
        if log:
            ask, tell = agent.ask, agent.tell
            agent.ask = lambda n=None: (events.append("ask"), ask(n))[1]
            agent.tell = lambda p, o: (events.append("tell"), tell(p, o))[1]
        writer = CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t")
        return SearchRun(agent, space, pool.score_batch, submit=pool.submit_batch, spec=spec, writer=writer,
                         evaluations=32, seed=2)

    def order(out):
        return read_candidates(out).sort_values("iteration", kind="stable")["candidate_id"].tolist()

    straight = new_run(tmp_path / "a", log=True)
    assert straight.pipelined
    weights0 = {k: v.clone() for k, v in straight.agent.policies[0].algo.get_module().state_dict().items()}
    straight.run()
    assert events == ["ask", "ask", "tell", "ask", "tell", "ask", "tell", "tell"]  # 4 batches of 8, one behind
    assert straight.agent._rollouts == {}  # every rollout learned from
    weights = straight.agent.policies[0].algo.get_module().state_dict()
    assert any(not np.allclose(np.asarray(weights0[k]), np.asarray(weights[k])) for k in weights0)
    straight.agent.close()

    drained = new_run(tmp_path / "b")
    for k in range(3):
        drained.step()
        if k in (0, 1):
            drained.drain()
    while not drained.done:
        drained.step()
    drained.agent.close()

    resumed = new_run(tmp_path / "c")
    resumed.step()
    resumed.drain()  # one batch written and not yet told: its episodes go with the checkpoint
    assert len(resumed.agent._rollouts) == 1
    resumed.save(tmp_path / "ckpt")
    resumed.agent.close()
    again = new_run(tmp_path / "c")
    again.restore(tmp_path / "ckpt")
    again.run()
    again.agent.close()
    assert order(tmp_path / "b") == order(tmp_path / "a")
    assert order(tmp_path / "c") == order(tmp_path / "a")


def test_self_imitation_replays_earlier_elites_into_the_update_and_resumes_with_them(ray_session, cache, tmp_path):
    """search.crl.replay_elites: the first update has no earlier elites (the same search as without),
    later updates learn from them too (the searches part), and a restored agent has its elites back."""
    from rayprune.agents import make_agent

    base = tiny(cache).model_dump(mode="json")
    levels_override = {"sweep": {"budgets": {"params": [0.7, 0.4]}}}
    plain = parse_config(base, overrides=levels_override)
    replaying = parse_config(base, overrides={**levels_override, "search": {"crl": {"replay_elites": 2}}})
    problem, levels, space = problem_and_space(plain)

    def search(agent, rounds, *, save_after=None):
        return scripted_search(agent, space, rounds, save_to=tmp_path, save_after=save_after)

    runs = {}
    for name, cfg in (("plain", plain), ("replaying", replaying)):
        agent = make_agent("crl", space, seed=5, search=cfg.search)
        try:
            runs[name] = search(agent, 4, save_after=1 if name == "replaying" else None)
            if name == "replaying":
                assert all(len(agent.elites.scores(lvl)) == 2 for lvl in range(space.num_levels))
        finally:
            agent.close()
    (plain_asked, _), (replay_asked, state) = runs["plain"], runs["replaying"]
    assert replay_asked[:2] == plain_asked[:2]  # batch 0 is asked before any update, batch 1 after one without elites
    assert replay_asked[2:] != plain_asked[2:]
    assert resumed_search(space, replaying.search, state, tmp_path, 2, search) == replay_asked[2:]


def test_building_the_agent_logs_no_rllib_warnings_a_user_cannot_act_on(ray_session, cache):
    """RLlib's 'new API stack' notice, its own RLModuleConfig deprecation and Tune's 'install gputil'
    must not reach a crl user's terminal on every run (the config asks for ERROR)."""
    import logging

    from ray.util.debug import reset_log_once

    from rayprune.agents import make_agent

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    cfg = tiny(cache)
    _, _, space = problem_and_space(cfg)
    reset_log_once()  # RLlib logs some of these once per process: another test may have built an agent
    handler = Collect()
    loggers = [logging.getLogger("ray"), logging.getLogger("ray.rllib")]  # ray.rllib does not propagate to ray
    for logger in loggers:
        logger.addHandler(handler)
    try:
        agent = make_agent("crl", space, seed=0, search=cfg.search)
        agent.ask()
        agent.close()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert [f"{r.name}: {r.getMessage()[:80]}" for r in handler.records] == [], [r.name for r in handler.records]


def test_a_batch_waiting_on_a_candidate_an_earlier_batch_scores_gets_its_row_though_the_cache_is_trimmed(
        ray_session, cache, monkeypatch):
    # the race the suite hit under load: batch B is submitted while batch A scores candidate x, so B
    # waits on A's row; reading A trims the cache (here to nothing) before B is read
    import rayprune.evaluation.pool as pool_module
    from rayprune.evaluation.pool import EvaluatorPool
    from rayprune.evaluation.score import score_specs
    from rayprune.problem import PruningProblem

    monkeypatch.setattr(pool_module, "SCORE_CACHE_SIZE", 0)
    cfg = tiny(cache, agent="random")
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")
    spec, _ = score_specs(cfg)
    pool = EvaluatorPool.from_config(problem, cfg.evaluation)
    try:
        x, y = [0.5] * problem.space.num_groups, [0.8] * problem.space.num_groups
        a = pool.submit_batch([x], spec, [0])
        b = pool.submit_batch([x, y], spec, [0, 1])  # x is being scored by a: b scores only y
        assert b.todo == [1]
        first = a.result()
        assert len(pool._cache) == 0  # trimmed after a was read
        second = b.result()
        assert second[0]["cached"] and second[0]["accuracy"] == first[0]["accuracy"] and not second[1]["cached"]
    finally:
        pool.shutdown()


@pytest.mark.parametrize("exported", [False, True])
def test_ctrl_c_in_prunes_selection_says_whether_a_model_was_exported(ray_session, cache, tmp_path, monkeypatch,
                                                                        exported):
    """Interrupted during the selection: the message says 'no model was exported' only when best/ is absent."""
    from rayprune.errors import Interrupted
    from rayprune.search import selection

    def interrupted_selection(*args, export_to, **kwargs):
        if exported:  # the selection moves a finished export into best/ whole; the interrupt comes after
            (tmp_path / "best").mkdir()
            (tmp_path / "best" / "spec.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(selection, "select_and_finalize", interrupted_selection)  # prune imports it at run time
    with pytest.raises(Interrupted) as err:
        run_prune(tiny(cache, agent="random", evaluations=8), tmp_path, progress=False, log=lambda m: None)
    message = str(err.value)
    assert "candidates.parquet" in message and "does not resume" in message
    if exported:
        assert f"{tmp_path / 'best'}" in message and "no model was exported" not in message
    else:
        assert "no model was exported" in message
    assert len(pd.read_parquet(tmp_path / "candidates.parquet")) == 8  # the search's rows are kept
