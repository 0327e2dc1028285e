"""Mini-batches and augmentation for tensors that already live on the training device.

Data that fits in device memory is moved there once and each batch is an index into it: no
DataLoader workers, no host↔device copy per batch. Augmentation runs on the batch, on the same
device, vectorised over samples. (Data too large for that streams through a DataLoader instead:
:class:`~rayprune.data.source.LoaderBatches`, the same epochs from a torch Dataset.)
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import UserError

__all__ = [
    "AUGMENT_KINDS",
    "Augment",
    "DeviceBatches",
    "EpochBatches",
    "crop_flip",
    "make_augment",
    "random_crop_flip",
]

Augment = Callable[[Tensor, torch.Generator], Tensor]
"""An on-device batch augmentation: ``(batch, generator) -> augmented batch`` of the same shape."""


class EpochBatches(abc.ABC):
    """Mini-batches ``(xb, yb)`` by epoch: ``iter()`` gives the next epoch, :meth:`infinite` cycles.

    Subclasses say how many samples an epoch draws from (:meth:`_size`) and produce the batches of
    a given epoch (:meth:`epoch_batches`), deterministically from ``(seed, epoch)``; they set their
    shared settings with :meth:`_set_options`.
    """

    seed: int = 0
    epoch: int = 0
    """The epoch the next ``iter()`` will produce; advanced by one per ``iter()``."""

    def _set_options(self, *, batch_size: int, shuffle: bool, drop_last: bool, augment: Augment | None,
                     seed: int) -> None:
        """Check and keep the settings every kind of batches has; the next epoch is 0."""
        _check_positive_int("batch_size", batch_size)
        _check_non_negative_int("seed", seed)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    @abc.abstractmethod
    def _size(self) -> int:
        """The samples one epoch draws from."""

    @abc.abstractmethod
    def epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one given epoch, without advancing :attr:`epoch`."""

    def __len__(self) -> int:
        return batch_count(self._size(), self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.epoch_batches(epoch)

    def infinite(self) -> Iterator[tuple[Tensor, Tensor]]:
        """Cycle through epochs forever, for iteration-based training loops.

        Example:
            >>> batches = DeviceBatches(torch.zeros(3, 1), torch.zeros(3), batch_size=2)
            >>> stream = batches.infinite()
            >>> [len(next(stream)[0]) for _ in range(4)]
            [2, 1, 2, 1]
        """
        if len(self) == 0:
            raise UserError(
                f"Cannot cycle through batches: {self._size()} samples with batch_size="
                f"{self.batch_size} and drop_last={self.drop_last} give no batch per epoch."
            )
        while True:
            yield from iter(self)


class DeviceBatches(EpochBatches):
    """Iterate ``(xb, yb)`` mini-batches of tensors that already live on the target device.

    Each epoch draws its permutation (and the augmentation's randomness) from a fresh
    ``torch.Generator`` on the data's device seeded from ``(seed, epoch)``, so the batches of epoch
    ``e`` are the same whenever they are produced, and the global RNG is never touched.

    Example:
        >>> x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
        >>> batches = DeviceBatches(x, y, batch_size=4, seed=0)
        >>> len(batches)
        3
        >>> sorted(int(i) for _, yb in batches for i in yb)  # one epoch sees every sample once
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        augment: Augment | None = None,
        drop_last: bool = False,
        seed: int = 0,
    ) -> None:
        if len(x) != len(y):
            raise UserError(f"'x' and 'y' must have the same length; got {len(x)} and {len(y)}.")
        if x.device != y.device:
            raise UserError(
                f"'x' and 'y' must be on the same device; got {x.device} and {y.device}."
            )
        self.x, self.y = x, y
        self._set_options(batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, augment=augment, seed=seed)

    def _size(self) -> int:
        return len(self.x)

    def epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of one given epoch, without advancing :attr:`epoch`."""
        generator = None
        if self.shuffle or self.augment is not None:  # in order without augmentation: nothing to draw
            generator = epoch_generator(self.seed, epoch, self.x.device)
        order = None
        if self.shuffle:
            order = torch.randperm(len(self.x), generator=generator, device=self.x.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = min(start + self.batch_size, len(self.x))
            if order is None:
                xb, yb = self.x[start:stop], self.y[start:stop]
            else:
                index = order[start:stop]
                xb, yb = self.x.index_select(0, index), self.y.index_select(0, index)
            if self.augment is not None:
                xb = self.augment(xb, generator)
            yield xb, yb


def batch_count(n: int, batch_size: int, drop_last: bool) -> int:
    """Batches per epoch of ``n`` samples.

    >>> batch_count(10, 4, False), batch_count(10, 4, True)
    (3, 2)
    """
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def epoch_generator(seed: int, epoch: int, device: torch.device | str) -> torch.Generator:
    """The generator every epoch's permutation and augmentation draw from, on ``device``."""
    generator = torch.Generator(device=device)
    generator.manual_seed(_epoch_seed(seed, epoch))
    return generator


def crop_flip(
    x: Tensor, shift_y: Tensor, shift_x: Tensor, flip: Tensor, *, padding: int
) -> Tensor:
    """Crop each zero-padded image at a given offset, then mirror it where ``flip`` is true.

    With ``P = pad(x[i], padding)`` the result is ``P[:, dy:dy+H, dx:dx+W]`` for sample ``i``
    (``dy = shift_y[i]``, ``dx = shift_x[i]`` in ``[0, 2·padding]``), flipped left-right when
    ``flip[i]``. ``dy = dx = padding`` and no flip returns ``x`` unchanged. Vectorised with two
    ``gather`` calls; no loop over samples.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 2, 2)
        >>> crop_flip(x, torch.tensor([1]), torch.tensor([2]), torch.tensor([True]), padding=1)
        tensor([[[[0., 1.],
                  [0., 3.]]]])
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = shift_y.view(n, 1) + torch.arange(h, device=x.device)
    columns = torch.arange(w, device=x.device).expand(n, w)
    columns = torch.where(flip.view(n, 1), (w - 1) - columns, columns) + shift_x.view(n, 1)
    out = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * padding))
    return out.gather(3, columns.view(n, 1, 1, w).expand(n, c, h, w))


def random_crop_flip(
    x: Tensor, generator: torch.Generator, *, padding: int = 4, flip: bool = True
) -> Tensor:
    """Random-shift (pad with zeros, crop back to H×W) and random horizontal flip, per sample.

    Offsets are uniform in ``[0, 2·padding]`` on each axis; each sample is flipped with p = 0.5
    when ``flip``. All randomness comes from ``generator``, which must be on ``x``'s device.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> random_crop_flip(torch.rand(8, 3, 32, 32), g).shape
        torch.Size([8, 3, 32, 32])
    """
    if x.dim() != 4:
        raise UserError(f"'x' must be an NCHW image batch; got shape {tuple(x.shape)}.")
    _check_non_negative_int("padding", padding)
    n = x.shape[0]
    shifts = torch.randint(
        0, 2 * padding + 1, (2, n), generator=generator, device=x.device
    )
    if flip:
        flips = torch.rand(n, generator=generator, device=x.device) < 0.5
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=x.device)
    return crop_flip(x, shifts[0], shifts[1], flips, padding=padding)


# Padding as a fraction of the image side: 4 px at 32 (the CIFAR recipe), 2 px at 28 (MNIST).
_AUGMENTS: dict[str, tuple[float, bool]] = {
    "crop_flip": (1 / 8, True),
    "crop": (1 / 14, False),  # digits must not be mirrored: a flipped 2 or 7 is not a digit
}

AUGMENT_KINDS: tuple[str, ...] = tuple(_AUGMENTS)
"""The augmentation names a :class:`~rayprune.data.Dataset` may carry (or None for none)."""


def make_augment(kind: str | None, *, image_size: int | None = None) -> Augment | None:
    """The batch augmentation named by a :class:`~rayprune.data.Dataset`'s ``augment`` field.

    ``'crop_flip'`` pads by 4 px (for 32-px images) and flips; ``'crop'`` pads by 2 px (for 28-px
    images) and never flips; ``None`` means no augmentation. Given ``image_size``, the padding
    scales with it (``crop``: 1 px at 8 px), never below 1.

    Example:
        >>> augment = make_augment("crop", image_size=28)
        >>> augment(torch.rand(2, 1, 28, 28), torch.Generator()).shape
        torch.Size([2, 1, 28, 28])
        >>> make_augment(None) is None
        True
    """
    if kind is None:
        return None
    if kind not in _AUGMENTS:
        raise UserError(
            f"'augment' must be one of {sorted(_AUGMENTS)} or None; got {kind!r}."
        )
    share, flip = _AUGMENTS[kind]
    size = image_size if image_size is not None else round(1 / share)
    padding = max(1, round(size * share))
    return functools.partial(random_crop_flip, padding=padding, flip=flip)


def _epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 32-bit seed for ``(seed, epoch)``, so neighbouring pairs never collide."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"'{name}' must be a positive integer; got {value!r}.")


def _check_non_negative_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise UserError(f"'{name}' must be a non-negative integer; got {value!r}.")
