"""Deterministic, stratified train/validation/test splits of sample indices.

Splits are computed on labels only, so every reader (embedded, CIFAR, tabular) shares them and a
seed always gives the same partition of the same file.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.model_selection import train_test_split

from ..errors import UserError

__all__ = ["check_fractions", "split_indices", "subsample_indices"]


def split_indices(
    labels: np.ndarray,
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into sorted, disjoint train, validation and test indices.

    Both fractions are of the whole: ``n_test ≈ test_fraction·n`` and ``n_val ≈ val_fraction·n``.
    The split is stratified by label when every class has at least two samples and each held-out
    part is large enough to hold one sample per class; otherwise it is a plain random split. Too
    few samples to leave any for training is a ``ValueError``.

    Example:
        >>> labels = np.array([0, 1] * 50)
        >>> train, val, test = split_indices(labels, val_fraction=0.1, test_fraction=0.2, seed=0)
        >>> len(train), len(val), len(test)
        (70, 10, 20)
        >>> int(labels[test].sum())  # stratified: half of the test set is class 1
        10
    """
    labels = np.asarray(labels)
    check_fractions(val_fraction, test_fraction)
    everything = np.arange(len(labels))
    rest, test = _holdout(everything, labels, test_fraction, seed)
    # val_fraction is of the whole, so re-express it relative to what is left after the test split.
    val_share = val_fraction / (1.0 - test_fraction) if test_fraction else val_fraction
    train, val = _holdout(rest, labels[rest], val_share, seed)
    if len(labels) and not len(train):
        raise UserError(
            f"{len(labels)} samples are too few to split with val_fraction={val_fraction} and "
            f"test_fraction={test_fraction}: {len(val)} would validate, {len(test)} test and none "
            f"train; use more samples or smaller fractions."
        )
    return np.sort(train), np.sort(val), np.sort(test)


def subsample_indices(labels: np.ndarray, n: int, *, seed: int) -> np.ndarray:
    """Pick ``n`` sorted indices of ``labels``, stratified by label where possible.

    Returns every index when ``n >= len(labels)``.

    Example:
        >>> labels = np.repeat(np.arange(10), 100)
        >>> idx = subsample_indices(labels, 50, seed=0)
        >>> np.bincount(labels[idx]).tolist()
        [5, 5, 5, 5, 5, 5, 5, 5, 5, 5]
    """
    labels = np.asarray(labels)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"'n' must be a positive integer; got {n!r}.")
    everything = np.arange(len(labels))
    if n >= len(labels):
        return everything
    kept, _ = _holdout(everything, labels, 1.0 - n / len(labels), seed, n_keep=n)
    return np.sort(kept)


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise ``ValueError`` unless both fractions are in [0, 1) and leave something to train on.

    Example:
        >>> check_fractions(0.5, 0.6)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: 'val_fraction' + 'test_fraction' must be < 1 ...; got 0.5 + 0.6 = 1.1.
    """
    _check_fraction("val_fraction", val_fraction)
    _check_fraction("test_fraction", test_fraction)
    if val_fraction + test_fraction >= 1:
        raise UserError(
            "'val_fraction' + 'test_fraction' must be < 1 so that samples are left to train on; "
            f"got {val_fraction} + {test_fraction} = {val_fraction + test_fraction}."
        )


def _check_fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise UserError(f"'{name}' must be a number in [0, 1); got {value!r}.")


def _holdout(
    indices: np.ndarray,
    labels: np.ndarray,
    fraction: float,
    seed: int,
    *,
    n_keep: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (kept, held out) with about ``fraction`` of them held out."""
    if fraction == 0 or len(indices) == 0:
        return indices, indices[:0]
    n_out = len(indices) - n_keep if n_keep is not None else math.ceil(fraction * len(indices))
    n_in = len(indices) - n_out
    if n_in <= 0:  # too few samples: everything is held out (split_indices then says so)
        return indices[:0], indices
    stratify = labels if _can_stratify(labels, n_in, n_out) else None
    kept, held_out = train_test_split(
        indices, test_size=n_out, random_state=seed, shuffle=True, stratify=stratify
    )
    return kept, held_out


def _can_stratify(labels: np.ndarray, n_in: int, n_out: int) -> bool:
    """Whether scikit-learn can stratify: ≥ 2 samples per class and room for each class per side."""
    _, counts = np.unique(labels, return_counts=True)
    return bool(counts.min() >= 2 and min(n_in, n_out) >= len(counts))
