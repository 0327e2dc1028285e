"""NEON's reward with a user-set accuracy tolerance τ (METHODS.md §2).

With ``s`` the share of the layer removed by this step **in percent** (0–100) and ``Δ`` the
accuracy change of the pruned network against the unpruned one **in points**::

    R = −s³   if Δ < −τ          (beyond tolerance: punished, hard, the more the bigger the cut)
    R =  s³   if Δ > 0           (more accurate than before: rewarded, hard)
    R =  s    otherwise          (within tolerance: rewarded linearly)

A step that removes nothing (``s = 0``) is worth 0 in every regime.

``units = "fraction"`` measures ``s`` in [0, 1] instead — an ablation, not the method: METHODS.md
and the authors' code use percent, where a cut beyond tolerance costs as much as 1,600
within-tolerance cuts of 40 %; in fractions it costs less than one (docs/neon.md, "Reward units"). For learning, the environment
multiplies ``R`` by a positive constant (:func:`reward_scale`); that rescales returns and leaves
the optimal policy unchanged.

Example:
    >>> neon_reward(20.0, -0.5, tolerance=1.0), neon_reward(20.0, 0.5, tolerance=1.0)
    (20.0, 8000.0)
    >>> neon_reward(20.0, -3.0, tolerance=1.0), reward_regime(-3.0, tolerance=1.0)
    (-8000.0, 'beyond_tolerance')
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["REGIMES", "UNITS", "neon_reward", "reward_regime", "reward_scale"]

UNITS: tuple[str, ...] = ("percent", "fraction")
"""How ``s`` is measured: percent of the layer (the method) or its fraction (an ablation)."""

REGIMES: tuple[str, ...] = ("beyond_tolerance", "improved", "within_tolerance")
"""The reward's three regimes, as :func:`reward_regime` names them."""


def _check(name: str, value: float, *, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{name}' must be a finite number; got {value!r}.")
    if not low <= value <= high:
        raise ValueError(f"'{name}' must be in [{low}, {high}]; got {value!r}.")
    return float(value)


def reward_regime(accuracy_change: float, *, tolerance: float) -> str:
    """Which of :data:`REGIMES` a step with accuracy change ``Δ`` (points) falls in."""
    delta = _check("accuracy_change", accuracy_change)
    tau = _check("tolerance", tolerance, low=0.0)
    if delta < -tau:
        return "beyond_tolerance"
    if delta > 0:
        return "improved"
    return "within_tolerance"


def _units(units: str) -> float:
    if units not in UNITS:
        raise ValueError(f"'units' must be one of {list(UNITS)}; got {units!r}.")
    return 1.0 if units == "percent" else 0.01


def neon_reward(removed_percent: float, accuracy_change: float, *, tolerance: float, units: str = "percent") -> float:
    """NEON's step reward; ``removed_percent`` in [0, 100], ``accuracy_change`` and ``tolerance`` in points;
    ``s`` is ``removed_percent`` (``units="percent"``, the method) or ``removed_percent / 100``."""
    s = _check("removed_percent", removed_percent, low=0.0, high=100.0) * _units(units)
    regime = reward_regime(accuracy_change, tolerance=tolerance)
    if regime == "beyond_tolerance":
        return -(s**3)
    if regime == "improved":
        return s**3
    return s


def reward_scale(actions: Sequence[float], units: str = "percent") -> float:
    """``1 / s_max³`` for the largest cut the action set allows (``s_max = 100·(1 − min keep)``),
    so a step's scaled reward lies in [−1, 1] — except where rounding on a layer of a few neurons
    removes more than ``s_max`` (2 → 1 neuron is 50 %: ±1.95 with the default actions).

    Example:
        >>> reward_scale([1.0, 0.9, 0.8, 0.7, 0.6]) == 1 / 40**3
        True
    """
    if not actions:
        raise ValueError("'actions' must hold at least one keep fraction; got none.")
    s_max = 100.0 * (1.0 - min(float(a) for a in actions)) * _units(units)
    if units == "percent":
        return 1.0 / max(s_max, 1.0) ** 3
    return 1.0 / max(s_max, 1e-3)  # in fractions s <= 1, so s³ <= s and |R| <= s_max
