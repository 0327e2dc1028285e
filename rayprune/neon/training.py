"""Training with early stopping: NEON's base networks and its per-step retraining of touched layers.

Adam on shuffled mini-batches of the train split (a fixed stratified subset of at most
``max_samples``), one validation-loss check per epoch (shuffled passes over the subset until at least
:data:`MIN_BATCHES_PER_EPOCH` mini-batches, so tiny sets such as iris get enough updates between checks); training stops after ``patience`` epochs
without a lower validation loss (at least one) and the weights of the best epoch are restored — the
starting weights count as epoch 0, so retraining never hands back a worse validation loss. Only the given
parameters are trained (NEON retrains the pruned layer and the next one); the rest stay frozen,
BatchNorm running statistics of frozen layers included. Every module's train/eval flag is restored
afterwards (:func:`~rayprune.engine.training_mode`), so a caller's frozen BatchNorm stays in eval mode.

Example:
    >>> import torch
    >>> from rayprune.neon.suite import load_suite_dataset
    >>> data = load_suite_dataset("moons", seed=0)
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> stats = train_early_stopping(model, data, RetrainSettings(max_epochs=3))
    >>> 1 <= stats["epochs"] <= 3
    True
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rayprune.data import Dataset, subsample_indices
from rayprune.engine import training_mode

__all__ = ["RetrainSettings", "train_early_stopping", "validation_loss"]


@dataclass(frozen=True)
class RetrainSettings:
    """Plain mirror of :class:`rayprune.config.NeonRetrainConfig` (picklable, hashable)."""

    max_epochs: int = 6
    patience: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    max_samples: int | None = 512

    @classmethod
    def from_config(cls, section) -> "RetrainSettings":
        return cls(**section.model_dump())

    def to_dict(self) -> dict:
        return asdict(self)


MIN_BATCHES_PER_EPOCH = 10
"""An epoch is one pass over the train subset or this many mini-batches, whichever is more."""


def _epoch_batches(n: int, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches of one epoch: shuffled passes (ragged last batch dropped, for BatchNorm)
    until at least :data:`MIN_BATCHES_PER_EPOCH` batches, so a 100-sample set still trains."""
    batches: list[torch.Tensor] = []
    while True:
        order = torch.randperm(n, generator=generator)
        batches += [order[i:i + batch] for i in range(0, n - batch + 1, batch)]
        if len(batches) >= MIN_BATCHES_PER_EPOCH:
            return batches


@torch.no_grad()
def validation_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Mean cross-entropy of ``model`` (in eval mode) on ``(x, y)``; each module's mode is restored."""
    total = 0.0
    with training_mode(model, False):
        for i in range(0, len(y), batch_size):
            total += float(F.cross_entropy(model(x[i:i + batch_size]), y[i:i + batch_size], reduction="sum"))
    return total / max(len(y), 1)


def train_early_stopping(
    model: nn.Module,
    data: Dataset,
    settings: RetrainSettings,
    *,
    parameters: Iterable[nn.Parameter] | None = None,
    seed: int = 0,
) -> dict:
    """Train ``parameters`` (default: all) of ``model`` in place; returns epochs, iterations,
    best validation loss and seconds. The caller's global RNG state is left untouched."""
    started = time.perf_counter()
    params = list(model.parameters() if parameters is None else parameters)
    if not params:
        raise ValueError("'parameters' must hold at least one tensor to train; got none.")
    x, y = data.x_train, data.y_train
    if settings.max_samples is not None and settings.max_samples < len(y):
        keep = torch.from_numpy(subsample_indices(y.numpy(), settings.max_samples, seed=seed))
        x, y = x[keep], y[keep]
    trainable = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in trainable and p.requires_grad]
    # BatchNorm of frozen layers stays in eval mode: its running statistics are part of what is frozen
    frozen_norms = [] if parameters is None else [
        m for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(id(p) in trainable for p in m.parameters(recurse=False))
    ]
    for p in frozen:
        p.requires_grad_(False)
    optimizer = torch.optim.Adam(params, lr=settings.lr)
    generator = torch.Generator().manual_seed(seed)
    batch = min(settings.batch_size, len(y))
    # the starting weights count as epoch 0: retraining never returns something worse on validation
    best_loss, best_state = validation_loss(model, data.x_val, data.y_val), copy.deepcopy(model.state_dict())
    improved, stale, epochs, iterations = False, 0, 0, 0
    try:
        with torch.random.fork_rng(devices=[]), training_mode(model, True):
            torch.manual_seed(seed)
            for m in frozen_norms:  # validation_loss restores these flags too, so once is enough
                m.eval()
            for epochs in range(1, settings.max_epochs + 1):
                for idx in _epoch_batches(len(y), batch, generator):
                    loss = F.cross_entropy(model(x[idx]), y[idx])
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    iterations += 1
                val = validation_loss(model, data.x_val, data.y_val)
                if val < best_loss - 1e-6:
                    best_loss, best_state, improved, stale = val, copy.deepcopy(model.state_dict()), True, 0
                else:
                    stale += 1
                    if stale >= max(settings.patience, 1):
                        break
        model.load_state_dict(best_state)
    finally:
        for p in frozen:
            p.requires_grad_(True)
    return {"epochs": epochs, "iterations": iterations, "best_val_loss": best_loss,
            "improved": improved, "seconds": time.perf_counter() - started}
