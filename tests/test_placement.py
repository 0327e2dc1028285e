"""Placing one trial's bundles on a cluster's nodes: each bundle whole on one node, GPUs with their CPUs."""

from __future__ import annotations

from rayprune.placement import copies_that_fit, packs


def test_the_module_examples_hold():
    import doctest

    import rayprune.config.search as search
    import rayprune.placement as placement

    assert doctest.testmod(placement).failed == 0
    assert doctest.testmod(search).failed == 0


def test_trials_at_once_counts_the_gpu_workers_not_the_cluster_totals():
    """A CPU head (8) and two GPU workers (4 CPU + 1 GPU): trials of 0.25 + 2 x (1 CPU + 0.5 GPU) -> 2, not 14/2.25."""
    head, worker = {"CPU": 8.0}, {"CPU": 4.0, "GPU": 1.0}
    trial = [{"CPU": 0.25}] + [{"CPU": 1.0, "GPU": 0.5}] * 2
    assert copies_that_fit(trial, [head, worker, worker]) == 2
    assert copies_that_fit(trial, [head]) == 0
    assert copies_that_fit([0.25, 0.85, 0.85], [2.0]) == 1  # 2 cores: one quickstart trial
    assert copies_that_fit([0.5, 1.0], [8.0] * 4) == 21  # a trial's bundles may sit on different nodes: 31.5 of 32


def test_packs_finds_a_placement_whenever_one_exists():
    """Against brute force over every assignment of bundles to nodes (small random cases, CPUs and GPUs)."""
    import itertools
    import random

    rng = random.Random(0)
    for _ in range(400):
        bundles = [{"CPU": round(rng.uniform(0.1, 1.0), 2), "GPU": rng.choice([0.0, 0.25, 0.5])}
                   for _ in range(rng.randint(1, 6))]
        nodes = [{"CPU": round(rng.uniform(0.5, 2.0), 2), "GPU": rng.choice([0.0, 1.0])} for _ in range(rng.randint(1, 3))]
        exists = any(all(sum(b[k] for b, a in zip(bundles, where) if a == n) <= nodes[n][k] + 1e-9
                         for n in range(len(nodes)) for k in ("CPU", "GPU"))
                     for where in itertools.product(range(len(nodes)), repeat=len(bundles)))
        assert packs(bundles, nodes) == exists, (bundles, nodes)


def test_large_clusters_are_answered_quickly_without_deep_recursion():
    """768 CPUs, 320 GPUs, 1,200 bundles: first fit answers (the exact search is for small, tight cases)."""
    assert copies_that_fit([0.25, 1, 1], [96.0] * 8) == 341
    assert copies_that_fit([0.25, 1, 1], [96.0] * 8, at_most=6) == 6  # no more than the sweep's trials
    assert copies_that_fit([{"CPU": 0.25}] + [{"CPU": 1, "GPU": 0.25}] * 4, [{"CPU": 64, "GPU": 8}] * 40) == 320
    assert packs([1.0] * 1200, [2000.0]) and not packs([1.0] * 1200, [1000.0, 199.0])
