"""How much a finite split can say about an accuracy change: a one-sided paired score bound.

A pruned classifier and its base, scored on the same ``n`` samples, differ only where they
disagree: ``gains`` samples the pruned network gets right and the base wrong, ``losses`` the other
way round. The accuracy change is ``Δ̂ = (gains − losses) / n`` and its lower confidence bound is
Tango's score bound (Tango 1998, *Stat. Med.* 17:891; one of the intervals Fagerland, Lydersen &
Laake 2014 recommend for paired proportions): the smallest Δ that a one-sided score test at level
``1 − confidence`` does not reject,

    T(Δ) = (gains − losses − n·Δ) / sqrt(n·(2·q̃ + Δ·(1 − Δ))),      L = min{Δ : T(Δ) ≤ z},

with ``z`` the standard normal quantile at ``confidence`` and ``q̃`` the maximum-likelihood share
of losses when the change is held at Δ (the positive root of ``2n·q² + W·q − losses·Δ·(1 − Δ) = 0``):

    q̃ = (sqrt(W² + 8·n·losses·Δ·(1 − Δ)) − W) / (4n),      W = −(gains + losses) + (2n − gains + losses)·Δ.

Why paired: the two networks are scored on the same samples and agree on most of them, so only
the disagreements carry information; an interval on two independent accuracies would ignore that
and be several times wider. Why a score bound: it stays honest where the simple Wald bound
``Δ̂ − z·se`` collapses — with no disagreement on the split the Wald interval is a single point,
while the score bound is ``−z²/(n + z²)``, close to the rule of three: 60 samples that all agree
still leave a drop of 2.7 points possible at 90 % confidence.

Example:
    >>> round(100 * paired_lower_bound(0, 0, 60, confidence=0.9), 2)   # 60 samples, full agreement
    -2.66
    >>> change = PairedChange(gains=1, losses=3, samples=300, confidence=0.9)
    >>> round(change.points, 2), round(change.lower_points, 2), change.within(1.0)
    (-0.67, -1.76, False)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

__all__ = ["PairedChange", "paired_counts", "paired_lower_bound", "tango_statistic", "z_value"]

_BISECTIONS = 100
"""Halvings of [−1, Δ̂] when solving T(Δ) = z: 2⁻¹⁰⁰ is far below any change a split resolves."""


def z_value(confidence: float) -> float:
    """The standard normal quantile at ``confidence`` (one-sided): 0.9 → 1.2816.

    >>> round(z_value(0.9), 4), z_value(0.5)
    (1.2816, 0.0)
    """
    _check_confidence(confidence)
    return NormalDist().inv_cdf(confidence)


def tango_statistic(delta: float, gains: int, losses: int, samples: int) -> float:
    """Tango's score statistic T(Δ) for the paired change ``delta`` (a fraction in (−1, 1)).

    Decreasing in Δ; 0 at ``Δ = Δ̂``; large where Δ is far below what the counts show.

    >>> tango_statistic(-0.1, 0, 6, 100) > 0 > tango_statistic(0.0, 0, 6, 100)   # Δ̂ = −0.06
    True
    """
    n = samples
    w = -(gains + losses) + (2 * n - gains + losses) * delta
    q = (math.sqrt(max(w * w + 8 * n * losses * delta * (1 - delta), 0.0)) - w) / (4 * n)
    variance = n * (2 * q + delta * (1 - delta))
    numerator = gains - losses - n * delta
    if variance <= 0.0:  # only at Δ = Δ̂ with no disagreement (0/0) or at the bounds ±1
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def paired_lower_bound(gains: int, losses: int, samples: int, *, confidence: float) -> float:
    """The one-sided lower confidence bound of the paired accuracy change, as a fraction in [−1, 1].

    ``confidence = 0.5`` is the point estimate ``(gains − losses) / samples`` itself (z = 0).

    >>> round(paired_lower_bound(0, 0, 1000, confidence=0.9), 4)   # −z²/(n + z²)
    -0.0016
    >>> paired_lower_bound(2, 5, 100, confidence=0.5)
    -0.03
    """
    _check_counts(gains, losses, samples)
    z = z_value(confidence)
    estimate = (gains - losses) / samples
    if estimate <= -1.0 or z == 0.0:
        return estimate
    low, high = -1.0, estimate  # T(low) > z ≥ T(high) = 0: the root lies between
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        if tango_statistic(mid, gains, losses, samples) > z:
            low = mid
        else:
            high = mid
    return high


def paired_counts(base_correct: np.ndarray, pruned_correct: np.ndarray) -> tuple[int, int]:
    """``(gains, losses)``: samples only the pruned network gets right, and only the base.

    >>> paired_counts(np.array([True, True, False, False]), np.array([True, False, True, True]))
    (2, 1)
    """
    base, pruned = np.asarray(base_correct, dtype=bool), np.asarray(pruned_correct, dtype=bool)
    if base.shape != pruned.shape or base.ndim != 1:
        raise ValueError(f"'base_correct' and 'pruned_correct' must be 1-D and of the same length; "
                         f"got shapes {base.shape} and {pruned.shape}.")
    return int((pruned & ~base).sum()), int((base & ~pruned).sum())


@dataclass(frozen=True)
class PairedChange:
    """The accuracy change of a pruned network against its base on one split, with its lower bound.

    ``identical`` marks the base network itself (nothing pruned, nothing retrained): its change is
    exactly 0, not an estimate, so its bound is 0 too.

    Example:
        >>> PairedChange.of(np.array([True, False]), np.array([True, True]), confidence=0.9).gains
        1
    """

    gains: int
    losses: int
    samples: int
    confidence: float
    identical: bool = False

    def __post_init__(self) -> None:
        _check_counts(self.gains, self.losses, self.samples)
        _check_confidence(self.confidence)
        if self.identical and (self.gains or self.losses):
            raise ValueError(f"An 'identical' network cannot disagree with its base; got {self.gains} gains "
                             f"and {self.losses} losses.")

    @classmethod
    def of(cls, base_correct: np.ndarray, pruned_correct: np.ndarray, *, confidence: float) -> PairedChange:
        """From per-sample correctness of the base and the pruned network on the same samples."""
        gains, losses = paired_counts(base_correct, pruned_correct)
        return cls(gains, losses, len(base_correct), confidence)

    @classmethod
    def unchanged(cls, samples: int, *, confidence: float) -> PairedChange:
        """The base network against itself."""
        return cls(0, 0, samples, confidence, identical=True)

    @property
    def change(self) -> float:
        """Δ̂ as a fraction."""
        return (self.gains - self.losses) / self.samples

    @property
    def lower(self) -> float:
        """The one-sided lower bound of Δ at ``confidence``, as a fraction."""
        if self.identical:
            return 0.0
        return paired_lower_bound(self.gains, self.losses, self.samples, confidence=self.confidence)

    @property
    def points(self) -> float:
        return 100.0 * self.change

    @property
    def lower_points(self) -> float:
        return 100.0 * self.lower

    def within(self, tolerance: float) -> bool:
        """Whether the change is shown to be at least ``−tolerance`` points: ``lower_points ≥ −τ``."""
        return self.lower_points >= -tolerance - 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "gains": self.gains, "losses": self.losses, "confidence": self.confidence,
                "accuracy_change_points": self.points, "lower_bound_points": self.lower_points}


def _check_counts(gains: int, losses: int, samples: int) -> None:
    for name, value in (("gains", gains), ("losses", losses), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"'{name}' must be an integer >= 0; got {value!r}.")
    if samples < 1:
        raise ValueError(f"'samples' must be >= 1: a change on no samples has no bound; got {samples}.")
    if gains + losses > samples:
        raise ValueError(f"'gains' + 'losses' must be <= 'samples'; got {gains} + {losses} > {samples}.")


def _check_confidence(confidence: float) -> None:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 <= confidence < 1.0:
        raise ValueError(f"'confidence' must be a number in [0.5, 1); got {confidence!r}.")
