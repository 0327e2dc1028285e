"""Where the engine reads a split from: device-resident tensors, or a torch Dataset through a DataLoader.

Every consumer (fine-tuning, evaluation, BatchNorm re-estimation, a metric) reads a split through one
small interface, :class:`SplitSource`: its length, and mini-batches ``(x, y)`` on a device, in order,
in a seeded per-epoch shuffle, or at given indices.

- :class:`TensorSource` serves tensors that already live on the device; each batch is an index into
  them (:class:`~rayprune.data.DeviceBatches`). This is the fast path, for data that fits.
- :class:`LoaderSource` serves a map-style ``torch.utils.data.Dataset`` through a
  ``torch.utils.data.DataLoader`` (:class:`LoaderBatches`): each batch is read from the dataset when
  it is needed, collated on the host and moved to the device. No tensor of the whole split is built.

For the same seed the two give the same batches: the epoch's permutation and its augmentation draw
from one generator seeded by ``(seed, epoch)`` on the target device, in the same order.

Example:
    >>> x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    >>> resident = TensorSource(x, y)
    >>> streamed = LoaderSource(torch.utils.data.TensorDataset(x, y), input_shape=(1,))
    >>> [yb.tolist() for _, yb in streamed.batches(4, shuffle=True, seed=3)] == \\
    ...     [yb.tolist() for _, yb in resident.batches(4, shuffle=True, seed=3)]
    True
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, Subset

from ..errors import UserError
from .batches import Augment, DeviceBatches, EpochBatches, _epoch_seed, epoch_generator

__all__ = ["LoaderBatches", "LoaderSource", "SplitSource", "StreamedDataError", "TensorSource"]

Index = Sequence[int] | Tensor | np.ndarray


class StreamedDataError(UserError, AttributeError):
    """Whole-split tensors were asked of a streamed split, which has none (it is read batch by batch).

    An ``AttributeError`` too, so ``hasattr(data, "x_train")`` is False for streamed data.
    """


class SplitSource(abc.ABC):
    """One split as the engine reads it: a length, and mini-batches on a device."""

    streamed: bool
    """True when batches are read through a DataLoader, False for device-resident tensors."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """Where the samples are before they are batched (the tensors' device; the host for a loader)."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def batches(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        index: Index | None = None,
        shuffle: bool = False,
        drop_last: bool = False,
        augment: Augment | None = None,
        seed: int = 0,
    ) -> EpochBatches:
        """Mini-batches ``(x, y)`` on ``device`` (default :attr:`device`), ``x`` float32.

        ``index`` restricts them to those samples, in that order; ``shuffle`` permutes them afresh
        each epoch from ``(seed, epoch)``; ``augment`` runs on each ``x`` batch on the device with
        the same epoch generator.
        """

    @abc.abstractmethod
    def sample(self, n: int, *, seed: int = 0) -> SplitSource:
        """``n`` samples of this split to score on quickly, the same ones on every call for a ``seed``."""

    @abc.abstractmethod
    def tensors(self, name: str = "split") -> tuple[Tensor, Tensor]:
        """The whole split as ``(x, y)`` tensors; :class:`StreamedDataError` for a streamed split."""


class TensorSource(SplitSource):
    """A split held as tensors ``x`` and ``y`` (the fast path: batches are views or index selects).

    Example:
        >>> source = TensorSource(torch.zeros(5, 2), torch.arange(5))
        >>> [len(xb) for xb, _ in source.batches(2)], len(source.sample(3))
        ([2, 2, 1], 3)
    """

    streamed = False

    def __init__(self, x: Tensor, y: Tensor) -> None:
        if len(x) != len(y):
            raise UserError(f"'x' and 'y' must have the same length; got {len(x)} and {len(y)}.")
        self.x, self.y = x, y

    @property
    def device(self) -> torch.device:
        return self.x.device

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size, *, device=None, index=None, shuffle=False, drop_last=False, augment=None,
                seed=0) -> DeviceBatches:
        device = self.device if device is None else torch.device(device)
        x, y = self.x, self.y
        if index is not None:
            index = torch.as_tensor(index, dtype=torch.long).to(x.device)
            x, y = x.index_select(0, index), y.index_select(0, index)
        return DeviceBatches(x.to(device), y.to(device), batch_size=batch_size, shuffle=shuffle, augment=augment,
                             drop_last=drop_last, seed=seed)

    def sample(self, n: int, *, seed: int = 0) -> TensorSource:
        """The first ``n`` samples (views, no copy): the splits rayprune carves are drawn by seed
        already, and the search's scores have always been taken on this prefix."""
        return TensorSource(self.x[:n], self.y[:n])

    def tensors(self, name: str = "split") -> tuple[Tensor, Tensor]:
        return self.x, self.y


class LoaderSource(SplitSource):
    """A split kept as a map-style torch Dataset of ``(x, y)`` samples, read through a DataLoader.

    ``input_shape`` is the model's input per sample (a ``(H, W)`` sample becomes ``(1, H, W)``, an
    image flattened for a tabular model ``(C·H·W,)``); ``task`` decides the label dtype (int64 class
    indices, or float32 regression targets). ``num_workers`` DataLoader worker processes read
    samples (0: in this process); with workers the loaders persist between calls, so workers start
    once per source, not once per evaluation. Batches are pinned when the device is CUDA.

    Example:
        >>> data = torch.utils.data.TensorDataset(torch.zeros(6, 4, 4, dtype=torch.uint8), torch.arange(6))
        >>> xb, yb = next(iter(LoaderSource(data, input_shape=(1, 4, 4)).batches(4)))
        >>> tuple(xb.shape), xb.dtype, yb.dtype
        ((4, 1, 4, 4), torch.float32, torch.int64)
    """

    streamed = True

    def __init__(self, dataset: torch.utils.data.Dataset, *, input_shape: Sequence[int],
                 task: str = "classification", num_workers: int = 0) -> None:
        self.dataset = dataset
        self.input_shape = tuple(int(s) for s in input_shape)
        self.task = task
        self.num_workers = int(num_workers)
        self._loaders: dict[tuple[int, bool, bool], _Loader] = {}

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def batches(self, batch_size, *, device=None, index=None, shuffle=False, drop_last=False, augment=None,
                seed=0) -> LoaderBatches:
        return LoaderBatches(self, batch_size=batch_size, device=self.device if device is None else device,
                             index=index, shuffle=shuffle, drop_last=drop_last, augment=augment, seed=seed)

    def sample(self, n: int, *, seed: int = 0) -> LoaderSource:
        """A fixed random subset of ``n`` samples (a ``torch.utils.data.Subset``, indices sorted so
        that files are read in order) drawn by ``seed``: a user's Dataset may be sorted by class, so
        its first ``n`` would not do."""
        if n >= len(self):
            return self
        picked = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return LoaderSource(Subset(self.dataset, picked.tolist()), input_shape=self.input_shape, task=self.task,
                            num_workers=self.num_workers)

    def tensors(self, name: str = "split") -> tuple[Tensor, Tensor]:
        raise StreamedDataError(
            f"The {name} split is streamed (data.streaming): it is read batch by batch from a "
            f"{type(self.dataset).__name__} and has no tensors of the whole split. Iterate "
            f"split.batches() for (x, y) mini-batches, or set data.streaming: false for small data."
        )

    def loader(self, batch_size: int, drop_last: bool, pin_memory: bool) -> _Loader:
        """A DataLoader over this dataset whose sampler order the caller sets per epoch.

        Kept per ``(batch_size, drop_last, pin_memory)`` so that worker processes persist; one that
        is in the middle of an epoch is not shared (a fresh one is made for the second reader).
        """
        key = (int(batch_size), bool(drop_last), bool(pin_memory))
        entry = self._loaders.get(key)
        if entry is not None and not entry.busy:
            return entry
        sampler = _OrderSampler()
        entry = _Loader(DataLoader(
            self.dataset, batch_size=key[0], sampler=sampler, drop_last=key[1], pin_memory=key[2],
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            generator=torch.Generator(),  # worker seeds from here, never from the global RNG
        ), sampler)
        self._loaders.setdefault(key, entry)
        return entry

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_loaders"] = {}  # DataLoaders (and their worker processes) stay in their process
        return state


class LoaderBatches(EpochBatches):
    """:class:`~rayprune.data.DeviceBatches`' epochs, read from a torch Dataset through a DataLoader.

    Each epoch's order (a permutation of ``index`` or of every sample when ``shuffle``, else
    ``index`` or ``0..n-1``) is drawn from :func:`~rayprune.data.batches.epoch_generator` on the
    device, then the DataLoader reads exactly those samples, batch by batch; ``x`` is moved to the
    device, cast to float32 there and reshaped to the model's input shape, and ``augment`` runs on
    it with the same generator.
    """

    def __init__(self, source: LoaderSource, *, batch_size: int, device: torch.device | str,
                 index: Index | None = None, shuffle: bool = False, drop_last: bool = False,
                 augment: Augment | None = None, seed: int = 0) -> None:
        self.source = source
        self.device = torch.device(device)
        self.index = None if index is None else torch.as_tensor(index, dtype=torch.long).cpu()
        self._set_options(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, augment=augment, seed=seed)

    def _size(self) -> int:
        return len(self.source) if self.index is None else len(self.index)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one given epoch, without advancing :attr:`epoch`."""
        generator = None
        if self.shuffle or self.augment is not None:
            generator = epoch_generator(self.seed, epoch, self.device)
        order: Sequence[int]
        if self.shuffle:  # drawn exactly as DeviceBatches draws it: the same epochs from the same seed
            permutation = torch.randperm(self._size(), generator=generator, device=self.device).cpu()
            order = (permutation if self.index is None else self.index[permutation]).tolist()
        else:
            order = range(self._size()) if self.index is None else self.index.tolist()
        pin = self.device.type == "cuda"
        entry = self.source.loader(self.batch_size, self.drop_last, pin)
        entry.sampler.order = order
        # the DataLoader draws its workers' base seed from this generator (never the global RNG, which
        # would shift the fine-tune's dropout): a Dataset's own random transforms repeat by (seed, epoch)
        entry.loader.generator.manual_seed(_epoch_seed(self.seed, epoch) ^ 0x5EED)  # type: ignore[union-attr]
        entry.busy = True
        try:
            for xb, yb in entry.loader:
                xb = self._inputs(xb, pin)
                if self.augment is not None:
                    xb = self.augment(xb, generator)
                yield xb, self._targets(yb, pin)
        finally:
            entry.busy = False

    def _inputs(self, xb: Any, pin: bool) -> Tensor:
        xb = torch.as_tensor(xb).to(self.device, non_blocking=pin)
        return xb.to(torch.float32).reshape(len(xb), *self.source.input_shape)

    def _targets(self, yb: Any, pin: bool) -> Tensor:
        yb = torch.as_tensor(yb).to(self.device, non_blocking=pin)
        if self.source.task == "regression":
            return yb.to(torch.float32)
        return yb.to(torch.int64).reshape(len(yb))


class _OrderSampler(Sampler[int]):
    """Yields whatever order its reader set last: one DataLoader (and its workers) serves every epoch."""

    def __init__(self) -> None:
        self.order: Sequence[int] = ()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order)

    def __len__(self) -> int:
        return len(self.order)


class _Loader:
    """A DataLoader, its sampler, and whether an epoch is being read from it right now."""

    __slots__ = ("busy", "loader", "sampler")

    def __init__(self, loader: DataLoader, sampler: _OrderSampler) -> None:
        self.loader, self.sampler, self.busy = loader, sampler, False
