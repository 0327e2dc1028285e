"""benchmarks/bench_selection.py: each selection rule picks from the level's shortlist (its first k
candidates by the search's rank), ties keep the shortlist's order as the product's stable sort does,
and the pick is judged by its test accuracy. Synthetic records; no search runs."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_selection", ROOT / "benchmarks" / "bench_selection.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rec(cid, rank, search, reranks, final_val, test, level="params=0.1"):
    return {"config": "c", "agent": "random", "seed": 2, "candidate_id": cid, "ranks": {level: rank},
            "search": search, "rerank": [{"acc": a, "loss": lo} for a, lo in reranks],
            "final_val": {"acc": final_val, "loss": 1 - final_val}, "final_test": {"acc": test, "loss": 1 - test},
            "t_rerank": 0.1, "t_final": 1.0}


def test_each_rule_picks_its_best_from_the_first_k_and_ties_keep_the_shortlist_order(bench):
    frame = pd.DataFrame([
        # rank 0: best search score; tied with rank 1 on the first re-rank accuracy, worse loss
        _rec("a", 0, 0.90, [(0.95, 0.30), (0.90, 0.30), (0.90, 0.30)], 0.96, 0.91),
        _rec("b", 1, 0.80, [(0.95, 0.10), (0.97, 0.10), (0.97, 0.10)], 0.97, 0.92),
        _rec("c", 2, 0.70, [(0.94, 0.20), (0.94, 0.20), (0.94, 0.20)], 0.99, 0.93),
        _rec("d", 3, 0.60, [(0.99, 0.05), (0.99, 0.05), (0.99, 0.05)], 0.99, 0.99),  # only in a shortlist of 4+
    ])
    p3 = bench.picks(frame, 3).iloc[0]
    assert p3["n"] == 3
    assert p3["search score only"] == 0.91
    assert p3[bench.PRODUCT] == 0.91  # a and b tie at 0.95: the shortlist's order decides (a)
    assert p3["re-rank accuracy, ties by loss"] == 0.92  # the tie goes to b's lower loss
    assert p3["re-rank loss"] == 0.92
    assert p3["re-rank accuracy, 3 seeds"] == 0.92  # b's mean 0.963 beats a's 0.917
    assert p3["final val accuracy"] == 0.93
    assert p3["mean of shortlist"] == pytest.approx((0.91 + 0.92 + 0.93) / 3)
    assert p3["best of shortlist (test oracle)"] == 0.93
    p4 = bench.picks(frame, 4).iloc[0]
    assert p4[bench.PRODUCT] == 0.99 and p4["n"] == 4


def test_the_summary_pairs_every_rule_with_the_product_rule(bench):
    frame = pd.DataFrame([_rec("a", 0, 0.9, [(0.95, 0.3)] * 3, 0.96, 0.91), _rec("b", 1, 0.8, [(0.97, 0.1)] * 3,
                                                                                  0.97, 0.92)])
    frame = pd.concat([frame, frame.assign(seed=3), frame.assign(seed=4)], ignore_index=True)
    text = bench.summarise(frame)
    assert "shortlist of 4" in text  # two candidates: every shortlist length up to the first that is full
    row = next(line for line in text.splitlines() if line.startswith("| search score only"))
    assert "91.00 (-1.00 [-1.00, -1.00])" in row  # a (search) against b (re-rank), on all three seeds


def test_the_split_half_oracle_judges_on_images_it_did_not_choose_on(bench):
    rng = np.random.default_rng(1)
    recs = []
    for seed in (2, 3, 4):
        # the product picks "a" (best re-rank); "b" is truly 4 points better on test, "c" equal to "a"
        for cid, rank, rerank, p in (("a", 0, 0.97, 0.90), ("b", 1, 0.95, 0.94), ("c", 2, 0.94, 0.90)):
            correct = "".join("1" if x < p else "0" for x in rng.random(2000))
            rec = _rec(cid, rank, 0.9, [(rerank, 0.1)], 0.95, correct.count("1") / 2000)
            rec["seed"] = seed
            rec["final_test"]["correct"] = correct
            recs.append(rec)
    text = bench.split_half(pd.DataFrame(recs), k=8, repeats=20)
    row = next(line for line in text.splitlines() if line.startswith("| c |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["3", "2000"]
    honest = float(cells[5].split()[0])
    assert 3.0 < honest < 5.0  # the truly better candidate is found on half A and holds on half B
    assert "Test oracle" in bench.summarise(pd.DataFrame(recs))
    without = pd.DataFrame([_rec("a", 0, 0.9, [(0.95, 0.3)], 0.96, 0.91)])
    assert bench.split_half(without) == ""  # rows without per-image results: no table


def test_paired_intervals_need_three_pairs(bench):
    import bench_search  # on the path through the fixture

    mean, lo, hi = bench_search._ci95(np.array([0.1, 0.1]))  # two equal differences: no zero-width interval
    assert mean == pytest.approx(0.1) and np.isnan(lo) and np.isnan(hi)
    mean, lo, hi = bench_search._ci95(np.array([0.0, 0.2, 0.4]))
    assert mean == pytest.approx(0.2) and lo < 0.0 < 0.4 < hi  # t(2) = 4.30: wider than the sample's range
    assert (hi - mean) == pytest.approx(4.303 * 0.2 / np.sqrt(3), rel=1e-3)


def test_the_mean_judge_averages_every_final_seed(bench):
    a = {**_rec("a", 0, 0.9, [(0.97, 0.1)] * 3, 0.96, 0.90), "final_more": [{"val": 0.9, "test": 0.96}]}
    b = {**_rec("b", 1, 0.8, [(0.95, 0.1)] * 3, 0.97, 0.92), "final_more": [{"val": 0.9, "test": 0.92}]}
    one, mean = bench.picks(pd.DataFrame([a, b]), 4, "one").iloc[0], bench.picks(pd.DataFrame([a, b]), 4, "mean").iloc[0]
    assert one[bench.PRODUCT] == 0.90 and mean[bench.PRODUCT] == pytest.approx(0.93)  # a: (0.90 + 0.96) / 2
    assert "averaged over 2 final fine-tune seeds" in bench.summarise(pd.DataFrame([a, b]))


def test_the_search_benchmarks_set_parser_takes_json_or_a_bare_string(bench):
    import bench_search  # on the path through the fixture

    assert bench_search.search_overrides(['crl.action="direction"', "rerank.top_k=4"]) == {
        "crl": {"action": "direction"}, "rerank": {"top_k": 4}}
    assert bench_search.search_overrides(["crl.action=direction"]) == {"crl": {"action": "direction"}}


def test_seeds_needed_grows_with_the_spread_and_the_power_table_reads_pairs(bench, tmp_path):
    import bench_search  # on the path through the fixture

    assert bench_search.seeds_needed(0.0) == 3
    small, large = bench_search.seeds_needed(0.3), bench_search.seeds_needed(0.9)
    assert 3 < small < large
    n = large  # the least n that reaches the power: n works, n - 1 does not
    from scipy import stats

    def reach(k):
        return (stats.t.ppf(0.975, k - 1) + stats.t.ppf(0.8, k - 1)) * 0.9 / np.sqrt(k)

    assert reach(n) <= 0.3 < reach(n - 1)
    assert bench_search.seeds_needed(50.0, most=100) is None
    rows = [{"config": "m", "evaluations": 8, "level": "params=0.1", "agent": agent, "seed": seed,
             "final_test": 0.9 + 0.001 * seed * (agent == "crl") + 0.002 * (seed % 2), "test_samples": 500}
            for agent in ("crl", "random") for seed in range(5)]
    path = tmp_path / "rows.jsonl"
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    assert set(bench_search.read_rows(f"{path}:random")["agent"]) == {"random"}
    assert len(bench_search.read_rows(str(path))) == 10
    table = bench_search.power_table(bench_search.read_rows(str(path)))
    line = next(x for x in table.splitlines() if x.startswith("| m |"))
    sd = np.std([0.1 * s for s in range(5)], ddof=1)  # crl - random = 0.1 pt x seed
    assert f"| 1 | 5 | {sd:.2f} " in line and line.endswith(f"| {bench_search.seeds_needed(sd)} | 0.20 |")


def test_the_modules_doctests_hold(bench):
    import doctest

    assert doctest.testmod(bench).failed == 0


def test_the_search_summary_counts_runs_without_a_model(bench):
    import bench_search  # on the path through the fixture

    rows = [{"config": "m", "evaluations": 64, "level": "latency_ms=50%", "agent": agent, "seed": seed,
             "best_search": None if agent == "random" or seed == 0 else 0.5, "batch_size": 32,
             "final_test": None if agent == "random" or seed == 0 else 0.9 + 0.01 * seed * (agent == "crl"),
             "final_val": None, "search_s": 2.0, "curve": "[null, 0.5]"}
            for agent in ("crl", "random", "evolution") for seed in range(4)]
    table = bench_search.summarise(pd.DataFrame(rows))  # random never had a model: the best baseline is evolution
    assert "best baseline by mean final test: evolution" in table
    crl = next(x for x in table.splitlines() if x.startswith("| crl |"))
    random = next(x for x in table.splitlines() if x.startswith("| random |"))
    assert "+2.00 [" in crl and crl.endswith("| 4 | 1 | 2 |")  # seeds 1-3 paired; seed 0 had no model
    assert random.startswith("| random | - | ") and random.endswith("| 4 | 4 | 2 |")  # no model: no mean
    nothing = bench_search.summarise(pd.DataFrame([r for r in rows if r["agent"] == "random"]))
    assert "best baseline by mean search score: None" in nothing
    # an agent sharing no seed with the best baseline has no paired difference (it printed "+nan [+nan, +nan]")
    apart = [dict(r, seed=r["seed"] + 10) if r["agent"] == "crl" else r for r in rows]
    table = bench_search.summarise(pd.DataFrame(apart))
    crl = next(x for x in table.splitlines() if x.startswith("| crl |"))
    assert "| no shared seed |" in crl and "nan" not in table


def test_bench_searchs_doctests_hold_and_rows_record_their_environment(bench):
    """A rerun of committed rows in a later environment reproduced some exactly and the rest within noise; the rows
    did not say which library versions made them."""
    import doctest

    import bench_search  # on the path through the fixture

    assert doctest.testmod(bench_search).failed == 0
    env = bench_search.environment()
    assert env["torch"].startswith("2.") and env["torch_pruning"] != "missing" and env["ray"] != "missing"
