"""BatchNorm re-calibration: re-estimate running statistics once pruning changed the activations."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from rayprune.data import SplitSource, TensorSource
from rayprune.engine.evaluate import model_device, training_mode

__all__ = ["recalibrate_batchnorm"]


def recalibrate_batchnorm(
    model: nn.Module, x: Tensor | SplitSource, *, batch_size: int = 256, max_batches: int = 20
) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them from ``x``, in place.

    ``x`` is a tensor of inputs or a split (a :class:`~rayprune.data.SplitSource`, e.g.
    ``data.source("train")``; a streamed one reads only the samples used). With ``momentum=None``
    the running mean becomes the plain average of the batch means over at most ``max_batches``
    batches, ``running_mean = (1/B)·Σ_b mean(x_b)``. The samples are spread evenly over ``x`` (data
    sorted by class still gives every class), no randomness is drawn, and only the BatchNorm layers
    run in train mode: dropout stays off, so the statistics match what the layers see at
    evaluation. Momenta and training flags are restored afterwards. A model without BatchNorm (with
    running statistics) is left untouched.

    Example:
        >>> model = nn.Sequential(nn.BatchNorm1d(2))
        >>> recalibrate_batchnorm(model, torch.tensor([[1.0, 10.0], [3.0, 30.0]]))
        >>> model[0].running_mean.tolist()
        [2.0, 20.0]
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_batches", max_batches)
    # a bare tensor of inputs: labels are never read here, so a zero-width stand-in (no memory) will do
    source = x if isinstance(x, SplitSource) else TensorSource(x, x.new_empty((len(x), 0)))
    index = calibration_index(len(source), batch_size, max_batches)
    device = model_device(model) or source.device
    momenta = [norm.momentum for norm in norms]
    with training_mode(model, False), torch.no_grad():
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average instead of an exponential one
            norm.train()
        try:
            for xb, _ in source.batches(batch_size, device=device, index=index):
                model(xb)
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum


def calibration_index(n: int, batch_size: int, max_batches: int) -> Tensor:
    """The samples of ``n`` that re-estimate BatchNorm: at most ``batch_size·max_batches``, evenly
    spread, in order; a last batch of one sample is left out (train-mode BatchNorm cannot take it).

    >>> calibration_index(10, 4, 2).tolist(), calibration_index(9, 4, 5).tolist()
    ([0, 1, 3, 4, 5, 6, 8, 9], [0, 1, 2, 3, 4, 5, 6, 7])
    """
    if n < 2:
        raise ValueError(
            f"'x' must hold at least 2 samples to estimate BatchNorm statistics; got {n}."
        )
    budget = min(n, batch_size * max_batches)
    index = torch.linspace(0, n - 1, budget, dtype=torch.float64).round().long()
    if budget > batch_size and budget % batch_size == 1:
        index = index[:-1]
    return index


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"'{name}' must be a positive integer; got {value!r}.")
