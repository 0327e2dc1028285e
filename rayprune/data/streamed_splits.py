"""A user's splits kept as torch Datasets: whether they stream, and the StreamedDataset built from them.

:func:`_stream_choice` applies a :class:`~rayprune.data.streaming.StreamingPolicy` to the splits a
user gave, reading sample 0 of each torch Dataset to estimate their size; :func:`_streamed_from_splits`
checks that sample of each split and carves the missing splits out of train as ``Subset`` objects,
reading no other sample. The containers themselves live in :mod:`rayprune.data.streaming`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, UserTypeError
from .datasets import _check_nonempty, _share_cap, _SplitSpec
from .splits import split_indices, subsample_indices
from .streaming import StreamedDataset, StreamingPolicy, estimate_mb, is_streamable
from .user_splits import (
    SPLITS,
    Split,
    _check_features,
    _check_labels,
    _check_targets,
    _describe,
    _infer_kind,
    _num_classes,
    _read_regression_split,
    _read_split,
    _scalar_label,
    _to_numpy,
)


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
    carved out of train as Subsets, as :func:`~rayprune.data.convert._assemble` does with arrays."""
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
