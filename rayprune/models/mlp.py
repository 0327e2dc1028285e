"""Dense networks in the style of NEON's base networks (Hirsch & Katz, 2022).

Every Linear layer may be preceded by Dropout, BatchNorm or nothing, and every hidden Linear is
followed by ReLU, Tanh or Sigmoid. The input is flattened first, so the same model takes tabular
rows ``(N, F)`` and images ``(N, C, H, W)`` with ``F = C * H * W``.

Layout (module names in brackets), for ``hidden_sizes=(h1, h2)``::

    flatten -> [features.0: pre?, linear, act] -> [features.1: pre?, linear, act]
            -> [pre_classifier] -> [classifier]

``pre_classifier`` is an ``nn.Identity`` when the output layer has no pre-layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP", "PRE_LAYERS", "mlp"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

# Each maker receives (num_features, dropout probability).
PRE_LAYERS: dict[str, Callable[[int, float], nn.Module]] = {
    "dropout": lambda features, p: nn.Dropout(p),
    "batchnorm": lambda features, p: nn.BatchNorm1d(features),
    "none": lambda features, p: nn.Identity(),
}


def _per_layer(
    name: str, value: str | Sequence[str], count: int, allowed: Mapping[str, object]
) -> list[str]:
    """Broadcast a single choice to ``count`` layers, or check a per-layer list."""
    values = [value] * count if isinstance(value, str) else list(value)
    if len(values) != count:
        raise ValueError(
            f"'{name}' must be one string or a sequence of {count} (one per layer); "
            f"got {len(values)}: {values!r}."
        )
    normalised = [str(v).lower() for v in values]
    for original, choice in zip(values, normalised):
        if choice not in allowed:
            raise ValueError(
                f"'{name}' entries must be one of {sorted(allowed)}; got {original!r}."
            )
    return normalised


class MLP(nn.Module):
    """Flatten -> (pre-layer, Linear, activation) per hidden size -> pre-layer -> ``classifier``.

    ``pre_layer`` has one entry per Linear, output layer included (``len(hidden_sizes) + 1``);
    ``activations`` one per hidden layer. A single string applies to every layer.

    Example:
        >>> model = MLP(in_features=8, num_classes=3, hidden_sizes=(32, 16),
        ...             pre_layer=("none", "batchnorm", "dropout"), activations="tanh")
        >>> model(torch.zeros(4, 8)).shape
        torch.Size([4, 3])
    """

    classifier_layer_name = "classifier"

    def __init__(
        self,
        *,
        in_features: int,
        num_classes: int,
        hidden_sizes: Sequence[int] = (256, 128),
        pre_layer: str | Sequence[str] = "none",
        activations: str | Sequence[str] = "relu",
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
            raise ValueError(f"'in_features' must be a positive integer; got {in_features!r}.")
        hidden_sizes = list(hidden_sizes)
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_sizes):
            raise ValueError(f"'hidden_sizes' must be positive integers; got {hidden_sizes!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"'dropout' must be in [0, 1); got {dropout!r}.")
        pres = _per_layer("pre_layer", pre_layer, len(hidden_sizes) + 1, PRE_LAYERS)
        acts = _per_layer("activations", activations, len(hidden_sizes), ACTIVATIONS)

        self.flatten = nn.Flatten()
        blocks = []
        width = in_features
        for size, pre, act in zip(hidden_sizes, pres, acts):
            parts: OrderedDict[str, nn.Module] = OrderedDict()
            if pre != "none":
                parts[pre] = PRE_LAYERS[pre](width, dropout)
            parts["linear"] = nn.Linear(width, size)
            parts["act"] = ACTIVATIONS[act]()
            blocks.append(nn.Sequential(parts))
            width = size
        self.features = nn.Sequential(*blocks)
        self.pre_classifier = PRE_LAYERS[pres[-1]](width, dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pre_classifier(self.features(self.flatten(x))))


def mlp(
    *,
    in_features: int,
    num_classes: int = 10,
    hidden_sizes: Sequence[int] = (256, 128),
    pre_layer: str | Sequence[str] = "none",
    activations: str | Sequence[str] = "relu",
    dropout: float = 0.2,
) -> MLP:
    """NEON-style MLP; see :class:`MLP`."""
    return MLP(
        in_features=in_features,
        num_classes=num_classes,
        hidden_sizes=hidden_sizes,
        pre_layer=pre_layer,
        activations=activations,
        dropout=dropout,
    )
