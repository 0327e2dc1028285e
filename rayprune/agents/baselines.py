"""Baseline searches: one uniform keep ratio found by bisection, and random search under the budget.

Both are plain PyTorch (no Ray). Budgets on analytic costs (params, MACs) are checked with the
exact analytic model; any other budget (latency, memory, user functions) is checked by building
the candidate and measuring it. Feasibility of the evaluated rows is always the measured one.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import numpy as np

from ..problem import PruningProblem

__all__ = ["meets_budgets", "uniform_keep_ratio", "scale_to_budget", "random_keep_ratios"]


def meets_budgets(problem: PruningProblem, ratios: Sequence[float]) -> bool:
    """Whether the candidate with ``ratios`` meets every budget (analytic where exact, else measured)."""
    counts = problem.space.keep_counts(list(ratios))
    analytic = problem.analytic_limits()
    predicted = problem.predicted_costs(counts) if analytic else {}
    if any(predicted[name] > limit * (1 + 1e-9) for name, limit in analytic.items()):
        return False
    others = {k: v for k, v in problem.limits.items() if k not in analytic}
    if not others:
        return True
    costs = problem.measure(problem.space.build(list(ratios)))
    return all(costs[k] <= v * (1 + 1e-9) for k, v in others.items())


def _largest_feasible(ok: Callable[[float], bool], lo: float, hi: float, *, steps: int = 30) -> Optional[float]:
    """Largest ``x`` in ``[lo, hi]`` with ``ok(x)`` for a monotone (true, then false) predicate."""
    if ok(hi):
        return hi
    if not ok(lo):
        return None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        if hi - lo < 1e-4:
            break
    return lo


def uniform_keep_ratio(problem: PruningProblem) -> tuple[float, bool]:
    """The largest single keep ratio for every group that meets every budget, by bisection.

    Returns ``(ratio, feasible)``; if even ``pruning.min_keep`` misses a budget, the ratio is
    ``min_keep`` and ``feasible`` is False.
    """
    n, lo = problem.space.num_groups, problem.config.pruning.min_keep
    r = _largest_feasible(lambda x: meets_budgets(problem, [x] * n), lo, 1.0)
    return (lo, False) if r is None else (r, True)


def scale_to_budget(problem: PruningProblem, direction: Sequence[float]) -> Optional[list[float]]:
    """``clip(a * direction, min_keep, 1)`` with the largest ``a`` that meets every budget (None if none does).

    Costs grow monotonically with ``a``, so bisection finds the candidate along ``direction`` that
    sits on the budget boundary.
    """
    lo = problem.config.pruning.min_keep
    d = np.asarray(direction, dtype=float)
    top = 1.0 / float(d.min())  # beyond 1/max(d) the largest ratios saturate at 1 while the rest grow

    def ratios(a: float) -> list[float]:
        return list(np.clip(a * d, lo, 1.0))

    a = _largest_feasible(lambda x: meets_budgets(problem, ratios(x)), lo / float(d.max()), top)
    return None if a is None else ratios(a)


def random_keep_ratios(problem: PruningProblem, rng: np.random.Generator) -> Optional[list[float]]:
    """A random candidate on the budget's boundary: a uniform direction in ``[min_keep, 1]^G``, scaled."""
    lo = problem.config.pruning.min_keep
    return scale_to_budget(problem, rng.uniform(lo, 1.0, size=problem.space.num_groups))
