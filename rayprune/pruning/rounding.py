"""Keep ratio -> channel count, rounded to a hardware-friendly multiple."""

from __future__ import annotations

import hashlib
import math
from typing import Optional, Sequence, Union

import numpy as np

__all__ = ["keep_channels", "keep_counts", "keep_counts_many", "check_keep_ratio", "candidate_id", "RoundTo"]


def check_keep_ratio(ratio: float, *, name: str = "keep ratio") -> float:
    """Return ``ratio`` as a float if it lies in (0, 1], else raise ``ValueError`` naming it.

    >>> check_keep_ratio(0.5)
    0.5
    """
    if isinstance(ratio, (bool, str, bytes)):
        raise TypeError(f"The {name} must be a number in (0, 1]; got {ratio!r}.")
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise TypeError(f"The {name} must be a number in (0, 1]; got {ratio!r}.") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(f"The {name} must be in (0, 1]; got {ratio!r}.")
    return value


def keep_channels(ratio: float, channels: int, round_to: int = 1) -> int:
    """Number of channels kept when keeping ``ratio`` of ``channels``.

    ``k = round_to * floor(ratio * channels / round_to + 1/2)``, then clipped to
    ``[min(round_to, channels), channels]``; a ratio of 1 always keeps every channel.

    >>> keep_channels(0.5, 64, round_to=8)
    32
    >>> keep_channels(0.3, 64, round_to=8)   # 19.2 -> 16
    16
    >>> keep_channels(0.01, 64, round_to=8)  # never below one multiple
    8
    >>> keep_channels(1.0, 20, round_to=8)   # the full layer, not 16 or 24
    20
    """
    ratio = check_keep_ratio(ratio)
    if channels < 1:
        raise ValueError(f"channels must be >= 1; got {channels}.")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1; got {round_to}.")
    if ratio >= 1.0:
        return channels
    k = round_to * math.floor(ratio * channels / round_to + 0.5)
    return int(min(max(k, min(round_to, channels), 1), channels))


RoundTo = Union[int, Sequence[int]]
"""The multiple kept channels are rounded to: one for every group, or one per group (a group pruned alike in the
blocks of a grouped convolution rounds to a multiple of its blocks too: ``PruningSpace.multiples``)."""


def _multiples(round_to: RoundTo, n: int) -> list[int]:
    steps = [int(round_to)] * n if np.ndim(round_to) == 0 else [int(r) for r in round_to]
    if len(steps) != n:
        raise ValueError(f"Expected one round_to per prunable group ({n}); got {len(steps)}.")
    if any(r < 1 for r in steps):
        raise ValueError(f"round_to must be >= 1; got {min(steps)}.")
    return steps


def keep_counts(
    ratios: Sequence[float], channels: Sequence[int], min_channels: Optional[Sequence[int]] = None,
    round_to: RoundTo = 1,
) -> list[int]:
    """Channels kept per group: :func:`keep_channels` of each ratio, at least ``min_channels[g]``.

    The one rounding rule of a candidate, shared by the pruning space, the agents' envs and the
    evaluator pool's cache key. Ratios are clipped into ``(0, 1]`` first (an agent's arithmetic
    may land a hair outside), so any float gives a valid candidate. ``round_to``: one multiple, or one
    per group.

    >>> keep_counts([0.5, 0.0, 1.2], [64, 64, 10], [1, 4, 1], round_to=8)
    [32, 8, 10]
    >>> keep_counts([0.3, 0.3], [64, 64], round_to=[1, 4])
    [19, 20]
    """
    if len(ratios) != len(channels):
        raise ValueError(f"Expected {len(channels)} keep ratios (one per prunable group); got {len(ratios)}.")
    floors = list(min_channels) if min_channels is not None else [1] * len(channels)
    steps = _multiples(round_to, len(channels))
    return [
        max(keep_channels(min(1.0, max(float(r), 1e-9)), int(c), s), int(f))
        for r, c, f, s in zip(ratios, channels, floors, steps)
    ]


def keep_counts_many(
    ratios, channels: Sequence[int], min_channels: Optional[Sequence[int]] = None, round_to: RoundTo = 1
) -> np.ndarray:
    """:func:`keep_counts` of every row of a ``[batch, groups]`` matrix of keep ratios, as an int64 array.

    The same rule in the same float arithmetic, so each row equals :func:`keep_counts` of it
    exactly: the clip into ``(0, 1]`` (NaN counts as 1, as Python's ``min``/``max`` make it), a
    ratio of 1 keeps every channel, ``round_to`` multiples, never below one multiple nor
    ``min_channels[g]``.

    >>> keep_counts_many([[0.5, 0.0, 1.2], [0.3, 0.01, 0.5]], [64, 64, 10], [1, 4, 1], round_to=8).tolist()
    [[32, 8, 10], [16, 8, 8]]
    """
    r = np.asarray(ratios, dtype=float)
    if r.ndim != 2 or r.shape[1] != len(channels):
        raise ValueError(f"Expected keep ratios of shape (batch, {len(channels)}) (one per prunable group); "
                         f"got {r.shape}.")
    c = np.asarray([int(x) for x in channels], dtype=np.int64)
    floors = np.asarray([int(f) for f in min_channels] if min_channels is not None else [1] * len(c), dtype=np.int64)
    if (c < 1).any():
        raise ValueError(f"channels must be >= 1; got {int(c.min())}.")
    round_to = np.asarray(_multiples(round_to, len(c)), dtype=np.int64)
    r = np.where(1e-9 > r, 1e-9, r)   # max(r, 1e-9): r unless 1e-9 is greater (NaN stays)
    r = np.where(r < 1.0, r, 1.0)     # min(1.0, r): 1 unless r is smaller (NaN becomes 1)
    k = round_to * np.floor(r * c / round_to + 0.5).astype(np.int64)
    k = np.minimum(np.maximum(np.maximum(k, np.minimum(round_to, c)), 1), c)
    return np.maximum(np.where(r >= 1.0, c, k), floors)


def candidate_id(counts: Sequence[int]) -> str:
    """Stable id of a candidate: a hash of its rounded channel counts.

    >>> candidate_id([8, 16])
    '4866b446ad243d7e'
    """
    return hashlib.sha1(",".join(str(int(c)) for c in counts).encode()).hexdigest()[:16]
