"""Names of costs -> cost functions, and measuring a set of them on one model."""

from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from .._imports import import_object
from ..errors import UserError, UserTypeError
from .budget import BUILTIN_COST_NAMES
from .context import CostContext, CostFn
from .metrics import count_macs, count_params, measure_latency_ms, measure_peak_memory_mb

__all__ = ["BUILTIN_COSTS", "ANALYTIC_COSTS", "TIMED_COSTS", "CostFunctionError", "resolve_cost", "resolve_costs",
           "measure_costs", "measure_base_costs"]

BUILTIN_COSTS: dict[str, CostFn] = {
    "params": count_params,
    "macs": count_macs,
    "latency_ms": measure_latency_ms,
    "peak_memory_mb": measure_peak_memory_mb,
}

assert tuple(BUILTIN_COSTS) == BUILTIN_COST_NAMES  # the config validates against the names alone

#: Costs that are exact functions of the channel counts (see :mod:`rayprune.costs.analytic`).
ANALYTIC_COSTS = frozenset({"params", "macs"})

#: Costs that are timings: load on the machine (another evaluator training, a burst elsewhere on
#: a shared host) only ever adds time to them.
TIMED_COSTS = ("latency_ms",)

#: Rounds of each timed cost of the base model; the lowest is kept (:func:`measure_base_costs`).
BASE_TIMING_ROUNDS = 5

#: Turns a candidate and the base take when a candidate's timed costs are measured with the evaluators
#: otherwise idle (the shortlists' quiet check and the final models': ``measure_sequentially``); the lowest
#: of each is kept (:meth:`~rayprune.costs.paired.PairedTiming.measure`). Search rows take one (a second when the base's
#: timing is an outlier, :data:`~rayprune.costs.paired.OUTLIER_FACTOR`).
QUIET_TIMING_ROUNDS = 3


class CostFunctionError(RuntimeError):
    """A cost function raised while measuring a model; its exception is ``__cause__``, ``cost`` its name."""

    def __init__(self, message: str, cost: str | None = None) -> None:
        super().__init__(message)
        self.cost = cost


def resolve_cost(name: str, function: str | None = None) -> CostFn:
    """The cost function called ``name``: a built-in, or ``function`` = ``'package.module:fn'``."""
    if function is not None:
        fn = import_object(function, what=f"cost function of {name!r}")
        if not callable(fn):
            raise UserTypeError(f"The cost function {function!r} of {name!r} is not callable; got {type(fn).__name__}.")
        return fn
    try:
        return BUILTIN_COSTS[name]
    except KeyError:
        raise UserError(
            f"Unknown cost {name!r}; expected one of {sorted(BUILTIN_COSTS)} or a user cost defined "
            "with 'function: package.module:fn' under costs.custom in the config."
        ) from None


def resolve_costs(names, custom: Mapping[str, str] | None = None) -> dict[str, CostFn]:
    """Resolve several names at once; ``custom`` maps user cost names to ``package.module:fn``."""
    custom = dict(custom or {})
    return {n: resolve_cost(n, custom.get(n)) for n in dict.fromkeys([*names, *custom])}


def measure_costs(model: nn.Module, costs: Mapping[str, CostFn], context: CostContext) -> dict[str, float]:
    """Measure every cost on ``model``; a cost that does not return a finite number is an error.

    A cost function that raises is reported as a :class:`CostFunctionError` naming the cost, with
    the function's own exception as its cause.
    """
    values = {}
    for name, fn in costs.items():
        try:
            value = fn(model, context)
        except Exception as err:  # noqa: BLE001 - user code may fail any way; say which cost it was
            raise CostFunctionError(
                f"Cost {name!r} ({_qualified_name(fn)}) raised {type(err).__name__} while measuring "
                f"a {type(model).__name__}: {err}", cost=name,
            ) from err
        if isinstance(value, (str, bytes, bool)) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
            raise UserTypeError(f"Cost {name!r} must return a number; {_qualified_name(fn)} returned {value!r}.")
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.dtype != torch.bool:
            value = value.detach().item()  # a 0-d tensor (with grad: no torch warning); a bool tensor is refused
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise UserTypeError(
                f"Cost {name!r} must return a number; {_qualified_name(fn)} returned {value!r}."
            ) from None
        if not math.isfinite(value):
            raise UserError(f"Cost {name!r} ({_qualified_name(fn)}) returned {value} while measuring a "
                            f"{type(model).__name__}: expected a finite number")
        values[name] = value
    return values


def _qualified_name(fn: object) -> str:
    """``package.module:name`` of a function, as a config writes it; ``repr`` for other callables."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    return f"{module}:{name}" if module and name else repr(fn)


def measure_base_costs(model: nn.Module, costs: Mapping[str, CostFn], context: CostContext, *,
                       rounds: int = BASE_TIMING_ROUNDS) -> dict[str, float]:
    """:func:`measure_costs` of the unpruned model, its timed costs (:data:`TIMED_COSTS`) the lowest
    of ``rounds`` measurements.

    A relative latency budget (``latency_ms=rel:0.5``) is a fraction of this number for the whole
    run. On a shared 2-vCPU machine the first median of ``context.repeats`` runs in a process came
    out as much as 30 % above the ones after it (3.54 ms, then 2.7-2.9 ms); load only adds time, so
    the lowest round is the estimate. It does not help when a whole process runs slow (one process
    in four measured the base VGG11 at 4.7 ms in every round where others measured 3.0-3.3); that is
    what timing each candidate next to the base cures (:mod:`rayprune.costs.paired`).

    >>> from itertools import count
    >>> calls = count()
    >>> timings = iter([5.0, 3.0, 4.0, 3.5, 6.0])
    >>> measure_base_costs(None, {"latency_ms": lambda m, c: next(timings), "params": lambda m, c: next(calls)}, None)
    {'latency_ms': 3.0, 'params': 0.0}
    """
    values = measure_costs(model, costs, context)
    timed = {name: fn for name, fn in costs.items() if name in TIMED_COSTS}
    for _ in range(max(0, rounds - 1) if timed else 0):
        for name, value in measure_costs(model, timed, context).items():
            values[name] = min(values[name], value)
    return values
