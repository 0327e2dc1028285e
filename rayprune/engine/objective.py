"""What "better" means for a model: the metric every candidate is scored by and the fine-tuning loss.

The defaults follow the data's task: top-1 accuracy and cross-entropy for classification, negative
mean squared error and MSE for regression. Your own replace either (``search.metric`` and
``engine.loss`` in a config, ``package.module:function``):

* a metric is ``f(model, split, context) -> float``, higher is better. ``split`` is a
  :class:`DataSplit`: ``name`` 'val' or 'test', ``batches()`` of ``(x, y)`` on the model's device,
  and, when the data is device-resident, the whole split as tensors ``x`` and ``y`` (a streamed
  split has none: its ``x`` raises and ``batches()`` reads it through the DataLoader). ``context``
  is the run's :class:`~rayprune.costs.CostContext` (its ``options`` are the config's
  ``costs.options``). The model is in eval mode; the metric must not train it. It is used for the
  search's cheap score, the re-rank, the final selection and the Pareto front, in place of top-1
  accuracy (the columns keep the name ``accuracy``).
* a loss is ``f(outputs, targets) -> scalar tensor`` (like ``torch.nn.functional.mse_loss``),
  minimised by every fine-tune (the base model's, the re-rank's, the final one).

A metric that raises or returns something other than a finite number makes that candidate an error
row (the search goes on); on the base model it stops the run before the search with the reason.

>>> import torch
>>> obj = resolve_objective("regression")
>>> obj.metric_name, obj.loss(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0])).item()
('neg_mse', 2.0)
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data import SplitSource, TensorSource
from ..errors import UserError
from .evaluate import evaluate, training_mode

__all__ = ["DataSplit", "Objective", "resolve_objective", "accuracy_metric", "neg_mse_metric", "MetricError",
           "TASKS"]

TASKS = ("classification", "regression")


class DataSplit:
    """One split handed to a metric: its name ('val', 'test') and its samples.

    - ``split.batches(batch_size=512)``: ``(x, y)`` mini-batches in order, on :attr:`device` (the
      model's), ``x`` float32 — on every split, resident or streamed;
    - ``split.x``, ``split.y``: the whole split as tensors, when the data is device-resident. A
      streamed split (``split.streamed``) has no such tensors and raises
      :class:`~rayprune.data.StreamedDataError` (a ``UserError`` and an ``AttributeError``);
    - ``split.dataset``: a streamed split's torch Dataset (a ``Subset`` under
      ``search.eval_samples``), None when resident; ``len(split)``: its samples.

    ``DataSplit(name, x, y)`` wraps tensors; ``DataSplit(name, source=..., device=...)`` a
    :class:`~rayprune.data.SplitSource`.

    Example:
        >>> split = DataSplit("val", torch.zeros(5, 2), torch.arange(5))
        >>> len(split), [len(yb) for _, yb in split.batches(batch_size=2)], split.streamed
        (5, [2, 2, 1], False)
    """

    __slots__ = ("device", "name", "source")

    def __init__(self, name: str, x: Optional[Tensor] = None, y: Optional[Tensor] = None, *,
                 source: Optional[SplitSource] = None, device: Optional[torch.device | str] = None) -> None:
        if (source is None) == (x is None or y is None):
            raise TypeError("DataSplit takes tensors x and y, or a source=; not both, not neither.")
        self.name = name
        self.source = source if source is not None else TensorSource(x, y)
        self.device = torch.device(device) if device is not None else self.source.device

    @property
    def streamed(self) -> bool:
        return self.source.streamed

    @property
    def x(self) -> Tensor:
        return self.source.tensors(self.name)[0]

    @property
    def y(self) -> Tensor:
        return self.source.tensors(self.name)[1]

    @property
    def dataset(self) -> Optional[torch.utils.data.Dataset]:
        return getattr(self.source, "dataset", None)

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, batch_size: int = 512) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x, y)`` mini-batches of the whole split, in order, on :attr:`device`."""
        return iter(self.source.batches(batch_size, device=self.device))

    def __repr__(self) -> str:
        kind = "streamed" if self.streamed else "resident"
        return f"DataSplit({self.name!r}, {len(self)} samples, {kind}, device={self.device})"


class MetricError(UserError):
    """A user metric raised or returned something other than a finite number."""


Metric = Callable[[nn.Module, DataSplit, Any], float]
Loss = Callable[[Tensor, Tensor], Tensor]


def accuracy_metric(model: nn.Module, split: DataSplit, context: Any = None) -> float:
    """Top-1 accuracy in [0, 1] (the classification default)."""
    return evaluate(model, split.source)


def neg_mse_metric(model: nn.Module, split: DataSplit, context: Any = None, *, batch_size: int = 512) -> float:
    """Minus the mean squared error over every output (the regression default; higher is better).

    >>> m = nn.Linear(1, 1)
    >>> with torch.no_grad():
    ...     _ = m.weight.fill_(1.0), m.bias.zero_()
    >>> neg_mse_metric(m, DataSplit("val", torch.tensor([[1.0], [2.0]]), torch.tensor([1.0, 4.0])))
    -2.0
    """
    total, count = 0.0, 0
    with training_mode(model, False), torch.inference_mode():
        for xb, yb in split.batches(batch_size):
            out = model(xb)
            target = yb.to(out.dtype).reshape(out.shape)
            total += float(((out - target) ** 2).sum())
            count += target.numel()
    return -total / max(count, 1)


def mse_loss(outputs: Tensor, targets: Tensor) -> Tensor:
    """MSE with the targets shaped like the outputs (a (N,) target for a (N, 1) output)."""
    return F.mse_loss(outputs, targets.to(outputs.dtype).reshape(outputs.shape))


@dataclass(frozen=True)
class Objective:
    """The metric (higher is better) and the fine-tuning loss of a run."""

    metric_name: str
    metric: Metric
    loss: Optional[Loss]  # None: cross-entropy with the fine-tune's label smoothing
    custom_metric: bool = False

    def score(self, model: nn.Module, split: DataSplit, context: Any = None) -> float:
        """The metric of ``model`` on ``split``, checked: a finite float, else :class:`MetricError`."""
        try:
            value = self.metric(model, split, context)
        except Exception as exc:
            if not self.custom_metric:
                raise
            raise MetricError(f"search.metric {self.metric_name!r} raised on the {split.name} split: "
                              f"{type(exc).__name__}: {exc}") from exc
        return checked_metric_value(value, self.metric_name, split.name)


def checked_metric_value(value: Any, name: str, split: str = "val") -> float:
    """``value`` as a float if it is a finite real number, else :class:`MetricError` naming the metric.

    >>> checked_metric_value(torch.tensor(0.5), "m")
    0.5
    >>> checked_metric_value(float("nan"), "m")
    Traceback (most recent call last):
    ...
    rayprune.engine.objective.MetricError: search.metric 'm' returned nan on the val split; expected a finite number (higher is better).
    """
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise MetricError(f"search.metric {name!r} returned a {type(value).__name__} on the {split} split; "
                          "expected a finite number (higher is better).")
    if not math.isfinite(float(value)):
        raise MetricError(f"search.metric {name!r} returned {float(value)} on the {split} split; expected a finite "
                          "number (higher is better).")
    return float(value)


def metric_label(task: str = "classification", metric: Optional[str] = None, mode: str = "max") -> str:
    """The name a run's metric is shown and recorded by: ``accuracy``, ``neg_mse``, the user's ``search.metric``,
    or, for one minimised (``search.metric_mode: min``), the same with a minus before its function name (rayprune
    maximises, and reports, minus the metric).

    >>> metric_label(), metric_label("regression"), metric_label("regression", "proj.objective:mae", "min")
    ('accuracy', 'neg_mse', 'proj.objective:-mae')
    """
    if metric is None:
        return "neg_mse" if task == "regression" else "accuracy"
    if mode == "min":
        module, _, fn = metric.rpartition(":")
        return f"{module}:-{fn}"
    return metric


def _negated(metric: Metric) -> Metric:
    """Minus ``metric`` (a minimised metric, maximised); a value that is not a number is passed on for the check
    to name."""
    def minus(model: nn.Module, split: DataSplit, context: Any = None) -> Any:
        value = metric(model, split, context)
        if isinstance(value, Tensor) and value.numel() == 1:
            value = value.item()
        return -value if isinstance(value, numbers.Real) and not isinstance(value, bool) else value

    return minus


def resolve_objective(task: str = "classification", metric: Optional[str] = None,
                      loss: Optional[str] = None, mode: str = "max") -> Objective:
    """The objective for ``task`` with the user's ``metric`` / ``loss`` (``package.module:function``)
    in place of the defaults; ``mode`` ``min``: the user's metric is minimised (its negative maximised, and
    recorded under :func:`metric_label`'s name).

    >>> import torch
    >>> obj = resolve_objective("regression", "rayprune.engine.objective:neg_mse_metric", mode="min")
    >>> obj.metric_name, obj.score(nn.Identity(), DataSplit("val", torch.tensor([[1.0]]), torch.tensor([3.0])))
    ('rayprune.engine.objective:-neg_mse_metric', 4.0)
    """
    from .._imports import import_object

    if task not in TASKS:
        raise UserError(f"data.task must be one of {', '.join(TASKS)}; got {task!r}.")
    if metric is not None:
        fn = import_object(metric, what="search.metric")
        if not callable(fn):
            raise UserError(f"search.metric {metric!r} is a {type(fn).__name__}, not a function.")
        name, metric_fn, custom = metric_label(task, metric, mode), (_negated(fn) if mode == "min" else fn), True
    elif task == "regression":
        name, metric_fn, custom = "neg_mse", neg_mse_metric, False
    else:
        name, metric_fn, custom = "accuracy", accuracy_metric, False
    if loss is not None:
        loss_fn = import_object(loss, what="engine.loss")
        if not callable(loss_fn):
            raise UserError(f"engine.loss {loss!r} is a {type(loss_fn).__name__}, not a function.")
    else:
        loss_fn = mse_loss if task == "regression" else None
    return Objective(metric_name=name, metric=metric_fn, loss=loss_fn, custom_metric=custom)
