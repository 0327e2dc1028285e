"""What a search agent sees of a problem: the groups, the budget levels, and the budget boundary.

Plain PyTorch/NumPy (no Ray). A :class:`SearchSpace` turns keep ratios into channel counts (the one
rounding rule, :func:`rayprune.pruning.rounding.keep_counts`), predicts params/MACs exactly with the
analytic model, and *projects* a direction onto a level's budget boundary: the candidate
``clip(a·d, min_keep, 1)`` with the largest ``a`` that meets every budget of the level. Random
search, evolution and TPE all propose through that projection (EagleEye keeps candidates within
±0.5 % of the FLOPs target for the same reason: a candidate under the budget wastes it), a whole
batch at once (:meth:`SearchSpace.project_many`: one numpy bisection, the same candidates as
projecting them one by one).

Budgets on costs without an analytic model (latency, memory, a user function) are steered through
a proxy: a straight-line fit ``cost ≈ a + b·(MACs / base MACs)`` over the candidates measured so
far (:class:`ProxyFit`), starting from ``cost ∝ MACs``; the projection aims at the MACs fraction the
fit predicts for the limit. Feasibility is always decided on measured costs; the proxy only aims.

Example:
    >>> space = SearchSpace.from_problem(problem, levels)              # doctest: +SKIP
    >>> space.project([1.0, 0.5, 0.8], level=0)                        # doctest: +SKIP
    [0.61, 0.31, 0.49]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..costs.analytic import AnalyticCosts
from ..costs.budget import within
from ..costs.levels import Level
from ..pruning.rounding import RoundTo, keep_counts, keep_counts_many

__all__ = ["SearchSpace", "ProxyFit", "feasible_reach", "largest_true"]

#: The analytic cost that stands for a budget without an analytic model.
PROXY = "macs"


#: :func:`largest_true`'s defaults, which :meth:`SearchSpace.project_many` replicates.
BISECT_TOL, BISECT_STEPS = 1e-4, 40


def largest_true(holds: Callable[[float], bool], lo: float, hi: float, *, tol: float = BISECT_TOL,
                 steps: int = BISECT_STEPS) -> Optional[float]:
    """Largest ``x`` in ``[lo, hi]`` with ``holds(x)``, for a predicate that is true then false.

    None if it does not even hold at ``lo``.

    >>> round(largest_true(lambda x: x * x <= 0.25, 0.0, 1.0), 3)
    0.5
    """
    if holds(hi):
        return hi
    if not holds(lo):
        return None
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if holds(mid) else (lo, mid)
        if hi - lo < tol:
            break
    return lo


@dataclass
class ProxyFit:
    """``cost ≈ a + b·x`` with ``x`` the MACs fraction, fitted by least squares over measured rows.

    Three models, from least to most data:

    - no measured rows: ``cost = base·x`` (proportional to MACs, the unpruned model's ratio);
    - measured rows, but no reliable rising line: ``cost = k·x`` with ``k`` fitted through the
      origin. A line needs its points spread along MACs: the first batch of a search sits at one
      MACs level, where scatter alone can tilt the line either way, while the ratio the rows show
      is already right (a memory cost at 40 % of the MACs that measures 55 % of its base moves the
      next batch below 29 %, not back to 40 %);
    - two or more distinct fractions spanning at least ``min_span`` and a rising fit: the line.

    Steering aims below the model by ``margin`` residual standard deviations (once the model has
    residual degrees of freedom), so that most candidates — not half of them, as aiming at the mean
    would — meet the black-box budget: candidates with the same MACs scatter around the line.

    The line is a model, the measured rows are evidence, and two guards keep the aim near them. A
    cost with a large fixed part (CPU latency: the line's intercept near the limit, the same MACs
    costing half to all of the base) otherwise sends the aim below every measured candidate, even
    below zero, and so on to the smallest network, whose repeats are served from the score cache
    and teach the proxy nothing more (a collapse measured on VGG11 under ``latency_ms=rel:0.5``):

    - a trust region: one step aims at least ``trust`` times the smallest measured fraction (the
      line is not extrapolated further than halving below the data at a time);
    - measured reach: the aim never falls below the largest measured fraction up to which the rows
      met the limit about as often as the margin promises (:func:`feasible_reach`; Φ(margin), 84 %
      for one spread);
    - no hit yet: while a quarter or fewer of the measured rows met the limit and no measured reach
      exists, the aim is at most ``descend`` times the smallest measured fraction, so a cost that barely moves with MACs (a small model whose CPU latency
      is mostly fixed overhead) cannot hold the search near the full model where nothing fits (session 24).

    >>> fit = ProxyFit(base=10.0)
    >>> fit.x_for(5.0)
    0.5
    >>> for x, c in [(0.2, 4.0), (0.6, 8.0)]: fit.add(x, c)
    >>> round(fit.x_for(6.0), 3)             # 2 + 10x = 6 (two points: no spread known yet)
    0.4
    >>> for x, c in [(0.4, 6.5), (0.4, 5.5)]: fit.add(x, c)
    >>> round(fit.x_for(6.0), 3) < 0.4       # scatter: aim lower
    True
    >>> narrow = ProxyFit(base=10.0)
    >>> for x, c in [(0.40, 5.6), (0.41, 5.4)]: narrow.add(x, c)   # falls with x: scatter, not signal
    >>> round(narrow.coefficients()[1], 1)   # k from the rows, not the base's 10
    13.6
    >>> round(narrow.x_for(4.0), 2)          # (4 − one spread) / k
    0.28
    >>> fixed = ProxyFit(base=10.0)          # cost 6.6 at 0.28, 7.9 at 0.5: the line aims below zero ...
    >>> for x, c in [(0.28, 6.5), (0.28, 6.7), (0.5, 7.8), (0.5, 8.0)]: fixed.add(x, c)
    >>> a, b = fixed.coefficients()
    >>> (5.0 - a - fixed.margin * fixed.spread()) / b < 0
    True
    >>> fixed.x_for(5.0)                     # ... the trust region: half the smallest measured fraction
    0.14
    >>> for c in [4.8, 4.9, 4.7, 4.6, 4.9]: fixed.add(0.2, c)
    >>> fixed.x_for(5.0)                     # five of five candidates at 0.2 met 5.0: measured reach
    0.2
    >>> flat = ProxyFit(base=10.0)           # overhead-bound: 9.6-9.9 from 0.86 to 0.93, limit 9.3, no hit yet
    >>> for x, c in [(0.93, 9.7), (0.9, 9.9), (0.88, 9.6), (0.86, 9.8)]: flat.add(x, c)
    >>> round(flat.x_for(9.3), 3)            # 0.7 x the smallest tried (the line alone would stay at ~0.84)
    0.602
    >>> lucky = ProxyFit(base=10.0)          # one timing of four met it by luck: still descending
    >>> for x, c in [(0.93, 9.7), (0.9, 9.25), (0.88, 9.6), (0.86, 9.8)]: lucky.add(x, c)
    >>> round(lucky.x_for(9.3), 3)
    0.602
    """

    base: float
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)
    margin: float = 1.0
    min_span: float = 0.05
    trust: float = 0.5
    descend: float = 0.7
    _aims: dict = field(default_factory=dict, repr=False, compare=False)  # (rows, limit) -> aim

    def add(self, x: float, cost: float) -> None:
        if math.isfinite(x) and x > 0 and cost is not None and math.isfinite(cost):
            self.xs.append(float(x))
            self.ys.append(float(cost))

    def _fit(self) -> Optional[tuple[float, float]]:
        """Least-squares ``(a, b)``; None until two distinct MACs fractions exist."""
        if len(set(self.xs)) < 2:
            return None
        b, a = np.polyfit(np.asarray(self.xs), np.asarray(self.ys), 1)
        return float(a), float(b)

    def _line(self) -> Optional[tuple[float, float]]:
        """The fitted line when it is usable for steering (rising, over a wide enough span)."""
        fit = self._fit()
        if fit is None or fit[1] <= 0 or max(self.xs) - min(self.xs) < self.min_span:
            return None
        return fit

    def coefficients(self) -> tuple[float, float]:
        line = self._line()
        if line is not None:
            return line
        xs, ys = np.asarray(self.xs), np.asarray(self.ys)
        k = float(np.dot(xs, ys) / np.dot(xs, xs)) if len(xs) else 0.0
        return 0.0, (k if k > 0 else self.base)

    def spread(self) -> float:
        """Residual standard deviation of the model in use (0 while it has no residual freedom)."""
        if not self.xs:
            return 0.0
        dof = len(self.xs) - (2 if self._line() is not None else 1)
        if dof < 1:
            return 0.0
        a, b = self.coefficients()
        resid = np.asarray(self.ys) - (a + b * np.asarray(self.xs))
        return float(np.sqrt(np.sum(resid ** 2) / dof))

    def steers(self) -> bool:
        """False once enough points (8 distinct) show the cost does not grow with MACs: then aiming at
        a MACs limit cannot bring it under its budget, and only the feasibility filter applies."""
        if len(set(self.xs)) < 8 or max(self.xs) - min(self.xs) < self.min_span:
            return True
        return self._fit()[1] > 0

    def x_for(self, limit: float) -> float:
        """The MACs fraction at which the model's cost plus ``margin`` spreads reaches ``limit`` (may
        be above 1), within the trust region and not below the measured :func:`feasible_reach`."""
        key = (len(self.xs), float(limit))  # rows are only ever added (load_state_dict clears this)
        if key not in self._aims:
            self._aims = {k: v for k, v in self._aims.items() if k[0] == key[0]}  # other levels' limits
            self._aims[key] = self._aim(limit)
        return self._aims[key]

    def _aim(self, limit: float) -> float:
        a, b = self.coefficients()
        aim = (limit - a - self.margin * self.spread()) / b
        if not self.xs:
            return aim
        aim = max(aim, self.trust * min(self.xs))
        hits = [within(y, limit) for y in self.ys]
        reach = feasible_reach(self.xs, hits, share=0.5 * (1.0 + math.erf(self.margin / math.sqrt(2.0))))
        if reach is None and sum(hits) <= 0.25 * len(hits):
            # (almost) nothing measured meets the limit, anywhere: step below the smallest fraction tried, whatever
            # the line says (a flat, overhead-bound cost stalls it; one lucky timing must not stop the descent)
            return min(aim, self.descend * min(self.xs))
        return aim if reach is None else max(aim, reach)


def feasible_reach(xs: Sequence[float], hits: Sequence[bool], share: float) -> Optional[float]:
    """The largest ``x`` among ``xs`` at which the measured share of hits reaches ``share``.

    The share of hits (candidates that met a limit) should not rise with the MACs fraction ``x``, so
    it is fitted as a non-increasing step function of ``x`` (isotonic regression, scikit-learn's);
    each step's share is counted with one pseudo-hit and one pseudo-miss (Laplace), so that a step
    needs support: 5 of 5 hits reach 84 % (6/7), 4 of 4 do not (5/6). None when no step reaches it.

    >>> feasible_reach([0.2, 0.2, 0.2, 0.2, 0.2, 0.4, 0.4], [True] * 5 + [False, True], share=0.84)
    0.2
    >>> feasible_reach([0.2, 0.2, 0.4], [True, True, True], share=0.84) is None   # 3 of 3: 4/5 = 0.8
    True
    """
    if len(xs) == 0:
        return None
    from sklearn.isotonic import IsotonicRegression

    x = np.asarray(xs, dtype=float)
    y = np.asarray(hits, dtype=float)
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    fitted = IsotonicRegression(increasing=False).fit_transform(x, y)
    # steps: runs of equal fitted share (ties in x are one point to the regression, so one step)
    starts = np.flatnonzero(np.r_[True, ~np.isclose(np.diff(fitted), 0.0)])
    ends = np.r_[starts[1:], len(x)]
    best = None
    for s, e in zip(starts, ends):
        if (y[s:e].sum() + 1.0) / (e - s + 2.0) >= share:
            best = float(x[e - 1])
    return best


class SearchSpace:
    """The search problem as agents see it (see the module docstring).

    Args:
        channels, min_channels, round_to, min_keep: the prunable groups and the rounding rule.
        levels: the budget levels the search serves.
        base_costs: the unpruned model's value of every cost.
        analytic: the exact params/MACs model (None when it is not exact for this model: then no
            projection is possible and proposals are taken as they are).
        group_features: per-group descriptors for agents that want them (crl's observation).
        importance: per group, each channel's importance score normalised by the group's mean
            (:attr:`rayprune.pruning.space.PrunableGroup.scores`), for :meth:`global_candidate`.
    """

    def __init__(self, *, channels: Sequence[int], min_channels: Sequence[int], round_to: RoundTo, min_keep: float,
                 levels: Sequence[Level], base_costs: Mapping[str, float], analytic: Optional[AnalyticCosts],
                 group_features: Optional[np.ndarray] = None,
                 importance: Optional[Sequence[np.ndarray]] = None) -> None:
        if not levels:
            raise ValueError("A search needs at least one budget level.")
        self.channels = [int(c) for c in channels]
        self.min_channels = [int(c) for c in min_channels]
        #: the multiple each group's kept channels are rounded to (``PruningSpace.multiples``)
        self.round_to = [int(r) for r in round_to] if np.ndim(round_to) else [int(round_to)] * len(self.channels)
        self.min_keep = float(min_keep)
        self.levels = list(levels)
        self.base_costs = dict(base_costs)
        self.analytic = analytic
        self.group_features = group_features
        self.importance = None if importance is None else [np.asarray(x, dtype=np.float64) for x in importance]
        if self.importance is not None and [len(x) for x in self.importance] != self.channels:
            raise ValueError("importance needs one score per channel of every group.")
        self.proxies = {name: ProxyFit(base=self.base_costs[name]) for name in self.blackbox_costs()}

    @classmethod
    def from_problem(cls, problem, levels: Sequence[Level]) -> "SearchSpace":
        """From a :class:`rayprune.problem.PruningProblem` (driver side)."""
        groups = problem.space.groups
        return cls(channels=[g.channels for g in groups], min_channels=[g.min_channels for g in groups],
                   round_to=problem.space.multiples, min_keep=problem.config.pruning.min_keep, levels=levels,
                   base_costs=problem.base_costs, analytic=problem.analytic if problem.analytic.exact else None,
                   group_features=group_features(problem),
                   importance=None if any(g.scores is None for g in groups) else [g.scores for g in groups])

    # -- facts -------------------------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return len(self.channels)

    @property
    def num_levels(self) -> int:
        return len(self.levels)

    def counts(self, ratios: Sequence[float]) -> list[int]:
        return keep_counts(ratios, self.channels, self.min_channels, self.round_to)

    def rounded(self, ratios: Sequence[float]) -> list[float]:
        """The keep ratios a candidate actually realises after rounding."""
        return [k / c for k, c in zip(self.counts(ratios), self.channels)]

    def analytic_costs(self) -> list[str]:
        """Budgeted costs the analytic model predicts exactly."""
        if self.analytic is None:
            return []
        names = {n for lvl in self.levels for n in lvl.limits}
        return sorted(n for n in names if n in AnalyticCosts.NAMES)

    def blackbox_costs(self) -> list[str]:
        """Budgeted costs that only a measurement can tell (latency, memory, user functions)."""
        names = {n for lvl in self.levels for n in lvl.limits}
        return sorted(n for n in names if self.analytic is None or n not in AnalyticCosts.NAMES)

    def predict(self, name: str, ratios: Sequence[float]) -> float:
        """Analytic ``name`` (params or macs) of ``ratios``."""
        return float(self.analytic(name, self.counts(ratios)))

    # -- budgets -------------------------------------------------------------------------------------
    def steering_limits(self, level: int) -> dict[str, float]:
        """Analytic limits the proposals of ``level`` aim at: its own analytic budgets, plus the MACs
        fraction each black-box budget's proxy fit predicts (as an absolute MACs limit)."""
        aim = self.macs_aim(level)
        if aim is None:
            return {n: lim for n, lim in self.levels[level].limits.items() if n in self.analytic_costs()}
        return self.aimed_limits(level, aim)

    def meets(self, ratios: Sequence[float], limits: Mapping[str, float]) -> bool:
        """Whether the analytic costs of ``ratios`` are within ``limits`` (analytic names only)."""
        counts = self.counts(ratios)
        return all(within(self.analytic(n, counts), lim) for n, lim in limits.items())

    def project(self, direction: Sequence[float], level: int) -> list[float]:
        """``clip(a·direction, min_keep, 1)`` with the largest ``a`` meeting the level's steering limits.

        Rounded to channel counts. If even ``min_keep`` everywhere misses a limit, the smallest
        candidate; with no analytic model, ``direction`` itself clipped to ``[min_keep, 1]``.
        For a batch, :meth:`project_many` gives the same candidates far faster (for one direction
        this scalar path is the faster: the memoised costs beat numpy's per-call overhead).
        """
        d = np.clip(np.asarray(direction, dtype=float), self.min_keep, 1.0)
        limits = self.steering_limits(level)
        if not limits:
            return self.rounded(d)

        def ratios(a: float) -> list[float]:
            return list(np.clip(a * d, self.min_keep, 1.0))

        top = 1.0 / float(d.min())  # beyond it every ratio is 1
        a = largest_true(lambda x: self.meets(ratios(x), limits), self.min_keep / float(d.max()), top)
        return self.rounded(ratios(self.min_keep / float(d.max())) if a is None else ratios(a))

    def project_many(self, directions: Sequence[Sequence[float]], levels: Sequence[int]) -> list[list[float]]:
        """:meth:`project` of each ``(directions[i], levels[i])``, all at once: ``[project(d, l) ...]``
        exactly, at a fraction of the cost (the agents' batch proposals).

        One bisection for the whole batch, each row's as :func:`largest_true` does it (``hi``, then
        ``lo``, then halving until ``hi - lo < tol``, at most 40 halvings; each row stops on its
        own), every step one :meth:`AnalyticCosts.costs_many` of the rows still halving. Rows may
        aim at different levels.
        """
        if len(directions) != len(levels):
            raise ValueError(f"Got {len(directions)} directions but {len(levels)} levels.")
        if len(directions) == 0:
            return []
        d = np.asarray(directions, dtype=float)
        if d.ndim != 2 or d.shape[1] != self.num_groups:
            raise ValueError(f"Expected {self.num_groups} keep ratios (one per prunable group) per direction; "
                             f"got directions of shape {d.shape}.")
        d = np.clip(d, self.min_keep, 1.0)
        levels = [int(lvl) for lvl in levels]
        steering = {lvl: self.steering_limits(lvl) for lvl in sorted(set(levels))}
        ratios = d.copy()  # rows without limits: the clipped direction itself
        steered = np.asarray([bool(steering[lvl]) for lvl in levels])
        if steered.any():
            rows = np.flatnonzero(steered)
            ratios[rows] = self._bisect(d[rows], [steering[levels[i]] for i in rows])
        counts = keep_counts_many(ratios, self.channels, self.min_channels, self.round_to)
        return (counts / np.asarray(self.channels, dtype=np.int64)).tolist()

    def _bisect(self, d: np.ndarray, limits: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The unrounded ``clip(a·d, min_keep, 1)`` of :meth:`project` for every row of ``d`` (clipped
        directions), row ``i`` under ``limits[i]`` (non-empty)."""
        column = {name: j for j, name in enumerate(AnalyticCosts.NAMES)}
        bounds = np.full((len(d), len(column)), np.inf)
        checked = np.zeros((len(d), len(column)), dtype=bool)
        for i, lim in enumerate(limits):
            for name, value in lim.items():
                bounds[i, column[name]] = value
                checked[i, column[name]] = True

        def holds(idx: np.ndarray, scale: np.ndarray) -> np.ndarray:
            counts = keep_counts_many(np.clip(scale[:, None] * d[idx], self.min_keep, 1.0), self.channels,
                                      self.min_channels, self.round_to)
            costs = np.stack(self.analytic.costs_many(counts), axis=1)
            return np.all(~checked[idx] | within(costs, bounds[idx]), axis=1)  # within() works elementwise

        lowest = self.min_keep / d.max(axis=1)
        top = 1.0 / d.min(axis=1)  # beyond it every ratio is 1
        everything = np.arange(len(d))
        at_top = holds(everything, top)
        scale = np.where(at_top, top, lowest)  # lowest: also where even it misses a limit
        rest = np.flatnonzero(~at_top)
        rest = rest[holds(rest, lowest[rest])]
        lo, hi = lowest[rest], top[rest]
        going = np.ones(len(rest), dtype=bool)
        for _ in range(BISECT_STEPS):  # largest_true's, row by row
            at = np.flatnonzero(going)
            if len(at) == 0:
                break
            mid = 0.5 * (lo[at] + hi[at])
            ok = holds(rest[at], mid)
            lo[at] = np.where(ok, mid, lo[at])
            hi[at] = np.where(ok, hi[at], mid)
            going[at] = ~(hi[at] - lo[at] < BISECT_TOL)
        scale[rest] = lo
        return np.clip(scale[:, None] * d, self.min_keep, 1.0)

    def aimed_limits(self, level: int, macs_fraction: float) -> dict[str, float]:
        """The level's steering limits with the MACs aim a black-box budget would set replaced by
        ``macs_fraction`` of the base's MACs (:class:`~rayprune.agents.baselines.UniformAgent` bisects it on
        measurements)."""
        limits = {n: lim for n, lim in self.levels[level].limits.items() if n in self.analytic_costs()}
        aim = macs_fraction * self.analytic.base[PROXY]
        limits[PROXY] = min(limits.get(PROXY, math.inf), aim)
        return limits

    def macs_aim(self, level: int) -> Optional[float]:
        """The MACs fraction the black-box budgets' proxies aim ``level`` at (None: the level has none)."""
        if self.analytic is None or not any(n in self.levels[level].limits for n in self.blackbox_costs()):
            return None
        return min(max(self.proxies[n].x_for(self.levels[level].limits[n]), 1e-6)
                   for n in self.blackbox_costs() if n in self.levels[level].limits)

    def uniform(self, level: int, limits: Optional[Mapping[str, float]] = None) -> list[float]:
        """The largest single keep ratio for every group that meets the level's steering limits (or ``limits``)."""
        limits = self.steering_limits(level) if limits is None else limits
        if not limits:
            return [1.0] * self.num_groups
        r = largest_true(lambda x: self.meets([x] * self.num_groups, limits), self.min_keep, 1.0)
        return self.rounded([self.min_keep if r is None else r] * self.num_groups)

    def global_candidate(self, level: int, limits: Optional[Mapping[str, float]] = None) -> list[float]:
        """Global pruning aimed at the level: channels ranked across the whole network by their normalised
        importance (Torch-Pruning's ``global_pruning=True``), and the least important dropped, wherever they
        are, until the candidate meets the level's steering limits: the fewest dropped that fit.

        A group keeps the share of its channels that score above the threshold (at least ``min_keep``, and
        its rounding rule). If even the highest threshold misses a limit, that smallest candidate.
        """
        if self.importance is None:
            raise ValueError("Global pruning needs each channel's importance score; this search space has none.")
        limits = self.steering_limits(level) if limits is None else limits

        # a group the criterion does not score (NaN) is never dropped by the ranking, as Torch-Pruning skips it
        scores = [np.where(np.isnan(s), np.inf, s) for s in self.importance]

        def ratios(k: int) -> list[float]:  # drop every channel scoring at most thresholds[k] (k = -1: none)
            if k < 0:
                return [1.0] * self.num_groups
            t = thresholds[k]
            return [max(self.min_keep, np.count_nonzero(s > t) / c) for s, c in zip(scores, self.channels)]

        pooled = np.concatenate(scores) if self.num_groups else np.zeros(0)
        thresholds = np.unique(pooled[np.isfinite(pooled)])
        if not limits or self.meets(ratios(-1), limits):
            return self.rounded(ratios(-1))
        lo, hi = -1, len(thresholds) - 1  # ratios(lo) misses; find the smallest k in (lo, hi] that meets
        if not self.meets(ratios(hi), limits):
            return self.rounded(ratios(hi))
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if self.meets(ratios(mid), limits) else (mid, hi)
        return self.rounded(ratios(hi))

    def observe(self, rows: Sequence[Mapping]) -> None:
        """Feed measured rows to the black-box proxies (called by the search loop after each batch)."""
        if not self.proxies or self.analytic is None:
            return
        base = self.analytic.base[PROXY]
        for row in rows:
            if row.get("status") != "ok" or row.get("cached"):
                continue
            x = self.analytic(PROXY, row["keep_counts"]) / base
            for name, fit in self.proxies.items():
                fit.add(x, row.get(name))

    @property
    def aiming_blind(self) -> bool:
        """Whether a black-box budget has no measured row yet (its proxy is only the base's ratio to MACs): the
        search loop then lets the batch in flight be measured before it asks for the next, rather than
        proposing two batches on the same guess (a small CNN whose latency barely moves with MACs got 7
        distinct candidates in 64 that way, and none under its budget)."""
        return any(not fit.xs for fit in self.proxies.values())

    def unsteerable(self) -> list[str]:
        """Black-box costs whose proxy shows they do not grow with MACs (see :meth:`ProxyFit.steers`)."""
        return sorted(n for n, f in self.proxies.items() if not f.steers())

    def state_dict(self) -> dict:
        return {"proxies": {n: {"xs": f.xs, "ys": f.ys} for n, f in self.proxies.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        for name, data in state.get("proxies", {}).items():
            if name in self.proxies:
                self.proxies[name].xs, self.proxies[name].ys = list(data["xs"]), list(data["ys"])
                self.proxies[name]._aims = {}


def group_features(problem) -> np.ndarray:
    """Per group, 13 static descriptors in about [0, 1]: position, type, channels, kernel, stride,
    padding, and the share of params/MACs removed if that group alone went to ``min_keep``."""
    space, groups = problem.space, problem.space.groups
    max_in = max(g.in_channels for g in groups)
    max_out = max(g.channels for g in groups)
    shares = np.zeros((len(groups), 2), dtype=np.float32)
    if problem.analytic.exact:
        a = problem.analytic
        full = [g.channels for g in groups]
        for i, g in enumerate(groups):
            counts = list(full)
            counts[i] = keep_counts([problem.config.pruning.min_keep], [g.channels], [g.min_channels], [space.multiples[i]])[0]
            for j, name in enumerate(("params", "macs")):
                shares[i, j] = 1.0 - a(name, counts) / a.base[name]
    feats = [[
        i / len(groups), float(g.root_type.startswith("Conv")), float(g.root_type == "Linear"),
        g.in_channels / max_in, g.channels / max_out,
        g.kernel_size[0] / 7, g.kernel_size[1] / 7, g.stride[0] / 4, g.stride[1] / 4,
        max(g.padding[0], 0) / 4, max(g.padding[1], 0) / 4, shares[i, 0], shares[i, 1],
    ] for i, g in enumerate(groups)]
    return np.asarray(feats, dtype=np.float32)
