"""A pruning plan: which channels to remove from which layer, replayable on a fresh model.

A plan is the flat list of layer edits that Torch-Pruning's dependency graph derives from a set of
pruned root channels, with every index expressed in the *unpruned* model's coordinates. Because
each ``(target, fn, pruning_dim)`` appears once with the union of its indices, the edits commute:
applying them in any order to a copy of the original architecture gives the same smaller model.
No tracing happens here, which is what makes building a candidate cheap.

Example: Conv(3, 8) -> BN(8) -> Conv(8, 4), pruning channels [1, 5] of the first conv gives::

    conv1  prune_out_channels [1, 5]
    bn1    prune_out_channels [1, 5]
    conv2  prune_in_channels  [1, 5]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Iterable

import torch_pruning as tp
from torch import nn

__all__ = ["PlanEntry", "PruningPlan", "apply_plan", "pruner_name", "resolve_pruner"]

_PRUNER_BOX = tp.pruner.function.PrunerBox


def pruner_name(pruner: object) -> str:
    """The ``tp.ops.OPTYPE`` name under which Torch-Pruning registers ``pruner`` (e.g. ``CONV``)."""
    for optype, registered in _PRUNER_BOX.items():
        if registered is pruner:
            return optype.name
    raise ValueError(f"{type(pruner).__name__} is not one of Torch-Pruning's registered pruners.")


def resolve_pruner(name: str) -> object:
    """Inverse of :func:`pruner_name`."""
    try:
        return _PRUNER_BOX[tp.ops.OPTYPE[name]]
    except KeyError:
        raise ValueError(
            f"Unknown pruner {name!r} in pruning plan; expected one of "
            f"{sorted(k.name for k in _PRUNER_BOX)}."
        ) from None


@dataclass(frozen=True)
class PlanEntry:
    """Remove ``idxs`` (original coordinates) along ``pruning_dim`` of one module or parameter."""

    target: str  # dotted name in model.named_modules() or model.named_parameters()
    kind: str  # "module" or "parameter"
    pruner: str  # tp.ops.OPTYPE name, e.g. "CONV", "DEPTHWISE_CONV", "BN", "LINEAR"
    fn: str  # "prune_out_channels" or "prune_in_channels"
    pruning_dim: int
    idxs: tuple[int, ...]


class PruningPlan(tuple):
    """An immutable sequence of :class:`PlanEntry`, serialisable to JSON."""

    def __new__(cls, entries: Iterable[PlanEntry] = ()):
        return super().__new__(cls, tuple(entries))

    def to_json(self) -> list[dict]:
        return [{**asdict(e), "idxs": list(e.idxs)} for e in self]

    @classmethod
    def from_json(cls, rows: list[dict]) -> "PruningPlan":
        try:
            return cls(PlanEntry(**{**row, "idxs": tuple(int(i) for i in row["idxs"])}) for row in rows)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"Malformed pruning plan entry: {exc}") from None

    def dumps(self) -> str:
        return json.dumps(self.to_json())


def _get_submodule_and_attr(model: nn.Module, dotted: str) -> tuple[nn.Module, str]:
    parent_name, _, attr = dotted.rpartition(".")
    return (model.get_submodule(parent_name) if parent_name else model), attr


def apply_plan(model: nn.Module, plan: PruningPlan) -> nn.Module:
    """Apply ``plan`` to ``model`` in place (the model must be the unpruned architecture).

    Returns the same model, now physically smaller.
    """
    for entry in plan:
        if not entry.idxs:
            continue
        pruner = resolve_pruner(entry.pruner)
        pruner.pruning_dim = entry.pruning_dim  # what tp.Dependency.__call__ does before a handler
        fn = getattr(pruner, entry.fn)
        idxs = list(entry.idxs)
        try:
            if entry.kind == "parameter":
                parent, attr = _get_submodule_and_attr(model, entry.target)
                setattr(parent, attr, fn(getattr(parent, attr), idxs))
            else:
                fn(model.get_submodule(entry.target), idxs)
        except AttributeError as exc:
            raise ValueError(
                f"Pruning plan names {entry.kind} {entry.target!r}, which this model does not have "
                f"({exc}). Was the plan made for another architecture?"
            ) from None
    return model


