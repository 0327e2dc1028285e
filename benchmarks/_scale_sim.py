"""Benchmark-only, driver side: a real :class:`EvaluatorPool` whose actors simulate scoring with a sleep.

See ``benchmarks/_scale_actor.py`` for the actor (a SIMULATION of scoring cost, never a product
path). This module:

* fits the problem's exact params/MACs (:class:`rayprune.costs.AnalyticCosts`) as a quadratic
  polynomial in the channel counts and checks it equal on fresh candidates
  (:func:`cost_polynomials`), so the torch-free actor returns the costs the real one would;
* wraps the problem so that what the pool puts in the object store is only that small, torch-free
  description (:class:`SimProblem`); the pool reads the rest of the problem (groups, rounding,
  cost names) exactly as usual;
* builds the pool (:func:`simulated_pool`). :class:`EvaluatorPool` has no argument for its actor
  class, so its module global ``Evaluator`` is swapped for :class:`SleepEvaluator` while its
  constructor runs (``unittest.mock.patch.object``), and only then; dispatch, ``ray.wait``,
  chunking, retries and the cache are the product's code.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from typing import Any
from unittest import mock

import numpy as np
from _scale_actor import SimSpec, SleepEvaluator, polynomial, rounding

from rayprune.costs import ANALYTIC_COSTS
from rayprune.evaluation import pool as pool_module
from rayprune.problem import PruningProblem

__all__ = ["SimProblem", "SimSpec", "cost_polynomials", "simulated_pool"]


def _random_counts(problem: PruningProblem, rng: random.Random) -> list[int]:
    return [rng.randint(g.min_channels, g.channels) for g in problem.space.groups]


def cost_polynomials(problem: PruningProblem, *, samples: int = 0, checks: int = 200, seed: int = 0) -> dict[str, dict]:
    """``{cost: polynomial}`` equal to the exact analytic model (``rayprune.costs.AnalyticCosts``).

    A model whose groups only meet in adjacent layers has params and MACs quadratic in the channel
    counts (a conv is ``k^2 c_in c_out`` weights and ``k^2 c_in c_out H W`` MACs); the fit is by
    least squares on random candidates and must reproduce ``checks`` others to within 0.5."""
    names = list(problem.costs)
    if not problem.analytic.exact or any(n not in ANALYTIC_COSTS for n in names):
        raise ValueError(f"The simulation needs costs the analytic model gives exactly (params, macs); got {names}.")
    groups = len(problem.space.groups)
    pairs = [(i, j) for i in range(groups) for j in range(i, groups)]
    rng = random.Random(seed)

    def features(counts: list[int]) -> list[float]:
        return [1.0, *map(float, counts), *(float(counts[i] * counts[j]) for i, j in pairs)]

    train = [_random_counts(problem, rng) for _ in range(samples or 4 * (1 + groups + len(pairs)))]
    x = np.array([features(c) for c in train])
    out = {}
    for name in names:
        y = np.array([problem.analytic(name, c) for c in train], dtype=float)
        coef = np.linalg.lstsq(x, y, rcond=None)[0]
        quad = [[0.0] * (groups - i) for i in range(groups)]
        for (i, j), a in zip(pairs, coef[1 + groups:]):
            quad[i][j - i] = float(a)
        out[name] = {"const": float(coef[0]), "lin": [float(a) for a in coef[1:1 + groups]], "quad": quad}
    for counts in (_random_counts(problem, rng) for _ in range(checks)):
        for name in names:
            exact, fitted = problem.analytic(name, counts), polynomial(out[name], counts)
            if abs(exact - fitted) > 0.5:
                raise ValueError(f"{name} is not quadratic in the channel counts of this model ({counts}: {exact} "
                                 f"vs {fitted}); the simulation cannot reproduce its costs.")
    return out


class SimProblem(PruningProblem):
    """The driver's problem, but what the pool ships to its actors is the simulation's description."""

    sim: dict[str, Any]

    @classmethod
    def wrap(cls, problem: PruningProblem) -> "SimProblem":
        wrapped = cls(**{f.name: getattr(problem, f.name) for f in dataclasses.fields(problem) if f.init})
        groups = problem.space.groups
        wrapped.sim = {"channels": [g.channels for g in groups], "min_channels": [g.min_channels for g in groups],
                       "round_to": problem.space.round_to, "costs": cost_polynomials(problem)}
        # the actor rounds with the product's own function, loaded from its file: check it is the same one
        ratios = [0.37] * len(groups)
        assert rounding.keep_counts(ratios, wrapped.sim["channels"], wrapped.sim["min_channels"],
                                    wrapped.sim["round_to"]) == problem.space.keep_counts(ratios)
        return wrapped

    def shareable(self) -> dict[str, Any]:
        return {"scale_sim": self.sim}


def simulated_pool(problem: SimProblem, **kwargs: Any) -> pool_module.EvaluatorPool:
    """A real :class:`EvaluatorPool` of :class:`SleepEvaluator` actors (see the module docstring)."""
    with mock.patch.object(pool_module, "Evaluator", SleepEvaluator):
        return pool_module.EvaluatorPool(problem, **kwargs)


def check_rows(problem: PruningProblem, rows: list[dict]) -> None:
    """The simulated rows carry the costs the real score would (exact analytic params/MACs)."""
    for row in itertools.islice(rows, 16):
        for name in problem.costs:
            exact = problem.analytic(name, row["keep_counts"])
            if abs(row[name] - exact) > 0.5:
                raise AssertionError(f"simulated {name} {row[name]} != analytic {exact} for {row['keep_counts']}")
