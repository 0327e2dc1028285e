"""The one converter from what a user holds to a :class:`~rayprune.data.Dataset`: :func:`dataset_from_splits`.

Splits in memory (arrays or torch Datasets, :data:`~rayprune.data.user_splits.Split`) become a
device-ready :class:`~rayprune.data.Dataset`, or stay torch Datasets read batch by batch through a
DataLoader (a :class:`~rayprune.data.streaming.StreamedDataset`, built by
:mod:`rayprune.data.streamed_splits`): when ``streaming=True``, or ``"auto"`` (the default) and their
estimated size as float32 tensors exceeds ``max_resident_mb``. The sources a config names go through
here too: a factory (:mod:`rayprune.data.factory`), an image folder (:mod:`rayprune.data.image_folder`)
and an ``.npz`` file (:mod:`rayprune.data.npz`).

Normalisation follows who trained the model. A model trained by its user saw the user's
preprocessing, and feeding it anything else (even a "better" normalisation) silently lowers its
accuracy before any pruning, so data handed over in memory or by a factory is taken as given
(only cast to float32): :func:`dataset_from_splits` defaults to ``normalise=False`` and
:func:`~rayprune.data.factory.load_factory` never normalises. Images in a folder or an ``.npz`` file
are raw pixels or features that rayprune trains the base model on (or a model trained with rayprune's
recipe), so they are normalised like the built-in sets: images per channel with train statistics
(uint8 first scaled to [0, 1]), features min-max scaled to the train range. A model trained elsewhere
on such files should get its data from a factory that applies that model's own preprocessing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..errors import UserError
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
    feature_range,
)
from .streamed_splits import _stream_choice, _streamed_from_splits
from .streaming import DEFAULT_MAX_RESIDENT_MB, StreamedDataset, StreamingPolicy
from .user_splits import (
    SPLITS,
    Split,
    _check_labels,
    _coded_text_labels,
    _common_sample_shape,
    _infer_kind,
    _num_classes,
    _read_regression_split,
    _read_split,
)

__all__ = ["dataset_from_splits"]


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
    target_names: Iterable[str] | None = None,
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
    ``num_classes`` is the number of outputs. ``target_names`` names them (output j predicts ``target_names[j]``;
    recorded in spec.json and model.onnx); None takes them from the train split's ``y`` when it is a pandas
    DataFrame (its columns) or a named Series.

    ``streaming`` (``"auto"``, True, False), ``max_resident_mb`` and ``num_workers``: torch
    Datasets stream instead of being read (a :class:`~rayprune.data.streaming.StreamedDataset`) when
    ``streaming`` is True, or ``"auto"`` and the splits' estimated size as float32 tensors exceeds
    ``max_resident_mb``; see :func:`~rayprune.data.streamed_splits._streamed_from_splits` for what a streamed dataset needs.

    Example:
        >>> x, y = np.random.default_rng(0).random((100, 4)), np.arange(100) % 3
        >>> data = dataset_from_splits((x, y), seed=0)
        >>> data.kind, data.num_classes, (len(data.y_train), len(data.y_val), len(data.y_test))
        ('tabular', 3, (70, 10, 20))
    """
    given = {"train": train, "val": val, "test": test}
    if task not in ("classification", "regression"):
        raise UserError(f"'task' must be 'classification' or 'regression'; got {task!r}.")
    names = regression_target_names(task, target_names, train)
    columns = _pandas_feature_names(train)
    policy = StreamingPolicy(streaming, max_resident_mb, num_workers)
    streams, first = _stream_choice(given, policy, name=name)
    if streams:
        if normalise:
            raise UserError(f"normalise=True needs statistics of the whole train split, which streamed data "
                            f"({name!r}) never reads at once: apply the normalisation in your Dataset's "
                            f"__getitem__, or pass streaming=False.")
        if target_names is not None:
            raise UserError("target_names is recorded for data held in memory; streamed data (a torch Dataset "
                            f"larger than max_resident_mb, or streaming=True: {name!r}) cannot name its targets yet. "
                            "Pass streaming=False, or leave target_names out.")
        spec = _split_spec(val_fraction, test_fraction, seed, max_samples, carves_val=val is None)
        return _streamed_from_splits(given, spec, policy, first, name=name, kind=kind, num_classes=num_classes,
                                     class_names=class_names, augment=augment, task=task)
    if task == "regression":
        return _regression_from_splits(given, name=name, kind=kind, normalise=normalise, val_fraction=val_fraction,
                                       test_fraction=test_fraction, seed=seed, max_samples=max_samples, first=first,
                                       target_names=names, feature_names=columns)
    spec = _split_spec(val_fraction, test_fraction, seed, max_samples, carves_val=val is None)
    return _from_splits(
        given, spec, name=name, kind=kind, num_classes=num_classes, class_names=class_names,
        normalise=normalise, augment=augment, first=first, feature_names=columns,
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
    feature_names: tuple[str, ...] | None = None,
) -> Dataset:
    """:func:`dataset_from_splits` with a checked split spec; the file and factory sources call this.
    ``first``: sample 0 of torch Dataset splits, already read (for the size estimate)."""
    if given.get("train") is None:
        raise UserError(f"Dataset {name!r} needs a 'train' split; got none.")
    first = first or {}
    arrays = {split: _read_split(split, obj, first.get(split), check_labels=False)
              for split, obj in given.items() if obj is not None}
    arrays, names = _coded_text_labels(arrays, class_names)  # text labels: the same indices in every split
    arrays = {split: (x, _check_labels(split, y)) for split, (x, y) in arrays.items()}
    sample_shape = _common_sample_shape(arrays)
    kind, input_shape = _infer_kind(kind, sample_shape)
    arrays = {split: (x.reshape(len(x), *input_shape), y) for split, (x, y) in arrays.items()}
    if names is None:
        names = None if class_names is None else tuple(str(c) for c in class_names)
    num_classes = _num_classes(arrays, num_classes, names)
    parts = _assemble(arrays, spec)
    _check_nonempty(name, parts, spec, official_test="test" in arrays)
    tensors, mean, std = _tensors(parts, kind, normalise, given_x=[x for x, _ in arrays.values()])
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = tensors
    # (H, W) samples are read as one-channel images: say so, or "as given" would not be true
    steps = (f"samples of shape {tuple(sample_shape)} given a channel axis: fed as {tuple(input_shape)}"
             + ("" if normalise else ", values as given (cast to float32)"),) if len(sample_shape) == 2 and kind == "image" \
        else ()
    return Dataset(
        name=name, kind=kind, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
        x_test=x_test, y_test=y_test, num_classes=num_classes, input_shape=input_shape,
        augment=augment if kind == "image" else None, class_names=names, mean=mean, std=std,
        skipped_files=skipped_files, source_steps=steps, **_feature_fields(parts, kind, normalise),
        feature_names=_named_columns(feature_names, kind, input_shape),
    )  # fmt: skip


def _regression_from_splits(given: Mapping[str, Split | None], *, name: str, kind: str | None, normalise: bool,
                            val_fraction: float, test_fraction: float, seed: int,
                            max_samples: int | None, first: Mapping[str, Any] | None = None,
                            target_names: tuple[str, ...] | None = None,
                            feature_names: tuple[str, ...] | None = None) -> Dataset:
    """:func:`dataset_from_splits` for real-valued targets."""
    if given.get("train") is None:
        raise UserError(f"Dataset {name!r} needs a 'train' split; got none.")
    first = first or {}
    arrays = {split: _read_regression_split(split, obj, first.get(split))
              for split, obj in given.items() if obj is not None}
    widths = {s: (1 if y.ndim == 1 else y.shape[1]) for s, (_, y) in arrays.items()}
    if len(set(widths.values())) != 1:
        raise UserError(f"Every split's y must have the same number of targets; got {widths}.")
    width = next(iter(widths.values()))
    if target_names is not None and len(target_names) != width:
        raise UserError(f"target_names names {len(target_names)} target(s) {list(target_names)}, but y has {width} "
                        f"value(s) per sample; give one name per column of y, in its order.")
    if target_names is not None and len(set(target_names)) != len(target_names):
        raise UserError(f"The targets' names must be distinct (output j predicts target_names[j]; a pandas y's columns "
                        f"name them unless target_names does); got {list(target_names)}.")
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
                   y_test=y_test, num_classes=width, input_shape=input_shape, augment=None,
                   mean=mean, std=std, task="regression", target_names=target_names,
                   feature_names=_named_columns(feature_names, kind, input_shape), **_feature_fields(parts, kind, normalise))


def regression_target_names(task: str, given: Iterable[str] | None, train: Any) -> tuple[str, ...] | None:
    """The names of a regression's targets: ``given``, else :func:`_pandas_target_names` of the train split; a
    ``UserError`` when names are given for a classifier (its classes are ``class_names``)."""
    if given is not None and task != "regression":
        raise UserError("'target_names' names a regression's outputs (task='regression'); a classifier's classes "
                        f"are named by 'class_names'. Got target_names={list(given)!r} with task={task!r}.")
    if task != "regression":
        return None
    if isinstance(given, str):  # one target's name, not its letters
        given = [given]
    return _pandas_target_names(train) if given is None else tuple(str(t) for t in given)


def _pandas_feature_names(train: Any) -> tuple[str, ...] | None:
    """The column names of the train split's ``x`` when it is a pandas DataFrame (kept in spec.json's preprocessing
    as ``feature_names``: a device feeding the exported model needs the columns' order); None otherwise."""
    return _frame_columns(_pair_member(train, 0))


def _pair_member(split: Any, index: int) -> Any:
    """``x`` (0) or ``y`` (1) of an ``(x, y)`` split; None for anything else (a torch Dataset, None)."""
    return split[index] if isinstance(split, (tuple, list)) and len(split) == 2 else None


def _frame_columns(value: Any) -> tuple[str, ...] | None:
    """A pandas DataFrame's column names as strings; None for anything else."""
    columns = getattr(value, "columns", None)
    return tuple(str(c) for c in columns) if columns is not None and getattr(value, "ndim", 0) == 2 else None


def _named_columns(names: tuple[str, ...] | None, kind: str, input_shape: Sequence[int]) -> tuple[str, ...] | None:
    """``names`` for a table whose features they name one to one; None for images or a count that differs."""
    return names if names and kind == "tabular" and tuple(input_shape) == (len(names),) else None


def _pandas_target_names(train: Any) -> tuple[str, ...] | None:
    """The names of a regression's targets when the train split's ``y`` is a pandas DataFrame (its columns) or a
    named Series; None otherwise.

    >>> import pandas as pd
    >>> _pandas_target_names((np.zeros((2, 3)), pd.DataFrame({"temp": [1.0, 2.0], "load": [0.0, 1.0]})))
    ('temp', 'load')
    >>> _pandas_target_names((np.zeros((2, 3)), pd.Series([1.0, 2.0], name="price"))), _pandas_target_names(None)
    (('price',), None)
    """
    y = _pair_member(train, 1)
    columns = _frame_columns(y)
    if columns is not None:
        return columns
    name = getattr(y, "name", None) if type(y).__name__ == "Series" else None
    return (str(name),) if name is not None else None


def _tensors(parts, kind: str, normalise: bool, *, given_x: list[np.ndarray]):
    """``([(x, y) tensors per split], mean, std)``: as given (float32) or normalised like the built-in sets."""
    if not normalise:
        # y is already rayprune's own copy (_check_labels / _check_targets); x is copied only where it
        # may still be the caller's array, so that a large float32 split is not held twice
        return [(torch.from_numpy(_own_float32(x, given_x)), torch.from_numpy(y)) for x, y in parts], None, None
    if kind == "image":
        tensors, mean_t, std_t = _standardise_images(parts)
        return tensors, tuple(mean_t.tolist()), tuple(std_t.tolist())
    return _min_max_features(parts), None, None  # the range goes on the Dataset: _feature_fields


def _feature_fields(parts, kind: str, normalise: bool) -> dict[str, tuple[float, ...]]:
    """The train range :func:`_min_max_features` scaled tabular features by, as Dataset fields ({} otherwise)."""
    if not normalise or kind == "image":
        return {}
    low, span = feature_range(parts[0][0])
    return {"feature_low": tuple(float(v) for v in low), "feature_span": tuple(float(v) for v in span)}


def _own_float32(x: np.ndarray, callers: list[np.ndarray]) -> np.ndarray:
    if x.dtype == np.float32 and not any(np.may_share_memory(x, c) for c in callers):
        return x
    return x.astype(np.float32)


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
