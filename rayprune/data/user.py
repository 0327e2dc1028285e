"""A user's own data: arrays or a torch Dataset in memory, a factory, an image folder, an ``.npz`` file.

:func:`dataset_from_splits` is the one converter from what a user holds to a
:class:`~rayprune.data.Dataset`; the sources a config names go through it:

- ``data.name: package.module:function`` — :func:`load_factory`: the function returns the splits;
- ``data.name: imagefolder`` with ``data.root`` — :func:`load_image_folder`: one sub-folder of
  images per class, read with Pillow;
- ``data.name: npz`` with ``data.path`` — :func:`load_npz`: arrays ``x_train``, ``y_train``, ...

Splits given as map-style torch Datasets may instead stay torch Datasets, read batch by batch
through a DataLoader (a :class:`~rayprune.data.streaming.StreamedDataset`): when
``streaming=True``, or ``"auto"`` (the default) and their estimated size as float32 tensors exceeds
``max_resident_mb`` (:class:`~rayprune.data.streaming.StreamingPolicy`).

Normalisation follows who trained the model. A model trained by its user saw the user's
preprocessing, and feeding it anything else (even a "better" normalisation) silently lowers its
accuracy before any pruning, so data handed over in memory or by a factory is taken as given
(only cast to float32): :func:`dataset_from_splits` defaults to ``normalise=False`` and
:func:`load_factory` never normalises. Images in a folder or an ``.npz`` file are raw pixels or
features that rayprune trains the base model on (or a model trained with rayprune's recipe), so they
are normalised like the built-in sets: images per channel with train statistics (uint8 first scaled
to [0, 1]), features min-max scaled to the train range. A model trained elsewhere on such files
should get its data from a factory that applies that model's own preprocessing.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from .._imports import import_object
from ..errors import UserError, UserTypeError
from .datasets import (
    Dataset,
    _Arrays,
    _cap,
    _check_nonempty,
    _min_max_features,
    _share_cap,
    _split,
    _split_spec,
    _SplitSpec,
    _standardise_images,
)
from .splits import split_indices, subsample_indices
from .streaming import DEFAULT_MAX_RESIDENT_MB, StreamedDataset, StreamingPolicy, estimate_mb, is_streamable

__all__ = [
    "DataFactoryError",
    "IMAGE_SUFFIXES",
    "Split",
    "dataset_from_splits",
    "load_factory",
    "load_image_folder",
    "load_npz",
    "split_objects",
]

Split = Union[tuple[Any, Any], torch.utils.data.Dataset]
"""One split as a user holds it: an ``(x, y)`` pair of tensors or numpy arrays, or a
``torch.utils.data.Dataset`` whose samples are ``(x, y)``."""

SPLITS = ("train", "val", "test")
NPZ_KEYS: tuple[str, ...] = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
"""The arrays an ``.npz`` file may hold (or just ``x`` and ``y``, to be split)."""
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
"""File suffixes :func:`load_image_folder` reads as images; other files in a class folder are
counted as skipped."""

_GRAY_MODES = frozenset({"1", "L", "LA"})
_SHOWN = 5


class DataFactoryError(RuntimeError):
    """A user data factory (``package.module:function``) raised; its exception is ``__cause__``."""


# ----------------------------------------------------------------------------- the converter


def dataset_from_splits(
    train: Split,
    val: Split | None = None,
    test: Split | None = None,
    *,
    name: str = "user",
    kind: str | None = None,
    num_classes: int | None = None,
    class_names: Iterable[str] | None = None,
    normalise: bool = False,
    augment: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_samples: int | None = None,
    task: str = "classification",
    streaming: str | bool = "auto",
    max_resident_mb: float = DEFAULT_MAX_RESIDENT_MB,
    num_workers: int = 0,
) -> Dataset | StreamedDataset:
    """A :class:`~rayprune.data.Dataset` from splits a user holds in memory.

    Each split is an ``(x, y)`` pair of tensors or numpy arrays, or a ``torch.utils.data.Dataset``
    of ``(x, y)`` samples, read once in order (``ds[0]`` to ``ds[len(ds) - 1]``; an
    ``IterableDataset`` is iterated once). A missing ``val`` or ``test`` is split off ``train``,
    stratified by ``seed``: without both, ``val_fraction`` and ``test_fraction`` are shares of
    ``train``'s samples; with one of them given, the other's fraction is a share of ``train``.
    ``max_samples`` caps the total, shared between given splits in proportion to their sizes.

    Samples of shape ``(C, H, W)`` or ``(H, W)`` (given a channel axis) are images, ``(F,)``
    tabular; ``kind="tabular"`` flattens images into features. Labels are integer class indices
    (any integer dtype, booleans, or integral floats) in ``[0, num_classes)``; ``num_classes`` is
    ``len(class_names)`` or the largest label + 1 unless given.

    ``normalise=False`` (the default) keeps the values as given, cast to float32: a model trained by
    its user expects the user's own preprocessing. ``normalise=True`` does what the built-in sets
    do: images ``(x − mean) / std`` per channel with train statistics (uint8 first scaled to
    [0, 1]), features min-max scaled to the train range. ``augment`` (``"crop"``,
    ``"crop_flip"`` or None) is the on-device augmentation used when fine-tuning.

    ``task="regression"``: ``y`` holds real-valued targets, shape ``(N,)`` or ``(N, k)``, kept as
    float32; missing splits are carved by a seeded random permutation (nothing to stratify on) and
    ``num_classes`` is the number of outputs.

    ``streaming`` (``"auto"``, True, False), ``max_resident_mb`` and ``num_workers``: torch
    Datasets stream instead of being read (a :class:`~rayprune.data.streaming.StreamedDataset`) when
    ``streaming`` is True, or ``"auto"`` and the splits' estimated size as float32 tensors exceeds
    ``max_resident_mb``; see :func:`_streamed_from_splits` for what a streamed dataset needs.

    Example:
        >>> x, y = np.random.default_rng(0).random((100, 4)), np.arange(100) % 3
        >>> data = dataset_from_splits((x, y), seed=0)
        >>> data.kind, data.num_classes, (len(data.y_train), len(data.y_val), len(data.y_test))
        ('tabular', 3, (70, 10, 20))
    """
    given = {"train": train, "val": val, "test": test}
    if task not in ("classification", "regression"):
        raise UserError(f"'task' must be 'classification' or 'regression'; got {task!r}.")
    policy = StreamingPolicy(streaming, max_resident_mb, num_workers)
    streams, first = _stream_choice(given, policy, name=name)
    if streams:
        if normalise:
            raise UserError(f"normalise=True needs statistics of the whole train split, which streamed data "
                            f"({name!r}) never reads at once: apply the normalisation in your Dataset's "
                            f"__getitem__, or pass streaming=False.")
        spec = _split_spec(val_fraction, test_fraction, seed, max_samples, carves_val=val is None)
        return _streamed_from_splits(given, spec, policy, first, name=name, kind=kind, num_classes=num_classes,
                                     class_names=class_names, augment=augment, task=task)
    if task == "regression":
        return _regression_from_splits(given, name=name, kind=kind, normalise=normalise, val_fraction=val_fraction,
                                       test_fraction=test_fraction, seed=seed, max_samples=max_samples, first=first)
    spec = _split_spec(val_fraction, test_fraction, seed, max_samples, carves_val=val is None)
    return _from_splits(
        given, spec, name=name, kind=kind, num_classes=num_classes, class_names=class_names,
        normalise=normalise, augment=augment, first=first,
    )  # fmt: skip


def _from_splits(
    given: Mapping[str, Split | None],
    spec: _SplitSpec,
    *,
    name: str,
    kind: str | None = None,
    num_classes: int | None = None,
    class_names: Iterable[str] | None = None,
    normalise: bool = False,
    augment: str | None = None,
    skipped_files: tuple[str, ...] = (),
    first: Mapping[str, Any] | None = None,
) -> Dataset:
    """:func:`dataset_from_splits` with a checked split spec; the sources below call this.
    ``first``: sample 0 of torch Dataset splits, already read (for the size estimate)."""
    if given.get("train") is None:
        raise UserError(f"Dataset {name!r} needs a 'train' split; got none.")
    first = first or {}
    arrays = {split: _read_split(split, obj, first.get(split)) for split, obj in given.items() if obj is not None}
    sample_shape = _common_sample_shape(arrays)
    kind, input_shape = _infer_kind(kind, sample_shape)
    arrays = {split: (x.reshape(len(x), *input_shape), y) for split, (x, y) in arrays.items()}
    names = None if class_names is None else tuple(str(c) for c in class_names)
    num_classes = _num_classes(arrays, num_classes, names)
    parts = _assemble(arrays, spec)
    _check_nonempty(name, parts, spec, official_test="test" in arrays)
    tensors, mean, std = _tensors(parts, kind, normalise, given_x=[x for x, _ in arrays.values()])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = tensors
    return Dataset(
        name=name, kind=kind, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test, num_classes=num_classes, input_shape=input_shape,
        augment=augment if kind == "image" else None, class_names=names, mean=mean, std=std,
        skipped_files=skipped_files,
    )  # fmt: skip


def _regression_from_splits(given: Mapping[str, Split | None], *, name: str, kind: str | None, normalise: bool,
                            val_fraction: float, test_fraction: float, seed: int,
                            max_samples: int | None, first: Mapping[str, Any] | None = None) -> Dataset:
    """:func:`dataset_from_splits` for real-valued targets."""
    if given.get("train") is None:
        raise UserError(f"Dataset {name!r} needs a 'train' split; got none.")
    first = first or {}
    arrays = {split: _read_regression_split(split, obj, first.get(split))
              for split, obj in given.items() if obj is not None}
    widths = {s: (1 if y.ndim == 1 else y.shape[1]) for s, (_, y) in arrays.items()}
    if len(set(widths.values())) != 1:
        raise UserError(f"Every split's y must have the same number of targets; got {widths}.")
    sample_shape = _common_sample_shape(arrays)
    kind, input_shape = _infer_kind(kind, sample_shape)
    arrays = {split: (x.reshape(len(x), *input_shape), y) for split, (x, y) in arrays.items()}
    rng = np.random.default_rng(seed)
    x, y = arrays["train"]
    if max_samples is not None and len(x) > max_samples:
        keep = np.sort(rng.permutation(len(x))[:max_samples])
        x, y = x[keep], y[keep]
    order = rng.permutation(len(x))
    n_val = 0 if "val" in arrays else max(1, round(val_fraction * len(x)))
    n_test = 0 if "test" in arrays else max(1, round(test_fraction * len(x)))
    if len(x) - n_val - n_test < 1:
        raise UserError(f"Split 'train' of {name!r} has {len(x)} samples: too few to carve val and test from.")
    carved_val, carved_test, kept = order[:n_val], order[n_val:n_val + n_test], order[n_val + n_test:]
    parts = ((x[kept], y[kept]),
             arrays.get("val") or (x[carved_val], y[carved_val]),
             arrays.get("test") or (x[carved_test], y[carved_test]))
    tensors, mean, std = _tensors(parts, kind, normalise, given_x=[x for x, _ in arrays.values()])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = tensors
    return Dataset(name=name, kind=kind, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test,
                   y_test=y_test, num_classes=next(iter(widths.values())), input_shape=input_shape, augment=None,
                   mean=mean, std=std, task="regression")


def _read_regression_split(split: str, obj: Split, first: Any = None) -> _Arrays:
    """``(x, y)`` numpy arrays of one regression split: x checked, y float32 targets, both non-empty."""
    if isinstance(obj, torch.utils.data.Dataset):
        x, y = _materialise(split, obj, first)
    elif isinstance(obj, (tuple, list)) and len(obj) == 2 and all(isinstance(a, (Tensor, np.ndarray)) for a in obj):
        x, y = (_to_numpy(a) for a in obj)
    else:
        raise UserTypeError(f"Split {split!r} must be an (x, y) pair of tensors or numpy arrays, or a "
                            f"torch.utils.data.Dataset of (x, y) samples; got {_describe(obj)}.")
    if len(x) == 0 or len(x) != len(y):
        raise UserError(f"Split {split!r} must be non-empty with one target per sample; got {len(x)} samples "
                        f"in x and {len(y)} targets in y.")
    return _check_features(split, x), _check_targets(split, y)


def _tensors(parts, kind: str, normalise: bool, *, given_x: list[np.ndarray]):
    """``([(x, y) tensors per split], mean, std)``: as given (float32) or normalised like the built-in sets."""
    if not normalise:
        # y is already rayprune's own copy (_check_labels / _check_targets); x is copied only where it
        # may still be the caller's array, so that a large float32 split is not held twice
        return [(torch.from_numpy(_own_float32(x, given_x)), torch.from_numpy(y)) for x, y in parts], None, None
    if kind == "image":
        tensors, mean_t, std_t = _standardise_images(parts)
        return tensors, tuple(mean_t.tolist()), tuple(std_t.tolist())
    return _min_max_features(parts), None, None


def _check_targets(split: str, y: np.ndarray) -> np.ndarray:
    """Regression targets as a new float32 array of shape (N,) or (N, k), finite."""
    if y.ndim not in (1, 2) or not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise UserError(f"The y of split {split!r} must be real-valued targets of shape (N,) or (N, k); got "
                        f"dtype {y.dtype} and shape {y.shape}.")
    y = np.array(y, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(y)))
    if bad:
        raise UserError(f"The y of split {split!r} must be finite; got {bad} NaN or infinite value(s).")
    return y


def _own_float32(x: np.ndarray, callers: list[np.ndarray]) -> np.ndarray:
    if x.dtype == np.float32 and not any(np.may_share_memory(x, c) for c in callers):
        return x
    return x.astype(np.float32)


def _read_split(split: str, obj: Split, first: Any = None) -> _Arrays:
    """``(x, y)`` numpy arrays of one split: x as given, y checked and int64, both non-empty.
    ``first``: a torch Dataset's sample 0 when it was read already."""
    if isinstance(obj, torch.utils.data.Dataset):
        x, y = _materialise(split, obj, first)
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        x, y = obj
        if not isinstance(x, (Tensor, np.ndarray)):
            raise UserTypeError(
                f"The x of split {split!r} must be a torch.Tensor or numpy.ndarray; "
                f"got {_describe(x)}."
            )
        x = _to_numpy(x)
        y = _to_numpy(y) if isinstance(y, (Tensor, np.ndarray)) else _label_array(split, y)
    else:
        raise UserTypeError(
            f"Split {split!r} must be an (x, y) pair of tensors or numpy arrays, or a "
            f"torch.utils.data.Dataset of (x, y) samples; got {_describe(obj)}."
        )
    if len(x) == 0:
        raise UserError(f"Split {split!r} is empty; every split given needs at least one sample.")
    if len(x) != len(y):
        raise UserError(
            f"Split {split!r} must have as many labels as samples; got {len(x)} samples in x and "
            f"{len(y)} labels in y."
        )
    return _check_features(split, x), _check_labels(split, y)


def _materialise(split: str, dataset: torch.utils.data.Dataset, first: Any = None) -> _Arrays:
    """Read every ``(x, y)`` sample of a torch Dataset once, in order, into one array each (sample 0
    is ``first`` when given: read already)."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        samples: Iterable[Any] = iter(dataset)
        try:
            capacity = max(len(dataset), 1)  # type: ignore[arg-type]
        except TypeError:  # an IterableDataset need not know its length: grow as it comes
            capacity = 1024
    else:
        try:
            n = len(dataset)  # type: ignore[arg-type]
        except TypeError:
            raise UserTypeError(
                f"The torch Dataset of split {split!r} ({type(dataset).__name__}) must have a "
                f"length (__len__) to be read as a map-style dataset."
            ) from None
        samples = (first if i == 0 and first is not None else dataset[i] for i in range(n))
        capacity = max(n, 1)
    xs: np.ndarray | None = None
    labels: list[Any] = []
    for i, sample in enumerate(samples):
        if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
            raise UserTypeError(
                f"Sample {i} of split {split!r} must be an (x, y) pair; got {_describe(sample)}."
            )
        x = np.asarray(_to_numpy(sample[0]) if isinstance(sample[0], Tensor) else sample[0])
        if xs is None:
            xs = np.empty((capacity, *x.shape), dtype=x.dtype)
        elif x.shape != xs.shape[1:]:
            raise UserError(
                f"Samples of split {split!r} must share one shape; sample 0 has {xs.shape[1:]} "
                f"and sample {i} has {x.shape}."
            )
        if i >= len(xs):  # an IterableDataset without a length, or one longer than it said
            xs = np.concatenate([xs, np.empty_like(xs[: max(len(xs), 1)])])
        if x.dtype != xs.dtype:
            xs = xs.astype(np.result_type(xs.dtype, x.dtype))
        xs[i] = x
        labels.append(_scalar_label(split, i, sample[1]))
    if xs is None:
        return np.empty((0,)), np.empty((0,), dtype=np.int64)
    return xs[: len(labels)], np.asarray(labels)


def _scalar_label(split: str, i: int, label: Any) -> Any:
    value = _to_numpy(label) if isinstance(label, Tensor) else np.asarray(label)
    if value.size != 1:
        raise UserError(
            f"The label of sample {i} of split {split!r} must be one class index; got shape "
            f"{value.shape} (one-hot labels must be turned into indices, e.g. with argmax)."
        )
    return value.reshape(())[()]


def _to_numpy(value: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    return value


def _label_array(split: str, labels: Any) -> np.ndarray:
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (list, tuple)):
        raise UserTypeError(
            f"The y of split {split!r} must be a torch.Tensor, numpy.ndarray or list of class "
            f"indices; got {_describe(labels)}."
        )
    try:
        return np.asarray(labels)
    except ValueError as err:  # ragged nesting
        raise UserError(f"The y of split {split!r} is not a flat list of class indices: {err}") from None


def _check_features(split: str, x: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(
        x.dtype, np.complexfloating
    ):
        raise UserTypeError(
            f"The x of split {split!r} must hold real numbers; got dtype {x.dtype}."
        )
    if np.issubdtype(x.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            raise UserError(
                f"The x of split {split!r} must be finite; got {bad} NaN or infinite value(s)."
            )
    return x


def _check_labels(split: str, y: np.ndarray) -> np.ndarray:
    """``y`` as a new int64 array of class indices, or a UserError saying what is wrong with it."""
    if y.ndim != 1:
        raise UserError(
            f"The y of split {split!r} must be one class index per sample, shape (N,); got shape "
            f"{y.shape} (one-hot labels must be turned into indices, e.g. with argmax)."
        )
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        pass
    elif np.issubdtype(y.dtype, np.floating):
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            shown = ", ".join(repr(float(v)) for v in y[fractional][:_SHOWN])
            raise UserError(
                f"The y of split {split!r} must hold integer class indices; got "
                f"{int(fractional.sum())} non-integral value(s): {shown}."
            )
    else:
        raise UserTypeError(
            f"The y of split {split!r} must hold integer class indices; got dtype {y.dtype}"
            + (f" (e.g. {y[0]!r})" if y.dtype == object and len(y) else "")
            + "."
        )
    y = y.astype(np.int64)  # a copy: the Dataset never shares memory with the caller's labels
    if len(y) and y.min() < 0:
        raise UserError(
            f"The y of split {split!r} must hold class indices >= 0; got {int((y < 0).sum())} "
            f"negative value(s), the smallest {int(y.min())}."
        )
    return y


def _describe(value: Any) -> str:
    if isinstance(value, (str, bytes)):
        text = repr(value)
        return f"{type(value).__name__} {text[:40] + '...' if len(text) > 40 else text}"
    if isinstance(value, (list, tuple)):
        inner = f" of {type(value[0]).__name__}" if value else ""
        return f"a {type(value).__name__} of length {len(value)}{inner}"
    return f"a {type(value).__module__}.{type(value).__qualname__}"


def _common_sample_shape(arrays: Mapping[str, _Arrays]) -> tuple[int, ...]:
    shapes = {split: tuple(x.shape[1:]) for split, (x, _) in arrays.items()}
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{split} {shape}" for split, shape in shapes.items())
        raise UserError(f"Every split must have samples of one shape; got {described}.")
    return shapes["train"]


def _infer_kind(kind: str | None, sample_shape: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """``(kind, input_shape)``: (C, H, W) and (H, W) samples are images, (F,) tabular."""
    if kind not in (None, "image", "tabular"):
        raise UserError(f"'kind' must be 'image', 'tabular' or None (inferred); got {kind!r}.")
    if not 1 <= len(sample_shape) <= 3:
        raise UserError(
            "Samples must be 1-D features (F,), 2-D images (H, W) or 3-D images (C, H, W); "
            f"got samples of shape {sample_shape}."
        )
    if kind == "tabular" or (kind is None and len(sample_shape) == 1):
        return "tabular", (int(np.prod(sample_shape)),)
    if len(sample_shape) == 1:
        raise UserError(
            f"'kind' is 'image' but samples are 1-D, of shape {sample_shape}; images are (C, H, W) "
            f"or (H, W)."
        )
    return "image", ((1, *sample_shape) if len(sample_shape) == 2 else sample_shape)


def _num_classes(
    arrays: Mapping[str, _Arrays], num_classes: int | None, class_names: tuple[str, ...] | None
) -> int:
    top = max(int(y.max()) for _, y in arrays.values())
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else top + 1
    elif isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise UserTypeError(f"'num_classes' must be an integer or None; got {num_classes!r}.")
    if num_classes < 2:
        raise UserError(
            f"A classification needs at least 2 classes; got num_classes={num_classes} "
            "(labels all 0?)."
        )
    if top >= num_classes:
        where = [split for split, (_, y) in arrays.items() if int(y.max()) == top]
        raise UserError(
            f"Labels must be < num_classes={num_classes}; split {where[0]!r} has label {top}."
        )
    return int(num_classes)


def _assemble(arrays: Mapping[str, _Arrays], spec: _SplitSpec) -> tuple[_Arrays, _Arrays, _Arrays]:
    """(train, val, test): the given splits, with the missing ones carved out of train."""
    train, val, test = (arrays.get(split) for split in SPLITS)
    if val is None:  # carve val (and test, unless given) from train
        return _split(*train, spec, test)
    if test is None:  # the same with the roles swapped: carve test from train, keep val
        swapped = dataclasses.replace(spec, val_fraction=spec.test_fraction)
        kept, carved, official = _split(*train, swapped, val)
        return kept, official, carved
    if spec.max_samples is not None and spec.max_samples < 3:
        raise UserError(
            f"'max_samples' must be at least 3 with train, val and test given; "
            f"got {spec.max_samples}."
        )
    caps = _share_cap(spec.max_samples, len(train[1]), len(val[1]), len(test[1]))
    return tuple(_cap(x, y, cap, spec.seed) for (x, y), cap in zip((train, val, test), caps))  # type: ignore[return-value]


# ----------------------------------------------------------------------------- streamed splits


def _stream_choice(given: Mapping[str, Any], policy: StreamingPolicy, *, name: str) -> tuple[bool, dict[str, Any]]:
    """``(stream?, {split: sample 0})``: whether the splits stream under ``policy``, and the samples
    read to decide (one per torch Dataset split; the tensor path reuses them instead of re-reading)."""
    present = {split: obj for split, obj in given.items() if obj is not None}
    datasets = {split: obj for split, obj in present.items() if isinstance(obj, torch.utils.data.Dataset)}
    if policy.mode is False or (policy.mode == "auto" and not datasets):
        return False, {}
    fixed = [split for split, obj in datasets.items() if not is_streamable(obj)]
    if policy.mode is True:
        if not datasets:
            raise UserError(f"data.streaming is true but no split of {name!r} is a torch Dataset: only torch "
                            f"Datasets stream ((x, y) arrays are in memory already); set data.streaming to auto "
                            f"or false.")
        if fixed:
            raise UserError(f"data.streaming is true but split {fixed[0]!r} of {name!r} is a "
                            f"{type(datasets[fixed[0]]).__name__} without random access: streaming needs a "
                            f"map-style torch Dataset (__len__ and __getitem__); set data.streaming to auto or "
                            f"false to read it whole.")
    elif fixed:  # auto: an IterableDataset can only be read whole, so the splits are read whole
        return False, {}
    first = {split: obj[0] for split, obj in datasets.items() if len(obj)}
    return policy.streams(estimate_mb(present, first)), first


def _streamed_from_splits(
    given: Mapping[str, Split | None],
    spec: _SplitSpec,
    policy: StreamingPolicy,
    first: Mapping[str, Any],
    *,
    name: str,
    kind: str | None = None,
    num_classes: int | None = None,
    class_names: Iterable[str] | None = None,
    augment: str | None = None,
    task: str = "classification",
) -> StreamedDataset:
    """A :class:`~rayprune.data.streaming.StreamedDataset`: torch Dataset splits kept as they are.

    Only sample 0 of each split is read here, to check its shape and label; splits given as
    ``(x, y)`` arrays are checked and wrapped in a ``TensorDataset``. Missing splits are carved out
    of train as ``torch.utils.data.Subset`` objects by ``spec`` (the fractions, the seed and
    ``max_samples`` mean what they mean for resident data), stratified when the labels are known
    without reading samples (a ``targets`` attribute, as torchvision's datasets have), else a
    seeded random split. A classification needs its number of classes up front: ``num_classes``,
    ``class_names`` or ``targets``; a label outside it is only met when its batch is read.
    """
    if given.get("train") is None:
        raise UserError(f"Dataset {name!r} needs a 'train' split; got none.")
    classify = task != "regression"
    parts: dict[str, torch.utils.data.Dataset] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    widths: dict[str, int] = {}
    for split, obj in given.items():
        if obj is None:
            continue
        if is_streamable(obj):
            if len(obj) == 0:
                raise UserError(f"Split {split!r} is empty; every split given needs at least one sample.")
            sample = first[split] if split in first else obj[0]
            if not (isinstance(sample, (tuple, list)) and len(sample) == 2):
                raise UserTypeError(f"Sample 0 of split {split!r} must be an (x, y) pair; got {_describe(sample)}.")
            x0 = sample[0]
            x0 = _check_features(split, np.asarray(_to_numpy(x0) if isinstance(x0, Tensor) else x0)[None])
            y0 = _to_numpy(sample[1]) if isinstance(sample[1], Tensor) else np.asarray(sample[1])
            if classify:
                _check_labels(split, np.asarray([_scalar_label(split, 0, y0)]))
            else:
                widths[split] = int(_check_targets(split, y0.reshape(1, -1)).shape[1])
            parts[split], shapes[split] = obj, tuple(x0.shape[1:])
        else:
            x, y = _read_split(split, obj) if classify else _read_regression_split(split, obj)
            parts[split] = torch.utils.data.TensorDataset(torch.from_numpy(np.asarray(x, dtype=np.float32)),
                                                          torch.from_numpy(y))
            shapes[split] = tuple(x.shape[1:])
            if not classify:
                widths[split] = 1 if y.ndim == 1 else int(y.shape[1])
    if len(set(shapes.values())) > 1:
        described = ", ".join(f"{split} {shape}" for split, shape in shapes.items())
        raise UserError(f"Every split must have samples of one shape; got {described}.")
    kind, input_shape = _infer_kind(kind, shapes["train"])
    names = None if class_names is None else tuple(str(c) for c in class_names)
    labels = {split: _known_labels(split, ds) for split, ds in parts.items()} if classify else {}
    if classify:
        outputs = _streamed_num_classes(name, labels, num_classes, names)
    else:
        if len(set(widths.values())) != 1:
            raise UserError(f"Every split's y must have the same number of targets; got {widths}.")
        outputs = next(iter(widths.values()))
    train, val, test = _carve(parts, labels.get("train"), spec)
    _check_nonempty(name, ((None, train), (None, val), (None, test)), spec, official_test="test" in parts)
    return StreamedDataset(
        name=name, kind=kind, train=train, val=val, test=test, num_classes=outputs, input_shape=input_shape,
        augment=augment if kind == "image" and classify else None, class_names=names if classify else None,
        task="classification" if classify else "regression", num_workers=policy.num_workers,
        size_mb=estimate_mb(given, first),
    )  # fmt: skip


def _known_labels(split: str, dataset: torch.utils.data.Dataset) -> np.ndarray | None:
    """The labels of a dataset when they are known without reading its samples: a TensorDataset's
    second tensor, a ``targets`` attribute of the right length, or a Subset of either."""
    if isinstance(dataset, torch.utils.data.Subset):
        inner = _known_labels(split, dataset.dataset)
        return None if inner is None else inner[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, torch.utils.data.TensorDataset) and len(dataset.tensors) == 2:
        labels: Any = dataset.tensors[1]
    else:
        labels = getattr(dataset, "targets", None)
    if labels is None or isinstance(labels, (str, bytes)):
        return None
    try:
        labels = _to_numpy(labels) if isinstance(labels, Tensor) else np.asarray(labels)
    except (TypeError, ValueError):
        return None
    if labels.ndim != 1 or len(labels) != len(dataset):  # type: ignore[arg-type]
        return None
    return _check_labels(split, labels)


def _streamed_num_classes(name: str, labels: Mapping[str, np.ndarray | None], num_classes: int | None,
                          names: tuple[str, ...] | None) -> int:
    known = {split: y for split, y in labels.items() if y is not None and len(y)}
    if num_classes is None and names is None and len(known) < len(labels):
        unknown = sorted(set(labels) - set(known))
        raise UserError(
            f"Streamed dataset {name!r} needs its number of classes up front (finding the largest label would "
            f"read every sample of {unknown}): return 'num_classes' or 'class_names' with the splits (a data "
            f"factory's dict, or rayprune.prune(data={{'train': ..., 'num_classes': K}})), or give the torch "
            f"Dataset a 'targets' attribute with every label (as torchvision's datasets have)."
        )
    # labels not known (num_classes or class_names given instead) are checked only as batches are read
    checked = {split: (None, y) for split, y in known.items()} or {"train": (None, np.zeros(1, dtype=np.int64))}
    return _num_classes(checked, num_classes, names)


def _carve(parts: Mapping[str, torch.utils.data.Dataset], labels: np.ndarray | None,
           spec: _SplitSpec) -> tuple[torch.utils.data.Dataset, ...]:
    """(train, val, test) Datasets: the given ones (capped by ``spec.max_samples``), the missing ones
    carved out of train as Subsets, as :func:`_assemble` does with arrays."""
    train, val, test = (parts.get(split) for split in SPLITS)
    n = len(train)  # type: ignore[arg-type]
    by = labels if labels is not None else np.zeros(n, dtype=np.int64)  # one "class": a seeded random split

    def subset(ds, index):
        return torch.utils.data.Subset(ds, np.asarray(index, dtype=np.int64).tolist())

    def capped(ds, cap, ds_labels=None):
        if cap is None or cap >= len(ds):
            return ds, np.arange(len(ds))
        ds_labels = _known_labels("train", ds) if ds_labels is None else ds_labels
        keep = subsample_indices(ds_labels if ds_labels is not None else np.zeros(len(ds)), cap, seed=spec.seed)
        return subset(ds, keep), keep

    if val is None or test is None:
        official = test if val is None else val
        if official is None:
            cap_train = spec.max_samples
        else:
            cap_train, cap_official = _share_cap(spec.max_samples, n, len(official))
            official, _ = capped(official, cap_official)
        pool, kept = capped(train, cap_train, by)
        val_share, test_share = ((spec.val_fraction, spec.test_fraction if test is None else 0.0) if val is None
                                 else (spec.test_fraction, 0.0))
        keep, carved, carved_test = split_indices(by[kept], val_fraction=val_share, test_fraction=test_share,
                                                  seed=spec.seed)
        train_part, carved_part = subset(pool, keep), subset(pool, carved)
        if val is None and test is None:
            return train_part, carved_part, subset(pool, carved_test)
        return (train_part, carved_part, official) if val is None else (train_part, official, carved_part)
    caps = _share_cap(spec.max_samples, n, len(val), len(test)) if spec.max_samples is not None else (None,) * 3
    return tuple(capped(ds, cap)[0] for ds, cap in zip((train, val, test), caps))


# ----------------------------------------------------------------------------- a factory


def load_factory(factory: str, *, spec: _SplitSpec | None = None, task: str = "classification",
                 policy: StreamingPolicy | None = None) -> Dataset | StreamedDataset:
    """The data a user's function returns, named ``package.module:function`` (``data.name``).

    The function is called with no arguments, or with ``seed=`` if its signature names ``seed``.
    It returns a dict with ``train`` and optionally ``val``, ``test``, ``class_names``,
    ``num_classes``; or a tuple ``(train, val)`` / ``(train, val, test)``; or one split (an
    ``(x, y)`` pair or a torch Dataset) as ``train``; each split as in :func:`dataset_from_splits`.
    The data is taken as given, without normalisation: it is what the user's model eats. A
    :class:`~rayprune.data.Dataset` (or :class:`~rayprune.data.streaming.StreamedDataset`) returned
    as it is is used as it is (the config's fractions, seed and ``max_samples`` then do not apply).
    Torch Dataset splits stream through a DataLoader when ``policy`` says so (``data.streaming``).

    Example (``my_project/data.py``)::

        def splits(seed):
            x, y = np.load("features.npy"), np.load("labels.npy")
            return {"train": (x[:800], y[:800]), "test": (x[800:], y[800:])}

    and ``data: {name: my_project.data:splits}`` in the config. With ``data.task: regression`` (or a
    ``"task": "regression"`` entry in the returned dict) ``y`` holds real-valued targets.
    """
    spec = spec or _split_spec(0.1, 0.2, 0, None)
    policy = policy or StreamingPolicy()
    function = import_object(factory, what="data factory")
    if not callable(function):
        raise UserTypeError(
            f"The data factory {factory!r} must be callable; got {_describe(function)}."
        )
    result = _call_factory(function, factory, spec.seed)
    if isinstance(result, (Dataset, StreamedDataset)):
        return result
    splits, options = split_objects(result, source=f"The data factory {factory!r} must return")
    task = options.pop("task", task)
    try:
        streams, first = _stream_choice(splits, policy, name=factory)
        if streams:
            return _streamed_from_splits(splits, spec, policy, first, name=factory, task=task, **options)
        if task == "regression":
            return _regression_from_splits(splits, name=factory, kind=None, normalise=False,
                                           val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
                                           seed=spec.seed, max_samples=spec.max_samples, first=first)
        return _from_splits(splits, spec, name=factory, normalise=False, first=first, **options)
    except UserError as err:
        raise type(err)(f"The data of factory {factory!r}: {err}") from err


def _call_factory(function: Callable[..., Any], factory: str, seed: int) -> Any:
    try:
        takes_seed = "seed" in inspect.signature(function).parameters
    except (TypeError, ValueError):  # a builtin or C function without a signature
        takes_seed = False
    try:
        return function(seed=seed) if takes_seed else function()
    except Exception as err:  # noqa: BLE001 - any failure of user code is reported the same way
        raise DataFactoryError(f"Data factory {factory!r} raised {type(err).__name__}: {err}") from err


def split_objects(result: Any, *, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({"train", "val", "test"} -> split or None, {class_names/num_classes})`` from what a data
    factory returned or the Python API was given; ``source`` starts the error message
    (``"The data factory 'pkg.mod:f' must return"``, ``"data= must be"``)."""
    expected = (
        "a dict with 'train' (and optionally 'val', 'test', 'class_names', 'num_classes'), a tuple "
        "(train, val[, test]), or one (x, y) pair or torch Dataset"
    )
    if isinstance(result, Mapping):
        extra = sorted(set(map(str, result)) - {*SPLITS, "class_names", "num_classes", "task"})
        if extra or "train" not in result:
            problem = f"unknown key(s) {extra}" if extra else "no 'train' key"
            raise UserError(f"{source} {expected}; got a dict with {problem} (keys: {sorted(map(str, result))}).")
        splits = {split: result.get(split) for split in SPLITS}
        options = {k: result[k] for k in ("class_names", "num_classes", "task") if k in result}
        return splits, options
    if isinstance(result, torch.utils.data.Dataset) or (
        isinstance(result, (tuple, list)) and result and isinstance(result[0], (Tensor, np.ndarray))
    ):
        return {"train": result}, {}
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        return dict(zip(SPLITS, result)), {}
    raise UserTypeError(f"{source} {expected}; got {_describe(result)}.")


# ----------------------------------------------------------------------------- an image folder


def load_image_folder(
    root: str | Path,
    *,
    image_size: int | None = None,
    spec: _SplitSpec | None = None,
) -> Dataset:
    """Images under ``root/<class>/`` (class names sorted), read with Pillow; ``data.name: imagefolder``.

    With ``root/train/<class>/`` and ``root/test/<class>/`` (and optionally ``root/val/<class>/``)
    those are the splits; otherwise val and test are split off by the config's fractions. Images are
    converted to RGB, or to grayscale (L) when every image is 1-channel, and resized to
    ``image_size`` × ``image_size`` (bilinear, not cropped) when given; without it every image must
    have the same size. Files Pillow cannot read are skipped with a warning and listed in
    :attr:`Dataset.skipped_files`. Pixels are normalised per channel with train statistics, like the
    built-in sets, and fine-tuned with the ``crop`` augmentation (no mirroring).

    Example::

        flowers/daisy/001.jpg, flowers/daisy/002.jpg, ..., flowers/tulip/001.jpg, ...
        data = load_image_folder("flowers", image_size=64)   # data.class_names == ('daisy', 'tulip')
    """
    from PIL import Image

    spec = spec or _split_spec(0.1, 0.2, 0, None)
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 1
    ):
        raise UserError(f"'image_size' must be a positive integer or None; got {image_size!r}.")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NotADirectoryError(
            f"'root' of dataset 'imagefolder' must be a directory of class folders; got '{root}'."
        )
    layout = _folder_layout(root)
    class_names = tuple(sorted({d.name for folder in layout.values() for d in _class_dirs(folder)}))
    files = {
        split: [(p, class_names.index(d.name)) for d in _class_dirs(folder) for p in _files(d)]
        for split, folder in layout.items()
    }
    headers, skipped = {}, []
    for split, entries in files.items():
        headers[split] = []
        for path, label in entries:
            header = _image_header(Image, path)
            if header is None:
                skipped.append(path)
            else:
                headers[split].append((path, label, *header))
    readable = [h for entries in headers.values() for h in entries]
    if not readable:
        raise UserError(
            f"No readable image under '{root}': {len(skipped)} file(s) in {len(class_names)} class "
            f"folder(s), none of which Pillow could open."
        )
    mode = "L" if all(m in _GRAY_MODES for _, _, m, _ in readable) else "RGB"
    size = _common_size(root, {s for _, _, _, s in readable}, image_size)
    arrays = {}
    for split, entries in headers.items():
        if not entries and split == "train":
            raise UserError(f"No readable image in the train split under '{root}'.")
        arrays[split], failed = _read_images(Image, entries, mode, size)
        skipped += failed
    skipped_names = tuple(sorted(str(p.relative_to(root)) for p in skipped))
    if skipped_names:
        shown = ", ".join(skipped_names[:_SHOWN]) + (" ..." if len(skipped_names) > _SHOWN else "")
        warnings.warn(
            f"Skipped {len(skipped_names)} file(s) under '{root}' that Pillow could not read as "
            f"images: {shown}",
            UserWarning,
            stacklevel=2,
        )
    return _from_splits(
        arrays, spec, name="imagefolder", kind="image", num_classes=len(class_names),
        class_names=class_names, normalise=True, augment="crop", skipped_files=skipped_names,
    )  # fmt: skip


def _folder_layout(root: Path) -> dict[str, Path]:
    """``{"train": root}``, or the ``train``/``val``/``test`` sub-folders when root is split so."""
    subdirs = {d.name: d for d in _class_dirs(root)}
    if not subdirs:
        raise UserError(
            f"'root' of dataset 'imagefolder' must hold one sub-folder per class; '{root}' has "
            f"no sub-folders."
        )
    if "train" in subdirs and set(subdirs) <= set(SPLITS) and _class_dirs(subdirs["train"]):
        layout = {split: subdirs[split] for split in SPLITS if split in subdirs}
        for split, folder in layout.items():
            if not _class_dirs(folder):
                raise UserError(
                    f"'{folder}' must hold one sub-folder per class (the {split} split); it has none."
                )
        return layout
    return {"train": root}


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _image_header(image_module: Any, path: Path) -> tuple[str, tuple[int, int]] | None:
    """(mode, (width, height)) of an image file, or None if Pillow cannot identify it."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return None
    try:
        with image_module.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError):  # UnidentifiedImageError is an OSError
        return None


def _common_size(root: Path, sizes: set[tuple[int, int]], image_size: int | None) -> tuple[int, int]:
    if image_size is not None:
        return int(image_size), int(image_size)
    if len(sizes) > 1:
        shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:_SHOWN])
        raise UserError(
            f"The images under '{root}' have {len(sizes)} different sizes ({shown}"
            f"{' ...' if len(sizes) > _SHOWN else ''}); set 'image_size' (data.image_size) to "
            f"resize them all to one square size."
        )
    return next(iter(sizes))


def _read_images(
    image_module: Any, entries: list[tuple[Path, int, str, tuple[int, int]]], mode: str,
    size: tuple[int, int],
) -> tuple[tuple[np.ndarray, np.ndarray], list[Path]]:
    """uint8 N×C×H×W pixels and labels of the readable entries, and the paths that failed to decode."""
    channels = 1 if mode == "L" else 3
    pixels = np.empty((len(entries), channels, size[1], size[0]), dtype=np.uint8)
    labels, failed = [], []
    for path, label, _, own_size in entries:
        try:
            with image_module.open(path) as image:
                image = image.convert(mode)
                if own_size != size:
                    image = image.resize(size, image_module.Resampling.BILINEAR)
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, ValueError, SyntaxError):  # truncated or corrupt after a valid header
            failed.append(path)
            continue
        pixels[len(labels)] = array.reshape(size[1], size[0], channels).transpose(2, 0, 1)
        labels.append(label)
    return (pixels[: len(labels)], np.asarray(labels, dtype=np.int64)), failed


# ----------------------------------------------------------------------------- an .npz file


def load_npz(path: str | Path, *, spec: _SplitSpec | None = None) -> Dataset:
    """Arrays in an ``.npz`` file (``data.name: npz``, ``data.path``).

    The file holds ``x_train``, ``y_train`` and optionally ``x_val``/``y_val``, ``x_test``/``y_test``;
    or ``x`` and ``y``, split by the config's fractions. Images may be (N, C, H, W), (N, H, W) or
    channels-last (N, H, W, C) with C in {1, 3, 4} (transposed); features (N, F). Values are
    normalised like the built-in sets (see the module docstring); images are fine-tuned with the
    ``crop`` augmentation. Read with ``allow_pickle=False``: the file cannot run code.

    Example::

        np.savez("mine.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        data = load_npz("mine.npz")
    """
    spec = spec or _split_spec(0.1, 0.2, 0, None)
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"'path' of dataset 'npz' must be an existing .npz file; got '{path}'.")
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
        return _from_splits(splits, spec, name="npz", normalise=True, augment="crop")
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
