"""Data too large to sit on the device: splits kept as torch Datasets and read batch by batch.

A user's map-style ``torch.utils.data.Dataset`` (from a data factory or the Python API) is either
read once into tensors that live on the device (:class:`~rayprune.data.Dataset`, the fast path) or
kept as it is and streamed through a ``DataLoader`` (:class:`StreamedDataset`).
:class:`StreamingPolicy` decides which (``data.streaming``, ``data.max_resident_mb``): ``auto``
streams when the splits' estimated size as float32 tensors (one sample's size times the length,
read from sample 0 of each split, never from the whole split) exceeds the threshold.

Both containers offer :meth:`source` per split, so the engine reads either through one interface
(:class:`~rayprune.data.source.SplitSource`). A streamed dataset never builds a tensor of a whole
split; what it costs is a DataLoader read (and a host-to-device copy) per batch, where resident data
costs an index into device memory.

A streamed dataset travels to other processes (Ray's evaluator actors) as its torch Datasets:
:meth:`StreamedDataset.check_shippable` says clearly when one cannot be pickled.
"""

from __future__ import annotations

import math
import pickle
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

import numpy as np
import torch
from torch import Tensor

from ..errors import UserError, UserTypeError
from .batches import AUGMENT_KINDS
from .source import LoaderSource, StreamedDataError

__all__ = ["DEFAULT_MAX_RESIDENT_MB", "StreamedDataset", "StreamingPolicy", "estimate_mb", "is_streamable"]

DEFAULT_MAX_RESIDENT_MB = 1024.0
"""``data.max_resident_mb``'s default: above 1 GiB of float32 tensors, ``auto`` streams (the tensors
would be held by the driver and again by every evaluator process, and on their device)."""

_SPLITS = ("train", "val", "test")
_MB = 1024.0**2


@dataclass(frozen=True)
class StreamingPolicy:
    """Whether a user's torch Datasets stream (``data.streaming``, ``data.max_resident_mb``,
    ``data.num_workers``).

    ``mode`` ``"auto"`` streams when the estimated size exceeds ``max_resident_mb``; ``True``
    always streams (a source that cannot is an error); ``False`` never does.

    Example:
        >>> StreamingPolicy("auto", max_resident_mb=100).streams(250.0)
        True
        >>> StreamingPolicy(False).streams(1e9), StreamingPolicy(True).streams(0.1)
        (False, True)
    """

    mode: Union[Literal["auto"], bool] = "auto"
    max_resident_mb: float = DEFAULT_MAX_RESIDENT_MB
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("auto", True, False) or (self.mode != "auto" and not isinstance(self.mode, bool)):
            raise UserError(f"'streaming' (data.streaming) must be 'auto', true or false; got {self.mode!r}.")
        size = self.max_resident_mb
        if isinstance(size, bool) or not isinstance(size, (int, float)) or not 0 < size < math.inf:
            raise UserError(f"'max_resident_mb' (data.max_resident_mb) must be a number > 0; got {size!r}.")
        workers = self.num_workers
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
            raise UserError(f"'num_workers' (data.num_workers) must be an integer >= 0; got {workers!r}.")

    def streams(self, size_mb: float) -> bool:
        """Whether data of ``size_mb`` (as float32 tensors) streams under this policy."""
        return self.mode is True or (self.mode == "auto" and size_mb > self.max_resident_mb)


def is_streamable(obj: Any) -> bool:
    """Whether a split can stream: a map-style torch Dataset with a length (random access by index)."""
    if not isinstance(obj, torch.utils.data.Dataset) or isinstance(obj, torch.utils.data.IterableDataset):
        return False
    try:
        len(obj)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def estimate_mb(given: Mapping[str, Any], first: Mapping[str, Any] | None = None) -> float:
    """The splits' size as float32 tensors, in MiB: a torch Dataset's sample 0 (``first[split]``
    when read already) times its length, never a pass over it; an ``(x, y)`` pair's ``x`` as it is.

    >>> estimate_mb({"train": torch.utils.data.TensorDataset(torch.zeros(1024, 256), torch.zeros(1024))})
    1.0
    """
    first = first or {}
    total = 0.0
    for split, obj in given.items():
        if is_streamable(obj):
            if len(obj) == 0:
                continue
            sample = first[split] if split in first else obj[0]
            x = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
            total += 4.0 * _numel(x) * len(obj)
        elif isinstance(obj, (tuple, list)) and len(obj) == 2:
            total += 4.0 * _numel(obj[0])
    return total / _MB


def _numel(x: Any) -> int:
    if isinstance(x, Tensor):
        return x.numel()
    try:
        return int(np.asarray(x).size)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True, eq=False)
class StreamedDataset:
    """Train/validation/test splits kept as torch Datasets of ``(x, y)`` samples, read through a
    DataLoader batch by batch (see the module docstring).

    The fields mean what they mean on :class:`~rayprune.data.Dataset`; ``num_workers`` is the
    DataLoader's, ``size_mb`` the estimate the choice to stream was made on. The data is taken as
    given, never normalised. There are no ``x_*``/``y_*`` tensors: reading one raises
    :class:`~rayprune.data.source.StreamedDataError`; :meth:`source` reads a split.

    Example:
        >>> split = torch.utils.data.TensorDataset(torch.zeros(8, 3), torch.arange(8) % 2)
        >>> data = StreamedDataset("mine", "tabular", split, split, split, num_classes=2, input_shape=(3,))
        >>> len(data.source("val")), data.streamed, hasattr(data, "x_train")
        (8, True, False)
    """

    name: str
    kind: Literal["image", "tabular"]
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    test: torch.utils.data.Dataset
    num_classes: int
    input_shape: tuple[int, ...]
    augment: str | None = None
    class_names: tuple[str, ...] | None = None
    task: Literal["classification", "regression"] = "classification"
    num_workers: int = 0
    size_mb: float | None = None
    _sources: dict[str, LoaderSource] = field(default_factory=dict, init=False, repr=False, compare=False)

    streamed: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.kind not in ("image", "tabular"):
            raise UserError(f"'kind' must be one of ['image', 'tabular']; got {self.kind!r}.")
        if self.augment is not None and self.augment not in AUGMENT_KINDS:
            raise UserError(f"'augment' must be one of {list(AUGMENT_KINDS)} or None; got {self.augment!r}.")
        if self.task not in ("classification", "regression"):
            raise UserError(f"'task' must be 'classification' or 'regression'; got {self.task!r}.")
        for split in _SPLITS:
            if not is_streamable(getattr(self, split)):
                raise UserError(f"Split {split!r} of a streamed dataset must be a map-style torch Dataset with a "
                                f"length; got {type(getattr(self, split)).__name__}.")

    @property
    def device(self) -> torch.device:
        """The host: samples are read there and each batch is moved to the model's device."""
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> StreamedDataset:
        """Itself: a streamed dataset stays where it is; batches move to the device as they are read."""
        return self

    #: streamed batches are fed as float32 (token ids are not kept as integers when streamed)
    input_dtype: ClassVar[str] = "float32"

    def as_token_ids(self) -> None:
        """None: streamed inputs are cast to float32 as they are read (:meth:`Dataset.as_token_ids` keeps ids)."""
        return None

    def source(self, split: str) -> LoaderSource:
        """How the engine reads ``split`` ('train', 'val', 'test'); one per split and process, so
        DataLoader workers persist between reads."""
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {list(_SPLITS)}; got {split!r}.")
        source = self._sources.get(split)
        if source is None:
            source = self._sources[split] = LoaderSource(getattr(self, split), input_shape=self.input_shape,
                                                         task=self.task, num_workers=self.num_workers)
        return source

    def __getattr__(self, name: str) -> Any:
        # only called for attributes that do not exist: the tensor fields of a resident Dataset
        if name[:2] in ("x_", "y_") and name[2:] in _SPLITS:
            raise StreamedDataError(
                f"Dataset {self.name!r} is streamed (data.streaming): its splits are torch Datasets read "
                f"batch by batch through a DataLoader, so it has no {name} tensor. Code that needs the whole "
                f"split as tensors (the neon agent does) needs data.streaming: false; the search agents "
                f"(evolution, crl, tpe, random) read streamed data."
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_sources"] = {}  # DataLoaders stay in the process that made them
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def summary(self) -> dict[str, Any]:
        """Plain-Python facts about the dataset, ready for JSON or logs (no class counts: that would
        read every sample)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": len(self.train),  # type: ignore[arg-type]
            "n_val": len(self.val),  # type: ignore[arg-type]
            "n_test": len(self.test),  # type: ignore[arg-type]
            "task": self.task,
            "train_class_counts": None,
            "augment": self.augment,
            "streamed": True,
            "size_mb": self.size_mb,
            "num_workers": self.num_workers,
            "device": str(self.device),
        }

    def check_shippable(self, *, warn_above_mb: float | None = None) -> int:
        """Pickle every split as another process will receive it; return the bytes it takes.

        Raises a :class:`~rayprune.errors.UserTypeError` naming the split and the Dataset class when
        one cannot be pickled (an open file, a database handle, a generator, a lambda under plain
        pickle). Warns when the pickled datasets exceed ``warn_above_mb``: the Dataset then carries
        its data, not paths to it, and every evaluator process receives a copy.
        """
        dumps = _dumps()
        total = 0
        for split in _SPLITS:
            dataset = getattr(self, split)
            try:
                total += len(dumps(dataset))
            except Exception as exc:  # noqa: BLE001 - any pickling failure gets the same explanation
                cls = f"{type(dataset).__module__}.{type(dataset).__qualname__}"
                raise UserTypeError(
                    f"The {split} split of streamed dataset {self.name!r}, a {cls}, cannot be pickled, so it "
                    f"cannot be shipped to the evaluator processes: {type(exc).__name__}: {exc}. Keep file "
                    f"paths (not open files, connections or generators) in the Dataset and open them lazily "
                    f"in __getitem__, or set data.streaming: false to read the data into tensors."
                ) from exc
        if warn_above_mb is not None and total / _MB > warn_above_mb:
            warnings.warn(
                f"Streamed dataset {self.name!r} pickles to {total / _MB:.0f} MiB: its Datasets carry their data "
                f"rather than paths to it (an np.memmap, for one, pickles as a whole array), and every evaluator "
                f"process receives a copy. Open files lazily in __getitem__ to ship only the paths.",
                UserWarning, stacklevel=2,
            )
        return total


def _dumps():
    """cloudpickle's ``dumps`` when installed (what Ray pickles with: classes defined in ``__main__``
    or in a function travel by value), else the standard library's."""
    try:
        import cloudpickle
    except ImportError:  # pragma: no cover - a dependency of gymnasium, installed with rayprune
        return lambda obj: pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return cloudpickle.dumps
