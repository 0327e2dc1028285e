"""An ``.npz`` file of arrays (``data.name: npz``, ``data.path``), read without pickle: :func:`load_npz`."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from .convert import _from_splits, _regression_from_splits
from .datasets import Dataset, _split_spec, _SplitSpec
from .user_splits import SPLITS

__all__ = ["NPZ_KEYS", "load_npz"]

NPZ_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
"""The arrays an ``.npz`` file may hold (or just ``x`` and ``y``, to be split)."""


def load_npz(path: str | Path, *, spec: _SplitSpec | None = None, task: str = "classification") -> Dataset:
    """Arrays in an ``.npz`` file (``data.name: npz``, ``data.path``).

    The file holds ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``, ``x_test``/``y_test``;
    or ``x`` and ``y``, split by the config's fractions. Images may be (N, C, H, W), (N, H, W) or
    channels-last (N, H, W, C) with C in {1, 3, 4} (transposed); features (N, F). Values are
    normalised like the built-in sets (see :mod:`rayprune.data.convert`); images are fine-tuned with the
    ``crop`` augmentation. Read with ``allow_pickle=False``: the file cannot run code. ``task="regression"``:
    ``y`` holds real-valued targets, (N,) or (N, k) (missing splits carved by a seeded permutation).

    Example::

        np.savez("mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        data = load_npz("mine.npz")
    """
    spec = spec or _split_spec(0.1, 0.2, 0, None)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.path of dataset 'npz' must be an existing .npz file; got '{path}'.")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise UserError(f"'{path}' holds a single array, not an .npz archive of named arrays.")
        with archive:
            arrays = {key: archive[key] for key in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        if isinstance(err, UserError):
            raise
        # pickled object arrays, a truncated archive, or not a numpy file at all
        raise UserError(f"Cannot read '{path}' as an .npz file of numeric arrays: {err}") from err
    splits = _npz_splits(path, arrays)
    try:
        data = (_regression_from_splits(splits, name="npz", kind=None, normalise=True, val_fraction=spec.val_fraction,
                                        test_fraction=spec.test_fraction, seed=spec.seed, max_samples=spec.max_samples)
                if task == "regression" else _from_splits(splits, spec, name="npz", normalise=True, augment="crop"))
        # the splits carved from the file's own rows, which a model trained elsewhere on the file may have seen
        data = dataclasses.replace(data, carved=tuple(s for s in ("val", "test") if s not in splits))
        if data.kind == "image":  # (the arrays' own layout, whichever it was, made NCHW)
            data = dataclasses.replace(data, source_steps=(
                "(N, H, W, C) arrays transposed to (N, C, H, W); (N, H, W) given a channel axis",))
        return data
    except UserError as err:
        raise type(err)(f"The arrays in '{path}': {err}") from err


def _npz_splits(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    keys = set(arrays)
    unsplit = {"x", "y"}
    allowed = "x_train and y_train (optionally x_val, y_val, x_test, y_test), or x and y"
    if keys & unsplit and keys & set(NPZ_KEYS):
        raise UserError(
            f"'{path}' must hold either {allowed}, not both; got keys {sorted(keys)}."
        )
    pairs = [("", "train")] if keys & unsplit else [(f"_{s}", s) for s in SPLITS]
    expected = {f"{xy}{suffix}" for suffix, _ in pairs for xy in ("x", "y")}
    extra = sorted(keys - expected)
    missing = sorted(
        f"{xy}{suffix}"
        for suffix, split in pairs
        for xy in ("x", "y")
        if f"{xy}{suffix}" not in keys and (split == "train" or keys & {f"x{suffix}", f"y{suffix}"})
    )
    if extra or missing:
        problems = "; ".join(
            part for part in (f"missing {missing}" if missing else "", f"unknown {extra}" if extra else "")
            if part
        )
        raise UserError(
            f"'{path}' must hold {allowed}; {problems} (keys in the file: {sorted(keys)})."
        )
    return {
        split: (_channels_first(arrays[f"x{suffix}"]), arrays[f"y{suffix}"])
        for suffix, split in pairs
        if f"x{suffix}" in keys
    }


def _channels_first(x: np.ndarray) -> np.ndarray:
    """N×H×W×C images as N×C×H×W when the last axis looks like channels and the second does not."""
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x
