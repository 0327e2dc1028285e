"""Channel importance criteria: a callable from a Torch-Pruning group to one score per channel."""

from __future__ import annotations

from typing import Callable, Union

import torch
import torch_pruning as tp

__all__ = ["Importance", "IMPORTANCES", "get_importance"]

#: An importance maps a ``tp.Group`` (full indices) to a 1-D tensor, one score per root channel.
Importance = Callable[[object], torch.Tensor]

#: Built-in criteria. ``l1``/``l2``: group magnitude (the norm of every coupled weight slice,
#: averaged over the group); ``bn_scale``: |gamma| of the group's BatchNorm layers (network
#: slimming); ``random``: for ablations.
IMPORTANCES: dict[str, Callable[[], Importance]] = {
    "l1": lambda: tp.importance.GroupMagnitudeImportance(p=1),
    "l2": lambda: tp.importance.GroupMagnitudeImportance(p=2),
    "bn_scale": lambda: tp.importance.BNScaleImportance(),
    "random": lambda: tp.importance.RandomImportance(),
}


def get_importance(criterion: Union[str, Importance]) -> Importance:
    """Resolve a criterion name (``l1``, ``l2``, ``bn_scale``, ``random``) or pass a callable through.

    >>> imp = get_importance("l1")
    """
    if callable(criterion):
        return criterion
    try:
        return IMPORTANCES[criterion]()
    except KeyError:
        raise ValueError(
            f"Unknown importance {criterion!r}; expected one of {sorted(IMPORTANCES)} or a callable."
        ) from None
