"""A user's splits as given (:data:`Split`), read into checked numpy arrays.

A split is an ``(x, y)`` pair of tensors or numpy arrays, or a ``torch.utils.data.Dataset`` of
``(x, y)`` samples. Reading one checks what rayprune needs of it (real, finite features; integer
class indices, or real-valued targets for a regression), with errors that name the split; the
arrays of all splits then give the dataset's kind, input shape and number of classes. The converter
(:mod:`rayprune.data.convert`), streamed splits (:mod:`rayprune.data.streamed_splits`) and the
factory, image-folder and ``.npz`` sources read a user's splits through here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, UserTypeError
from .datasets import _Arrays

__all__ = ["SPLITS", "Split"]

Split = Union[tuple[Any, Any], torch.utils.data.Dataset]
"""One split as a user holds it: an ``(x, y)`` pair of tensors or numpy arrays, or a
``torch.utils.data.Dataset`` whose samples are ``(x, y)``."""

SPLITS = ("train", "val", "test")
_SHOWN = 5


def _pandas_pair(split: str, obj: Any) -> Any:
    """An ``(x, y)`` pair of a pandas DataFrame (numeric columns) and Series as numpy arrays; anything else as
    given. A whole DataFrame as a split is refused with the pair to write (which column is the label?)."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        raise UserTypeError(f"Split {split!r} is a pandas.DataFrame; pass it as an (x, y) pair, e.g. "
                            f"(frame.drop(columns=['label']), frame['label']), or name the file with data.name: tabular.")
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2 and any(isinstance(a, (pd.DataFrame, pd.Series))
                                                                      for a in obj)):
        return obj
    x, y = obj
    if isinstance(x, pd.DataFrame):
        text = [str(c) for c in x.columns if not (pd.api.types.is_numeric_dtype(x[c]) or pd.api.types.is_bool_dtype(x[c]))]
        if text:
            raise UserTypeError(f"The x of split {split!r} has non-numeric columns {text[:_SHOWN]}; encode them as your "
                                f"model was trained (e.g. pandas.get_dummies), or let data.name: tabular one-hot encode "
                                f"them.")
        x = x.to_numpy(dtype=np.float32)
    elif isinstance(x, pd.Series):
        x = x.to_numpy(dtype=np.float32).reshape(-1, 1)
    if isinstance(y, pd.DataFrame):
        y = y.to_numpy()
        y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    elif isinstance(y, pd.Series):
        y = y.to_numpy()
    return (x, y)


def _read_split(split: str, obj: Split, first: Any = None, *, check_labels: bool = True) -> _Arrays:
    """``(x, y)`` numpy arrays of one split: x as given, y checked and int64, both non-empty.
    ``first``: a torch Dataset's sample 0 when it was read already. pandas pairs are read as numpy.
    ``check_labels=False``: y as given (text labels are coded over every split first: :func:`_coded_text_labels`)."""
    obj = _pandas_pair(split, obj)
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
    return _check_features(split, x), (_check_labels(split, y) if check_labels else y)


def _is_text(y: np.ndarray) -> bool:
    """One text label per sample (other shapes go to :func:`_check_labels`, which says what shape it needs)."""
    return y.ndim == 1 and (y.dtype.kind in "US" or (y.dtype == object and len(y) > 0
                                                    and all(isinstance(v, (str, bytes)) for v in y)))


def _coded_text_labels(
    arrays: Mapping[str, _Arrays], class_names: Iterable[Any] | None
) -> tuple[dict[str, _Arrays], tuple[str, ...] | None]:
    """Text class labels (``"cat"``, ``"low"``) as class indices, the same in every split: by the order of
    ``class_names`` when given (the order the model was trained with), else sorted (the order of
    ``sklearn.preprocessing.LabelEncoder`` and ``numpy.unique``). Returns the splits and the class names the
    indices stand for (None when no split has text labels: the arrays are returned as they were)."""
    text = {split for split, (_, y) in arrays.items() if _is_text(y)}
    if not text:
        return dict(arrays), None
    if len(text) < len(arrays):
        other = sorted(set(arrays) - text)
        raise UserTypeError(f"Split(s) {sorted(text)} have text labels and {other} do not; give every split's y "
                            f"the same kind (all text, or all integer class indices).")
    as_text = {split: np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y.tolist()], dtype=str)
               for split, (_, y) in arrays.items()}
    seen = sorted(set().union(*(np.unique(y).tolist() for y in as_text.values())))
    names = seen if class_names is None else [str(c) for c in class_names]
    if len(set(names)) != len(names):
        raise UserError(f"class_names must not repeat a name; got {names}.")
    unknown = [label for label in seen if label not in set(names)]
    if unknown:
        raise UserError(f"The labels {unknown[:_SHOWN]} are not in class_names {names[:20]}; class_names must "
                        f"name every class, in the order of the model's outputs.")
    index = {name: i for i, name in enumerate(names)}
    coded = {split: (x, np.array([index[v] for v in as_text[split]], dtype=np.int64))
             for split, (x, _) in arrays.items()}
    return coded, tuple(names)


def _read_regression_split(split: str, obj: Split, first: Any = None) -> _Arrays:
    """``(x, y)`` numpy arrays of one regression split: x checked, y float32 targets, both non-empty."""
    obj = _pandas_pair(split, obj)
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
        real = np.issubdtype(y.dtype, np.floating) and bool((~np.isfinite(y) | (y != np.round(y))).any())
        raise UserError(
            f"The y of split {split!r} must be one class index per sample, shape (N,); got shape "
            f"{y.shape} " + ("holding real values: several real-valued targets per sample (regression) need "
                             "data.task: regression (task='regression' in Python)." if real else
                             "(one-hot labels must be turned into indices, e.g. with argmax).")
        )
    if y.dtype == np.bool_ or np.issubdtype(y.dtype, np.integer):
        pass
    elif np.issubdtype(y.dtype, np.floating):
        fractional = ~np.isfinite(y) | (y != np.round(y))
        if fractional.any():
            shown = ", ".join(repr(float(v)) for v in y[fractional][:_SHOWN])
            raise UserError(
                f"The y of split {split!r} must hold integer class indices; got "
                f"{int(fractional.sum())} non-integral value(s): {shown}. A real-valued target (regression) needs "
                f"data.task: regression (task='regression' in Python) and a data function, a table or data in memory."
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
