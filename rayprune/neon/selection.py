"""Checking NEON's result on data the episodes never saw: the selection split and the walk.

An episode's steps decide on validation data: whether a cut is undone (rollback), its reward, the
early stopping of the retraining, and which network each rollout ends with. Checking the result
on those same samples would only repeat their noise (hundreds of accept/undo questions have been
asked of them), so rayprune splits the validation split in two:

* the **decide split** — all the validation data an episode sees;
* the **selection split** (``neon.selection_fraction`` of the validation split, stratified by
  label and seeded) — seen by nothing until the episodes are over.

The rollouts are then ranked as before, on the decide split (the smallest network within τ
first), and the winner's **path** — the unpruned network, then each network its episode reached
up to the winner — is walked on the selection split (:func:`check_path`): a network passes when
the lower confidence bound of its accuracy change against the base is at least −τ
(:class:`~rayprune.neon.interval.PairedChange`, one-sided, ``neon.confidence``), and the walk stops
at the first network that cannot be shown within τ. The result is the last network that passed;
the unpruned network when the first cut already cannot be shown.

Why one path and a stop at the first failure: the order of the tests (the path, fixed by the
decide split before the selection split is looked at) makes this a fixed-sequence test, so the
chance that the result is more than τ below the base is at most ``1 − confidence`` without a
correction for the number of networks tried; testing every rollout's networks and keeping the
smallest that passes would multiply that chance by the number of tests. The default walk,
``candidate_first`` (:func:`walk_plans`), takes a second look after the candidate alone fails, which
can double that chance; the benchmark measures how often τ holds on test (docs/neon.md).

Example:
    >>> base = np.ones(200, dtype=bool)                      # the base gets all 200 right
    >>> path = [base.copy(), np.r_[np.zeros(20, bool), np.ones(180, bool)]]   # a cut, then a bad one
    >>> walk = check_path(base, path, tolerance=1.0, confidence=0.9)
    >>> walk.shown, walk.complete, round(walk.failed.points, 1)
    (1, False, -10.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from rayprune.data import Dataset, subsample_indices
from rayprune.engine import model_device, training_mode
from rayprune.neon.interval import PairedChange, paired_lower_bound

__all__ = ["OUTCOMES", "WALKS", "PathCheck", "SelectionSplit", "check_path", "correct", "describe", "walk_plans",
           "resolution_points", "selection_split", "tolerance_units_hint", "walk_positions"]

OUTCOMES = ("accepted", "fallback", "unpruned")
"""What the check did with the rollouts' winner: handed it back (shown within τ), handed back an
earlier network of its path instead, or handed back the unpruned network."""


@dataclass(frozen=True, eq=False)
class SelectionSplit:
    """The validation split cut in two: what the episodes decide on, and what checks their result.

    ``decide`` is the dataset with only the decide part as its validation split (train and test
    as they were); ``x``/``y`` are the selection samples. Both index arrays are sorted positions
    in the original validation split, disjoint, and together cover it.
    """

    decide: Dataset
    x: Tensor
    y: Tensor
    decide_indices: np.ndarray
    select_indices: np.ndarray

    @property
    def samples(self) -> int:
        return len(self.select_indices)


def selection_split(data: Dataset, fraction: float, *, seed: int) -> SelectionSplit:
    """Hold ``fraction`` of ``data``'s validation split out as the selection split (stratified, seeded).

    At least one sample goes to each side.

    Example:
        >>> from rayprune.neon.suite import load_suite_dataset
        >>> split = selection_split(load_suite_dataset("iris", seed=0), 0.5, seed=0)
        >>> len(split.decide.y_val), split.samples, set(split.decide_indices) & set(split.select_indices)
        (11, 12, set())
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise ValueError(f"'selection_fraction' must be a number in (0, 1); got {fraction!r}.")
    labels = data.y_val.cpu().numpy()
    n = len(labels)
    if n < 2:
        raise ValueError(f"The validation split has {n} sample(s): too few to hold a selection split out of it "
                         "(at least 2 are needed, one to decide and one to check; more to check anything useful).")
    count = min(max(int(round(fraction * n)), 1), n - 1)
    select = subsample_indices(labels, count, seed=seed)
    decide = np.setdiff1d(np.arange(n), select)
    device = data.y_val.device
    pick = lambda idx: torch.as_tensor(idx, dtype=torch.long, device=device)  # noqa: E731
    decide_data = dataclasses.replace(data, x_val=data.x_val[pick(decide)], y_val=data.y_val[pick(decide)])
    return SelectionSplit(decide_data, data.x_val[pick(select)], data.y_val[pick(select)], decide, select)


def correct(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 512) -> np.ndarray:
    """Per sample, whether ``model``'s top-1 prediction is right (eval mode; flags restored)."""
    device = model_device(model) or x.device
    hits = []
    with training_mode(model, False), torch.inference_mode():
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            hits.append((model(xb).argmax(dim=1) == yb).cpu())
    return torch.cat(hits).numpy() if hits else np.zeros(0, dtype=bool)


@dataclass(frozen=True)
class PathCheck:
    """The walk along one path on the selection split.

    ``shown`` counts the leading networks of the path shown within τ; with the unpruned network
    as number 0, the result is network number ``shown``. ``changes`` holds the networks walked:
    the ones shown, then the first that was not (if the walk stopped).
    """

    shown: int
    changes: tuple[PairedChange, ...]

    @property
    def complete(self) -> bool:
        """Whether every network of the path was shown within τ."""
        return len(self.changes) == self.shown

    @property
    def failed(self) -> PairedChange | None:
        """The first network that could not be shown within τ (None if none)."""
        return None if self.complete else self.changes[-1]

    @property
    def result(self) -> PairedChange | None:
        """The change of the network handed back (None: the unpruned network)."""
        return self.changes[self.shown - 1] if self.shown else None


def check_path(base_correct: np.ndarray, path_correct: Sequence[np.ndarray], *, tolerance: float,
               confidence: float) -> PathCheck:
    """Walk a path of pruned networks on the selection split, stopping at the first not shown within τ.

    ``path_correct`` holds, per network of the path after the unpruned one (in the order the
    episode reached them: each smaller than the one before), its per-sample correctness on the
    selection split; ``base_correct`` the base network's. A network is shown within τ when the
    lower bound of its paired accuracy change is at least ``−tolerance`` points.
    """
    if tolerance < 0:
        raise ValueError(f"'tolerance' must be >= 0 (accuracy points); got {tolerance!r}.")
    changes: list[PairedChange] = []
    for pruned in path_correct:
        change = PairedChange.of(base_correct, pruned, confidence=confidence)
        changes.append(change)
        if not change.within(tolerance):
            return PathCheck(len(changes) - 1, tuple(changes))
    return PathCheck(len(changes), tuple(changes))


WALKS = ("every", "doubling", "candidate", "candidate_first")
"""Which networks of the path the check walks (``neon.walk``): every one, the first to reach each
power of two of parameter reduction plus the candidate, the candidate alone, or the candidate alone
and, if it is not shown within τ, every one (:func:`walk_plans`)."""
_SINGLE_WALKS = WALKS[:3]


def walk_positions(reductions: Sequence[float], walk: str) -> list[int]:
    """Positions in a path (``reductions[0]`` is the unpruned network's, 1.0) that the check walks,
    the unpruned network (0) first.

    ``every``: each network; ``doubling``: the first network whose reduction reaches each next power
    of two, and the last one (the candidate) — about log2 of the reduction tests instead of one per
    step, so a dip in the middle of a long path (a cut the next steps' retraining recovers from, or
    one unlucky split) stops fewer walks; ``candidate``: the last network only (one test; if it
    fails, the unpruned network). The positions depend on parameter counts only, fixed before the
    selection split is looked at, so the walk stays a fixed-sequence test.

    >>> walk_positions([1.0, 1.3, 1.9, 2.4, 3.1, 4.2, 9.0, 9.5], "doubling")
    [0, 3, 5, 6, 7]
    >>> walk_positions([1.0, 1.3, 1.9], "candidate"), walk_positions([1.0, 1.3], "every")
    ([0, 2], [0, 1])
    """
    if walk not in _SINGLE_WALKS:
        raise ValueError(f"'walk' must be one of {list(_SINGLE_WALKS)}; got {walk!r}.")
    last = len(reductions) - 1
    if walk == "every" or last <= 0:
        return list(range(last + 1))
    if walk == "candidate":
        return [0, last]
    positions, level = [0], 0
    for i in range(1, last + 1):
        reached = int(np.floor(np.log2(max(reductions[i], 1.0)) + 1e-9))
        if reached > level:
            positions.append(i)
            level = reached
    if positions[-1] != last:
        positions.append(last)
    return positions


def walk_plans(reductions: Sequence[float], walk: str) -> list[list[int]]:
    """The walks the check makes, in order (each as :func:`walk_positions`): the first that shows
    every network it walks within τ decides; if none does, the last one's result is handed back.

    ``candidate_first`` is two looks: the candidate alone, then, if it is not shown, every network of
    the path (which then stops before the candidate). A second look after a failure is not a
    fixed-sequence test: the chance of handing back a network more than τ below the base can reach
    twice ``1 − confidence``; BENCHMARKS.md measures how often τ holds on test.

    >>> walk_plans([1.0, 1.3, 1.9], "candidate_first"), walk_plans([1.0, 1.3, 1.9], "every")
    ([[0, 2], [0, 1, 2]], [[0, 1, 2]])
    """
    if walk == "candidate_first":
        return [walk_positions(reductions, "candidate"), walk_positions(reductions, "every")]
    if walk not in WALKS:
        raise ValueError(f"'walk' must be one of {list(WALKS)}; got {walk!r}.")
    return [walk_positions(reductions, walk)]


def resolution_points(samples: int, confidence: float) -> float:
    """The lower bound a split of ``samples`` gives a network that agrees with its base on every
    sample (``−z²/(n + z²)``, in points): how close to "no change" the split can resolve. Below
    its magnitude, a tolerance can be shown only for a network that gets more samples right than
    its base.

    >>> round(resolution_points(60, 0.9), 2), round(resolution_points(600, 0.9), 2)
    (-2.66, -0.27)
    """
    return 100.0 * paired_lower_bound(0, 0, samples, confidence=confidence)


def tolerance_units_hint(tolerance: float) -> str:
    """A note for a tolerance that reads like a fraction (0 < τ < 0.1): τ is in accuracy points, so 0.01 accepts a
    hundredth of a point, which no validation split can show, where the user most likely meant one point.

    >>> tolerance_units_hint(0.01)
    ' (the tolerance is in accuracy points: 0.01 accepts a loss of 0.01 %; for a loss of 1 %, give 1)'
    >>> tolerance_units_hint(1.0), tolerance_units_hint(0.0)
    ('', '')
    """
    if not 0.0 < tolerance < 0.1:
        return ""
    return (f" (the tolerance is in accuracy points: {tolerance:g} accepts a loss of {tolerance:g} %; for a loss of "
            f"{100 * tolerance:g} %, give {100 * tolerance:g})")


def describe(neon: dict[str, Any]) -> str:
    """The lines ``rayprune prune --agent neon`` prints from ``summary.json``'s ``neon`` block."""
    sel = neon["selection"]
    counts = (f": the pruned network right where the base was wrong on {sel['gains']}, wrong where it was right on "
              f"{sel['losses']}" if "gains" in sel and "losses" in sel else "")
    line = (f"neon (tolerance {neon['tolerance']:g} pt): x{neon['reduction_factor']:.2f} fewer parameters; "
            f"selection split ({sel['samples']} samples the episodes never saw{counts}) "
            f"{sel['accuracy_change_points']:+.2f} pt, at least {sel['lower_bound_points']:+.2f} pt at "
            f"{100 * sel['confidence']:g} % confidence; validation {neon['accuracy_change_val_points']:+.2f} pt")
    test = neon.get("accuracy_change_test_points")
    if test is not None:
        line += f", test {test:+.2f} pt"
    if neon["outcome"] != "accepted" or neon.get("final_finetune_kept") is False:
        line += f"\nneon: {neon['reason']}"
    if test is not None and test < -neon["tolerance"]:
        line += (f"\nneon: warning: on the test split the pruned network is {test:+.2f} pt from the base, beyond the "
                 f"tolerance of {neon['tolerance']:g} pt. The check on {sel['samples']} selection samples holds at "
                 f"{100 * sel['confidence']:g} % confidence, so it can miss (docs/neon.md: 90 % of held-out networks "
                 "within tau = 1 on test at the defaults): a larger validation split, or a higher neon.confidence, "
                 "makes the promise firmer.")
    return line
