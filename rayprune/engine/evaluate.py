"""Top-1 accuracy of a classifier, and the small model helpers the engine shares."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from rayprune.data import SplitSource, TensorSource

__all__ = ["evaluate", "model_device", "training_mode", "channels_last", "wants_channels_last"]


def evaluate(model: nn.Module, x: Tensor | SplitSource, y: Tensor | None = None, *, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` tensors, or on a split ``x`` (a
    :class:`~rayprune.data.SplitSource`: resident or streamed), in [0, 1].

    Runs in eval mode under ``torch.inference_mode`` on the model's device (tensors are moved there
    only if they live elsewhere; a streamed split's batches are read and moved one by one) and
    restores every module's training flag afterwards. Correct predictions are counted on the
    device, so there is one host sync per call.

    Example:
        >>> model = nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = model.weight.copy_(torch.eye(2)), model.bias.zero_()
        >>> evaluate(model, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
        0.5
    """
    if isinstance(x, SplitSource):
        if y is not None:
            raise ValueError("Pass 'y' only with an 'x' tensor; a split brings its own labels.")
        source = x
    else:
        if y is None:
            raise ValueError("'y' is required when 'x' is a tensor.")
        if len(x) != len(y):
            raise ValueError(f"'x' and 'y' must have the same length; got {len(x)} and {len(y)}.")
        source = TensorSource(x, y)
    if len(source) == 0:
        raise ValueError("Cannot evaluate on an empty set: 'x' has no samples.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"'batch_size' must be a positive integer; got {batch_size!r}.")
    device = model_device(model) or source.device
    correct = torch.zeros((), dtype=torch.int64, device=device)
    with training_mode(model, False), torch.inference_mode():
        for xb, yb in source.batches(batch_size, device=device):
            correct += (model(xb).argmax(dim=1) == yb).sum()
    return correct.item() / len(source)


def model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter (or buffer); None for a model with neither.

    Example:
        >>> model_device(nn.Linear(2, 2))
        device(type='cpu')
    """
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


@contextlib.contextmanager
def training_mode(model: nn.Module, mode: bool) -> Iterator[nn.Module]:
    """Put ``model`` in train (``True``) or eval mode for a block, then restore each module's flag.

    Restoring per module (not ``model.train(previous)``) keeps deliberately mixed states intact,
    e.g. a network in train mode with frozen BatchNorm layers in eval mode.

    Example:
        >>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
        >>> with training_mode(model, False):
        ...     model.training
        False
        >>> model.training
        True
    """
    flags = [(module, module.training) for module in model.modules()]
    model.train(mode)
    try:
        yield model
    finally:
        for module, flag in flags:
            module.training = flag


def wants_channels_last(model: nn.Module, setting: bool) -> bool:
    """Whether forward passes of ``model`` run in ``torch.channels_last`` (``evaluation.channels_last``):
    when asked for and the model has 2-D convolutions (the layout means nothing to other layers).

    Not on by default: on this project's CPU it makes a candidate's BatchNorm re-estimation and
    evaluation 1.2-1.4x faster for the small CNN, VGG11 and a depthwise-separable CNN and 1.3x
    *slower* for ResNet-20 (BENCHMARKS.md, "Memory format").

    Example:
        >>> wants_channels_last(nn.Sequential(nn.Conv2d(1, 2, 3)), True)
        True
        >>> wants_channels_last(nn.Linear(2, 2), True)
        False
    """
    return bool(setting) and any(isinstance(m, nn.Conv2d) for m in model.modules())


@contextlib.contextmanager
def channels_last(model: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """Hold ``model``'s 4-D weights in ``torch.channels_last`` for a block, then contiguous again.

    Inputs need no conversion: a convolution with channels_last weights gives channels_last
    activations, and the layers after it follow. Meant for forward passes only: in torch 2.13's CPU
    build, the backward of a strided 1x1 convolution with fewer than 8 input channels in
    channels_last corrupts memory (a crash), which pruned ResNet shortcuts reach; fine-tunes keep
    the contiguous layout. The model leaves the block contiguous, so what is exported is the
    usual layout.

    Example:
        >>> conv = nn.Conv2d(2, 4, 3)
        >>> with channels_last(conv):
        ...     conv.weight.is_contiguous(memory_format=torch.channels_last)
        True
        >>> conv.weight.is_contiguous()
        True
    """
    if not enabled:
        yield model
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield model
    finally:
        model.to(memory_format=torch.contiguous_format)
