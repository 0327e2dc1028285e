"""Pareto fronts against a brute-force definition: ties, duplicates, infeasible rows, several costs."""


import numpy as np
import pandas as pd
import pytest

from rayprune.sweeps.pareto import front_history, pareto_front, pareto_mask


def brute_force(acc, costs):
    n = len(acc)
    keep = []
    for i in range(n):
        dominated = False
        for j in range(n):
            at_least = acc[j] >= acc[i] and all(cj <= ci for cj, ci in zip(costs[j], costs[i]))
            strictly = acc[j] > acc[i] or any(cj < ci for cj, ci in zip(costs[j], costs[i]))
            if at_least and strictly:
                dominated = True
                break
        keep.append(not dominated)
    return np.array(keep)


@pytest.mark.parametrize("n_costs", [1, 2, 3])
@pytest.mark.parametrize("seed", range(6))
def test_mask_matches_brute_force_with_ties_and_duplicates(n_costs, seed):
    rng = np.random.default_rng(seed)
    n = 60
    # coarse values force ties; repeated rows force exact duplicates
    acc = rng.integers(0, 6, n) / 10
    costs = rng.integers(0, 5, (n, n_costs)).astype(float)
    acc[-5:], costs[-5:] = acc[:5], costs[:5]
    assert (pareto_mask(acc, costs) == brute_force(acc, costs.tolist())).all()


def test_small_cases():
    assert pareto_mask([0.9, 0.8, 0.9], [[10], [5], [12]]).tolist() == [True, True, False]
    assert pareto_mask([0.9, 0.9], [[10], [10]]).tolist() == [True, True]  # duplicates do not dominate each other
    assert pareto_mask([0.9, 0.9], [[10], [9]]).tolist() == [False, True]  # equal accuracy, cheaper wins
    assert pareto_mask([0.5, 0.6], [[1, 9], [9, 1]]).tolist() == [True, True]  # trade-off across costs


def test_front_drops_infeasible_errors_and_duplicate_candidates():
    frame = pd.DataFrame({
        "candidate_id": ["a", "b", "c", "d", "a", "e"],
        "accuracy": [0.95, 0.90, 0.99, 0.80, 0.95, 0.97],
        "params": [100, 50, 10, 40, 100, 20],
        "macs": [1000, 500, 100, 400, 1000, 200],
        "feasible": [True, True, False, True, True, True],
        "status": ["ok", "ok", "ok", "ok", "ok", "error"],
    })
    front = pareto_front(frame, ["params", "macs"])
    # c is infeasible, e errored, a appears twice: the front is a (best accuracy), b, d (cheapest)
    assert list(front["candidate_id"]) == ["d", "b", "a"]
    every = pareto_front(frame, ["params", "macs"], feasible_only=False)
    assert "c" in set(every["candidate_id"])


def test_front_history_grows_per_iteration():
    frame = pd.DataFrame({
        "trial_id": ["t"] * 4, "iteration": [1, 1, 2, 3], "candidate_id": list("wxyz"),
        "accuracy": [0.5, 0.6, 0.7, 0.4], "params": [10, 20, 15, 5], "feasible": [True] * 4, "status": ["ok"] * 4,
    })
    hist = front_history(frame, ["params"])
    by_step = {s: sorted(g["candidate_id"]) for s, g in hist.groupby("front_step")}
    assert by_step == {1: ["w", "x"], 2: ["w", "y"], 3: ["w", "y", "z"]}


def test_a_front_member_serving_several_levels_is_named_after_the_tightest():
    from rayprune.costs.levels import Level
    from rayprune.sweeps.pareto import with_served_levels

    levels = [Level(f"params={v}", {"params": v}, {"params": 100 * v}) for v in (0.5, 0.25, 0.35)]
    # the 0.25 level's model is also the best that fits 0.35 and 0.5; the rows come in the levels' order
    finals = pd.DataFrame({"candidate_id": ["a", "a", "a"], "level": ["params=0.5", "params=0.25", "params=0.35"],
                           "export_path": ["m/params=0.5", "m/params=0.25", "m/params=0.35"],
                           "accuracy": [0.95] * 3, "params": [24] * 3, "feasible": [True] * 3, "status": ["ok"] * 3})
    front = with_served_levels(pareto_front(finals, ["params"]), finals, levels)
    assert len(front) == 1 and front.loc[0, "level"] == "params=0.25"  # the front kept the 0.5 row; named by 0.25
    assert front.loc[0, "export_path"] == "m/params=0.25"  # the whole row is the 0.25 level's, not relabelled
    assert list(front.loc[0, "levels"]) == ["params=0.5", "params=0.25", "params=0.35"]
    two = pd.concat([finals.iloc[:1].assign(candidate_id="b", accuracy=0.97, params=50), finals.iloc[1:]])
    front = with_served_levels(pareto_front(two, ["params"]), two, levels)
    assert dict(zip(front["candidate_id"], front["level"])) == {"a": "params=0.25", "b": "params=0.5"}
    assert [list(v) for v in front["levels"]] == [["params=0.25", "params=0.35"], ["params=0.5"]]


def test_an_empty_front_still_has_the_levels_column():
    from rayprune.sweeps.pareto import with_served_levels

    empty = pd.DataFrame({"candidate_id": [], "level": [], "accuracy": []})
    assert "levels" in with_served_levels(empty, empty, []).columns
