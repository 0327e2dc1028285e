"""Fine-tuning: a short, iteration-based cross-entropy training loop on device-resident or streamed data."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rayprune.data import Dataset, StreamedDataset, make_augment
from rayprune.data.batches import EpochBatches
from rayprune.engine.evaluate import model_device, training_mode
from rayprune.errors import UserError

__all__ = ["FineTuneConfig", "ProgressCallback", "checked_loss", "fine_tune"]

ProgressCallback = Callable[[int, int, float], None]
"""Called as ``(completed_steps, total_steps, running_loss)`` every few steps and at the end."""

CHECK_EVERY = 10
"""Steps between host syncs: the loss is checked for NaN/inf and progress reported this often."""

LOSS_WINDOW = 20
"""``final_loss`` is the mean of this many last losses."""

_OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": lambda params, c: torch.optim.SGD(
        params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
    ),
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
}

_SCHEDULES: dict[str, Callable[[int, int], float]] = {
    # lr_t = lr · ½(1 + cos(π t / T))
    "cosine": lambda step, total: 0.5 * (1.0 + math.cos(math.pi * step / total)),
    "constant": lambda step, total: 1.0,
}


@dataclass
class FineTuneConfig:
    """How to fine-tune: optimiser, learning-rate schedule and length (iterations *or* epochs).

    ``momentum`` applies to SGD only; Adam's ``weight_decay`` is the classic L2 term.

    Example:
        >>> FineTuneConfig(iterations=200, lr=0.01).schedule
        'cosine'
        >>> FineTuneConfig(epochs=1.5).total_iterations(batches_per_epoch=10)
        15
    """

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    iterations: int | None = None
    epochs: float | None = None
    batch_size: int = 128
    schedule: Literal["cosine", "constant"] = "cosine"
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that is out of range."""
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError(
                "Exactly one of 'iterations' and 'epochs' must be set; got "
                f"iterations={self.iterations!r}, epochs={self.epochs!r}."
            )
        _check_choice("optimizer", self.optimizer, _OPTIMIZERS)
        _check_choice("schedule", self.schedule, _SCHEDULES)
        _check_number("lr", self.lr, "a finite number > 0", lambda v: 0 < v < math.inf)
        _check_number("momentum", self.momentum, "in [0, 1)", lambda v: 0 <= v < 1)
        _check_number(
            "weight_decay", self.weight_decay, "finite and >= 0", lambda v: 0 <= v < math.inf
        )
        _check_number(
            "label_smoothing", self.label_smoothing, "in [0, 1)", lambda v: 0 <= v < 1
        )
        if self.iterations is not None:
            _check_int("iterations", self.iterations, minimum=0)
        if self.epochs is not None:
            _check_number("epochs", self.epochs, "finite and >= 0", lambda v: 0 <= v < math.inf)
        _check_int("batch_size", self.batch_size, minimum=1)

    def total_iterations(self, batches_per_epoch: int) -> int:
        """``iterations``, or ``ceil(epochs · batches_per_epoch)``."""
        if self.iterations is not None:
            return self.iterations
        return math.ceil(self.epochs * batches_per_epoch)


def fine_tune(
    model: nn.Module,
    data: Dataset | StreamedDataset,
    config: FineTuneConfig,
    *,
    seed: int = 0,
    progress: bool | str | ProgressCallback = False,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> dict[str, float | int]:
    """Train ``model`` in place on ``data``'s train split, with cross-entropy (``config.label_smoothing``)
    or ``loss_fn(outputs, targets) -> scalar tensor`` (see :mod:`rayprune.engine.objective`).

    Batches come from ``data.source("train")`` on the model's device — index slices of resident
    tensors (:class:`~rayprune.data.DeviceBatches`), or a DataLoader over a streamed dataset's
    torch Dataset (:class:`~rayprune.data.source.LoaderBatches`), the same epochs for the same
    seed — with drop_last (so BatchNorm never sees a tiny last batch) and the dataset's own
    augmentation on the device; the learning rate follows ``config.schedule`` per step. The loss is checked for NaN/inf every
    :data:`CHECK_EVERY` steps (one host sync each, not one per step); on failure
    ``FloatingPointError`` is raised and the model's weights are not usable. The run is
    deterministic for a given ``seed``: batch order and augmentation use a local generator, and
    in-model randomness (dropout) runs on the global RNG seeded with ``seed`` inside
    ``torch.random.fork_rng``, so the caller's RNG state is left as it was.

    Call ``data.to(device)`` once beforehand when fine-tuning many models: a resident train split
    that is not on the model's device is copied there on every call (a streamed one is read batch
    by batch whatever its device).

    Returns ``{'iterations': steps run, 'seconds': wall time, 'final_loss': mean of the last 20
    losses}`` (``final_loss`` is NaN when no step ran). ``progress=True`` shows a tqdm bar (a string: one with that label); a
    callable receives ``(step, total, loss)``.

    Example:
        >>> from rayprune.data import load_dataset
        >>> data = load_dataset("sklearn:iris", seed=0)
        >>> model = nn.Linear(4, 3)
        >>> fine_tune(model, data, FineTuneConfig(iterations=50, lr=0.1))["iterations"]
        50
    """
    config.validate()
    device = model_device(model) or data.device
    batches = _train_batches(data, config, device, seed)
    total = config.total_iterations(len(batches))
    if total == 0:
        return {"iterations": 0, "seconds": 0.0, "final_loss": math.nan}
    parameters = [p for p in model.parameters() if p.requires_grad]
    if not parameters:
        raise ValueError("The model has no trainable parameters (none with requires_grad=True).")
    optimizer = _OPTIMIZERS[config.optimizer](parameters, config)
    schedule = _SCHEDULES[config.schedule]
    losses = torch.empty(total, device=device)
    started = time.perf_counter()
    with (
        training_mode(model, True),
        _seeded_rng(seed, device),
        _reporter(progress, total) as report,
    ):
        for step, (xb, yb) in zip(range(total), batches.infinite()):
            _set_lr(optimizer, config.lr * schedule(step, total))
            if loss_fn is None:
                loss = F.cross_entropy(model(xb), yb, label_smoothing=config.label_smoothing)
            else:
                loss = checked_loss(loss_fn, model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()
            if (step + 1) % CHECK_EVERY == 0 or step + 1 == total:
                running = _check_losses(losses, step)
                if report is not None:
                    report(step + 1, total, running)
    return {"iterations": total, "seconds": time.perf_counter() - started, "final_loss": running}


def checked_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], outputs: Tensor, targets: Tensor) -> Tensor:
    """``loss_fn(outputs, targets)`` as a 0-d tensor; a :class:`UserError` naming ``engine.loss`` when it is not a
    one-element tensor that depends on the outputs (a user's loss is checked on the base before a search, and on
    every fine-tune step)."""
    loss = loss_fn(outputs, targets)
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
        raise UserError(f"engine.loss must return a scalar tensor that depends on the outputs (to minimise); "
                        f"got {got}{'' if not isinstance(loss, Tensor) or loss.requires_grad else ' without grad'}.")
    return loss.reshape(())


def _train_batches(
    data: Dataset | StreamedDataset, config: FineTuneConfig, device: torch.device, seed: int
) -> EpochBatches:
    train = data.source("train")
    if len(train) == 0:
        raise ValueError(f"Dataset {data.name!r} has an empty train split; nothing to train on.")
    image_size = data.input_shape[-1] if data.kind == "image" else None
    return train.batches(
        min(config.batch_size, len(train)),
        device=device,
        shuffle=True,
        augment=make_augment(data.augment, image_size=image_size),
        drop_last=True,
        seed=seed,
    )


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _check_losses(losses: Tensor, step: int) -> float:
    """Raise on the first non-finite loss up to ``step``; return the mean of the last window."""
    checked = losses[max(0, step + 1 - CHECK_EVERY) : step + 1]
    bad = (~torch.isfinite(checked)).nonzero()
    if len(bad):
        first = step + 1 - len(checked) + int(bad[0])
        raise FloatingPointError(
            f"The fine-tuning loss became {float(checked[int(bad[0])])} at step {first} "
            f"(of steps 0..{len(losses) - 1}); lower 'lr' or check the model and data."
        )
    return float(losses[max(0, step + 1 - LOSS_WINDOW) : step + 1].mean())


@contextlib.contextmanager
def _seeded_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the RNGs that in-model randomness draws from (CPU, the model's GPU); restore after."""
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] if (
        device.type == "cuda"
    ) else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


@contextlib.contextmanager
def _reporter(progress: bool | str | ProgressCallback, total: int) -> Iterator[ProgressCallback | None]:
    if progress is False or progress is None:
        yield None
    elif (progress is True or isinstance(progress, str)) and not _stderr_is_terminal():
        yield _progress_lines(progress if isinstance(progress, str) else "fine-tune", total)
    elif progress is True or isinstance(progress, str):  # a string: the bar's label
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=progress if isinstance(progress, str) else "fine-tune", unit="it")

        def update(step: int, total: int, loss: float) -> None:
            bar.update(step - bar.n)
            bar.set_postfix(loss=f"{loss:.4f}")

        try:
            yield update
        finally:
            bar.close()
    elif callable(progress):
        yield progress
    else:
        raise TypeError(
            "'progress' must be a bool or a callable (step, total, loss); "
            f"got {type(progress).__name__}."
        )


def _stderr_is_terminal() -> bool:
    """A terminal, or a Jupyter kernel (whose streams are no tty, but tqdm.auto draws a widget there)."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def _progress_lines(label: str, total: int, *, parts: int = 10,
                    write: Callable[[str], None] | None = None) -> ProgressCallback:
    """A progress callback for a log file or a pipe, where a tqdm bar is one line redrawn with carriage returns a
    few times a second (a base model's training filled a CI log with thousands of them): one line per tenth of the
    steps, and one at the end.

    >>> lines = []
    >>> update = _progress_lines("train base model", 100, write=lines.append)
    >>> for step in range(1, 101):
    ...     update(step, 100, 1.0 / step)
    >>> len(lines), lines[0], lines[-1]
    (10, 'train base model: 10/100 it (10 %), loss 0.1000', 'train base model: 100/100 it (100 %), loss 0.0100')
    """
    out = write or (lambda line: print(line, file=sys.stderr, flush=True))
    shown = [0]

    def update(step: int, total_now: int, loss: float) -> None:
        whole = max(int(total_now or total), 1)
        part = min(parts, step * parts // whole)
        if part > shown[0]:
            shown[0] = part
            out(f"{label}: {step}/{whole} it ({100 * step // whole} %), loss {loss:.4f}")

    return update


def _check_choice(name: str, value: str, choices: dict) -> None:
    if value not in choices:
        raise ValueError(f"'{name}' must be one of {sorted(choices)}; got {value!r}.")


def _check_number(name: str, value: float, allowed: str, ok: Callable[[float], bool]) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
        raise ValueError(f"'{name}' must be {allowed}; got {value!r}.")


def _check_int(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"'{name}' must be an integer >= {minimum}; got {value!r}.")
