"""A data factory: a user's function, named ``package.module:function`` (``data.name``), returning the splits.

:func:`load_factory` imports and calls it; :func:`split_objects` reads what it returned (a dict, a
tuple or one split), as it reads the ``data=`` of the Python API. The data is taken as given, without
normalisation (see :mod:`rayprune.data.convert`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._imports import import_object
from ..errors import UserError, UserTypeError
from .convert import _from_splits, _pandas_feature_names, _regression_from_splits, regression_target_names
from .datasets import Dataset, _split_spec, _SplitSpec
from .streamed_splits import _stream_choice, _streamed_from_splits
from .streaming import StreamedDataset, StreamingPolicy
from .user_splits import SPLITS, _describe

__all__ = ["DataFactoryError", "load_factory", "split_objects"]


class DataFactoryError(RuntimeError):
    """A user data factory (``package.module:function``) raised; its exception is ``__cause__``."""


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
    given_names = options.pop("target_names", None)
    try:
        target_names = regression_target_names(task, given_names, splits["train"])
        feature_names = _pandas_feature_names(splits["train"])
        streams, first = _stream_choice(splits, policy, name=factory)
        if streams:
            if given_names is not None:
                raise UserError("target_names is recorded for data held in memory; streamed data cannot name its "
                                "targets yet: return arrays, or leave target_names out.")
            return _streamed_from_splits(splits, spec, policy, first, name=factory, task=task, **options)
        if task == "regression":
            return _regression_from_splits(splits, name=factory, kind=None, normalise=False,
                                           val_fraction=spec.val_fraction, test_fraction=spec.test_fraction,
                                           seed=spec.seed, max_samples=spec.max_samples, first=first,
                                           target_names=target_names, feature_names=feature_names)
        return _from_splits(splits, spec, name=factory, normalise=False, first=first, feature_names=feature_names,
                            **options)
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


def _array_like(value: object) -> bool:
    """A split's x: a tensor, an array, or a pandas DataFrame/Series (so ``(frame, labels)`` is one (x, y) pair,
    not a (train, val) tuple)."""
    return isinstance(value, (Tensor, np.ndarray)) or type(value).__module__.startswith("pandas")


def split_objects(result: Any, *, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``({"train", "val", "test"} -> split or None, {class_names/num_classes})`` from what a data
    factory returned or the Python API was given; ``source`` starts the error message
    (``"The data factory 'pkg.mod:f' must return"``, ``"data= must be"``)."""
    expected = (
        "a dict with 'train' (and optionally 'val', 'test', 'class_names', 'num_classes', a regression's "
        "'target_names'), a tuple "
        "(train, val[, test]), or one (x, y) pair or torch Dataset"
    )
    if isinstance(result, Mapping):
        extra = sorted(set(map(str, result)) - {*SPLITS, "class_names", "num_classes", "task", "target_names"})
        if extra or "train" not in result:
            problem = f"unknown key(s) {extra}" if extra else "no 'train' key"
            raise UserError(f"{source} {expected}; got a dict with {problem} (keys: {sorted(map(str, result))}).")
        splits = {split: result.get(split) for split in SPLITS}
        options = {k: result[k] for k in ("class_names", "num_classes", "task", "target_names") if k in result}
        return splits, options
    if isinstance(result, torch.utils.data.Dataset) or (
        isinstance(result, (tuple, list)) and result and _array_like(result[0])
    ):
        return {"train": result}, {}
    if isinstance(result, (tuple, list)) and len(result) in (2, 3):
        return dict(zip(SPLITS, result)), {}
    raise UserTypeError(f"{source} {expected}; got {_describe(result)}.")
