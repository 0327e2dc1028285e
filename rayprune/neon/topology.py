"""Reading a dense network the way NEON sees it: its hidden Linear layers, what comes before each
(BatchNorm, Dropout or nothing), which activation follows, and the activations themselves.

Works on any model whose prunable groups (:class:`~rayprune.pruning.PruningSpace`) are all rooted
at ``nn.Linear`` layers — the zoo's ``mlp`` and a user's ``nn.Sequential`` of Linear/activation
modules alike. The neighbours of a Linear are found from the order in which leaf modules run in
one forward pass, so module names do not matter. An activation applied functionally in
``forward`` (``torch.relu(x)``) is invisible to hooks; such a layer counts as ``"other"`` and its
Linear output stands for its activations.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))
    >>> [(l.root, l.pre, l.activation) for l in dense_layers(net, torch.zeros(1, 4))]
    [('0', 'none', 'tanh'), ('3', 'dropout', 'relu')]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rayprune.engine import training_mode
from rayprune.errors import UserError
from rayprune.pruning import PruningSpace

__all__ = ["DenseLayer", "dense_layers", "hidden_activations", "require_dense"]

_PRE = {nn.BatchNorm1d: "batchnorm", nn.Dropout: "dropout"}
_ACT = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}


@dataclass(frozen=True)
class DenseLayer:
    """A hidden Linear layer: its name, what precedes it, its activation and where to read it."""

    root: str
    pre: str  # "batchnorm" | "dropout" | "none"
    activation: str  # "relu" | "tanh" | "sigmoid" | "other"
    #: the module whose output is the layer's activation (the Linear itself for "other") ...
    output: str
    #: ... and which of that module's calls in a forward pass it is (a shared nn.ReLU runs many times)
    output_call: int = 0


def require_dense(space: PruningSpace) -> None:
    """Raise :class:`~rayprune.errors.UserError` unless every prunable group of ``space`` is rooted at a Linear
    layer (the NEON agent's networks: MLPs)."""
    bad = [f"{g.root} ({g.root_type})" for g in space.groups if g.root_type != "Linear"]
    if bad:
        raise UserError(
            "The neon agent prunes dense networks only (every prunable group rooted at an nn.Linear: an MLP, not a "
            f"CNN's dense head alone); this model has prunable groups {bad}. Give it a budget and a search agent "
            "instead: random (the default), evolution, tpe, crl, uniform or global (`rayprune prune CONFIG --agent "
            "random --budget params=0.25`, or search.agent and budgets in the config)."
        )


@torch.no_grad()
def _leaf_order(model: nn.Module, example: torch.Tensor) -> list[str]:
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: order.append(name))
        for name, m in model.named_modules()
        if not list(m.children())
    ]
    try:
        with training_mode(model, False):
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def dense_layers(model: nn.Module, example: torch.Tensor, space: PruningSpace | None = None) -> list[DenseLayer]:
    """The hidden Linear layers of ``model`` (the roots of its prunable groups), input to output."""
    space = space if space is not None else PruningSpace(model, example)
    require_dense(space)
    modules = dict(model.named_modules())
    order = _leaf_order(model, example)
    layers = []
    for group in space.groups:
        at = order.index(group.root)
        before = modules[order[at - 1]] if at > 0 else None
        after_name = order[at + 1] if at + 1 < len(order) else None
        after = modules[after_name] if after_name is not None else None
        pre = next((kind for cls, kind in _PRE.items() if isinstance(before, cls)), "none")
        act = next((kind for cls, kind in _ACT.items() if isinstance(after, cls)), "other")
        output, position = (after_name, at + 1) if act != "other" else (group.root, at)
        layers.append(DenseLayer(group.root, pre, act, output, order[:position].count(output)))
    return layers


@torch.no_grad()
def hidden_activations(model: nn.Module, layers: Sequence[DenseLayer], x: torch.Tensor) -> list[torch.Tensor]:
    """Each layer's activations on ``x`` (eval mode): one ``(samples × neurons)`` tensor per layer."""
    modules = dict(model.named_modules())
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in {layer.output for layer in layers}}
    hooks = [
        modules[name].register_forward_hook(lambda mod, inp, out, name=name: captured[name].append(out.detach()))
        for name in captured
    ]
    try:
        with training_mode(model, False):
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return [captured[layer.output][layer.output_call].reshape(len(x), -1) for layer in layers]
