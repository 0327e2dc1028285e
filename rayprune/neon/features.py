"""NEON's observation maths: per-neuron statistics, pooling over neurons, topology vectors.

Everything here is a small pure function of arrays, so one policy can serve an MLP of any depth
and width: per-neuron statistics are *pooled* over the neurons of a layer (and over every neuron
of the network) into fixed-size vectors.

A neuron ``j`` of a hidden Linear layer with weight ``W`` (``out × in``) is described by two
samples: its incoming weights ``W[j, :]`` and its activations ``a_j(x)`` on a sample of training
inputs. Each sample ``v`` (length ``m``) gets :data:`NEURON_STATS`::

    mean  = (1/m) Σ v_i                     std  = sqrt((1/m) Σ (v_i − mean)²)
    skew  = (1/m) Σ (v_i − mean)³ / std³    kurt = (1/m) Σ (v_i − mean)⁴ / std⁴ − 3   (0 if std = 0)
    min, max
    l1    = (1/m) Σ |v_i|                    l2   = sqrt((1/m) Σ v_i²)

The norms are divided by ``m`` (L1) and ``√m`` (L2) — a departure from plain norms so that the
statistics of a 1,000-wide layer and a 16-wide one are on the same scale. A ``(neurons × 8)``
matrix of statistics is then pooled into ``8 × 4`` numbers: the mean, std, min and max over
neurons of every statistic (:func:`pool_over_neurons`).

Example:
    >>> import numpy as np
    >>> stats = neuron_statistics(np.array([[1.0, -1.0], [2.0, 2.0]]))
    >>> stats[:, NEURON_STATS.index("std")].tolist(), stats[:, NEURON_STATS.index("l1")].tolist()
    ([1.0, 0.0], [1.0, 2.0])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ACTIVATION_KINDS",
    "CONTEXT_FEATURES",
    "LAYER_TOPOLOGY_FEATURES",
    "LayerTopology",
    "NETWORK_TOPOLOGY_FEATURES",
    "NEURON_STATS",
    "OBSERVATION_SEGMENTS",
    "POOLS",
    "context_features",
    "layer_topology_features",
    "network_topology_features",
    "neuron_statistics",
    "observation",
    "observation_size",
    "pool_over_neurons",
    "squash",
]

NEURON_STATS: tuple[str, ...] = ("mean", "std", "skew", "kurtosis", "min", "max", "l1", "l2")
"""The eight per-neuron statistics, in column order."""

POOLS: tuple[str, ...] = ("mean", "std", "min", "max")
"""How a column of per-neuron statistics is pooled over neurons, in order."""

ACTIVATION_KINDS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "other")
"""Activation one-hot slots; ``other`` covers any other module and a Linear with no activation."""

LAYER_TOPOLOGY_FEATURES: tuple[str, ...] = (
    "batchnorm_before", "dropout_before", "log2_in", "log2_out",
    *(f"act_{a}" for a in ACTIVATION_KINDS), "width_left",
)
NETWORK_TOPOLOGY_FEATURES: tuple[str, ...] = (
    "depth", "mean_log2_width", "min_log2_width", "max_log2_width", "share_batchnorm",
    "share_dropout", *(f"share_{a}" for a in ACTIVATION_KINDS), "log10_params", "params_left",
    "log2_inputs", "log2_classes",
)
CONTEXT_FEATURES: tuple[str, ...] = (
    "position", "is_last_layer", "pass", "accuracy_change", "tolerance", "tolerance_left", "beyond_tolerance",
)

_POOLED = len(NEURON_STATS) * len(POOLS)
OBSERVATION_SEGMENTS: tuple[tuple[str, int], ...] = (
    ("layer_topology", len(LAYER_TOPOLOGY_FEATURES)),
    ("layer_weights", _POOLED),
    ("layer_activations", _POOLED),
    ("network_topology", len(NETWORK_TOPOLOGY_FEATURES)),
    ("network_weights", _POOLED),
    ("network_activations", _POOLED),
    ("context", len(CONTEXT_FEATURES)),
)
"""The observation's feature maps (name, length), in order; each gets its own encoder."""

#: log2 widths and log10 parameter counts are divided by these so they sit near [0, 1].
_LOG2_SCALE, _LOG10_PARAMS_SCALE, _MAX_DEPTH = 10.0, 7.0, 6.0
#: accuracy change (points) and tolerance are scaled by these.
_DELTA_SCALE, _TOLERANCE_SCALE = 10.0, math.log1p(50.0)


def observation_size() -> int:
    """Length of the flat observation vector (sum of :data:`OBSERVATION_SEGMENTS`)."""
    return sum(size for _, size in OBSERVATION_SEGMENTS)


def neuron_statistics(samples: np.ndarray) -> np.ndarray:
    """The :data:`NEURON_STATS` of every row of ``samples`` (``neurons × m``) → ``neurons × 8``.

    Rows are neurons: pass ``W`` for incoming weights and ``A.T`` for activations ``A``
    (``samples × neurons``). Population moments; skew and kurtosis (excess) are 0 for a constant row.

    Example:
        >>> s = neuron_statistics(np.array([[0.0, 0.0, 3.0]]))[0]
        >>> [round(float(v), 4) for v in s]   # mean std skew kurt min max l1 l2
        [1.0, 1.4142, 0.7071, -1.5, 0.0, 3.0, 1.0, 1.7321]
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"'samples' must be a 2-D array (neurons × m) with m >= 1; got shape {x.shape}.")
    mean = x.mean(axis=1)
    centred = x - mean[:, None]
    var = (centred**2).mean(axis=1)
    std = np.sqrt(var)
    safe = np.where(std > 1e-12, std, 1.0)
    skew = np.where(std > 1e-12, (centred**3).mean(axis=1) / safe**3, 0.0)
    kurt = np.where(std > 1e-12, (centred**4).mean(axis=1) / safe**4 - 3.0, 0.0)
    l1 = np.abs(x).mean(axis=1)
    l2 = np.sqrt((x**2).mean(axis=1))
    return np.stack([mean, std, skew, kurt, x.min(axis=1), x.max(axis=1), l1, l2], axis=1)


def pool_over_neurons(stats: np.ndarray) -> np.ndarray:
    """Pool a ``neurons × k`` statistics matrix into ``k × 4`` numbers (:data:`POOLS` per column).

    The result is ordered statistic-major: ``[mean of col 0, std of col 0, min, max, mean of col 1,
    ...]``. A single neuron has pooled std 0.

    Example:
        >>> pool_over_neurons(np.array([[1.0], [3.0]])).tolist()
        [2.0, 1.0, 1.0, 3.0]
    """
    s = np.asarray(stats, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] == 0:
        raise ValueError(f"'stats' must be a 2-D array with at least one neuron; got shape {s.shape}.")
    pooled = np.stack([s.mean(axis=0), s.std(axis=0), s.min(axis=0), s.max(axis=0)], axis=1)
    return pooled.reshape(-1)


def squash(x: np.ndarray) -> np.ndarray:
    """``sign(x) · log(1 + |x|)``: keeps sign and order, tames heavy tails (kurtosis, norms)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass(frozen=True)
class LayerTopology:
    """What NEON's topology map says about one hidden Linear layer.

    ``pre`` is the module right before the Linear (``"batchnorm"``, ``"dropout"`` or ``"none"``);
    ``activation`` one of :data:`ACTIVATION_KINDS`; ``original_out`` the layer's width in the
    unpruned network.
    """

    in_features: int
    out_features: int
    pre: str = "none"
    activation: str = "relu"
    original_out: int | None = None

    def __post_init__(self) -> None:
        if self.pre not in ("batchnorm", "dropout", "none"):
            raise ValueError(f"'pre' must be 'batchnorm', 'dropout' or 'none'; got {self.pre!r}.")
        if self.activation not in ACTIVATION_KINDS:
            raise ValueError(f"'activation' must be one of {list(ACTIVATION_KINDS)}; got {self.activation!r}.")


def _log2(n: float) -> float:
    return math.log2(max(float(n), 1.0)) / _LOG2_SCALE


def layer_topology_features(layer: LayerTopology) -> np.ndarray:
    """:data:`LAYER_TOPOLOGY_FEATURES` of one layer (flags, log2 sizes / 10, activation one-hot,
    share of the layer's original width left).

    Example:
        >>> layer_topology_features(LayerTopology(16, 32, "batchnorm", "tanh", 64)).tolist()
        [1.0, 0.0, 0.4, 0.5, 0.0, 1.0, 0.0, 0.0, 0.5]
    """
    act = [float(layer.activation == a) for a in ACTIVATION_KINDS]
    left = layer.out_features / (layer.original_out or layer.out_features)
    return np.array(
        [float(layer.pre == "batchnorm"), float(layer.pre == "dropout"), _log2(layer.in_features),
         _log2(layer.out_features), *act, left],
        dtype=np.float64,
    )


def network_topology_features(
    layers: Sequence[LayerTopology], *, params: int, base_params: int, num_classes: int
) -> np.ndarray:
    """:data:`NETWORK_TOPOLOGY_FEATURES`: depth / 6, log2 widths (mean, min, max) / 10, shares of
    layers with BatchNorm / Dropout before them and with each activation, log10(params) / 7, share
    of the original parameters left, log2 of the input features and of the classes / 10.

    Example:
        >>> f = network_topology_features([LayerTopology(4, 8), LayerTopology(8, 8, "dropout")],
        ...                               params=100, base_params=200, num_classes=2)
        >>> float(f[NETWORK_TOPOLOGY_FEATURES.index("share_dropout")]), f[-4:].round(3).tolist()
        (0.5, [0.286, 0.5, 0.2, 0.1])
    """
    if not layers:
        raise ValueError("'layers' must hold at least one hidden layer; got none.")
    widths = np.array([_log2(layer.out_features) for layer in layers])
    share = lambda pred: float(np.mean([pred(layer) for layer in layers]))  # noqa: E731
    acts = [share(lambda layer, a=a: layer.activation == a) for a in ACTIVATION_KINDS]
    return np.array(
        [len(layers) / _MAX_DEPTH, widths.mean(), widths.min(), widths.max(),
         share(lambda layer: layer.pre == "batchnorm"), share(lambda layer: layer.pre == "dropout"),
         *acts, math.log10(max(params, 1)) / _LOG10_PARAMS_SCALE, params / max(base_params, 1),
         _log2(layers[0].in_features), _log2(num_classes)],
        dtype=np.float64,
    )


def context_features(
    *, layer: int, num_layers: int, pass_index: int, passes: int, accuracy_change: float, tolerance: float
) -> np.ndarray:
    """:data:`CONTEXT_FEATURES`: where the episode is and how much accuracy it has spent.

    ``accuracy_change`` Δ (points vs the unpruned network) is divided by 10 and clipped to ±3;
    ``tolerance`` enters as ``log(1 + τ) / log(51)`` (τ = 50, the paper's largest, maps to 1); the
    tolerance left, ``(Δ + τ) / 10`` (clipped to ±3), and a flag for ``Δ < −τ`` spell out the
    reward's regime, so the policy need not learn to compare the two.

    Example:
        >>> context_features(layer=1, num_layers=4, pass_index=0, passes=2,
        ...                  accuracy_change=-2.0, tolerance=1.0).round(3).tolist()
        [0.25, 0.0, 0.0, -0.2, 0.176, -0.1, 1.0]
    """
    if num_layers < 1 or passes < 1:
        raise ValueError(f"'num_layers' and 'passes' must be >= 1; got {num_layers} and {passes}.")
    return np.array(
        [layer / num_layers, float(layer == num_layers - 1), pass_index / passes,
         float(np.clip(accuracy_change / _DELTA_SCALE, -3.0, 3.0)), math.log1p(max(tolerance, 0.0)) / _TOLERANCE_SCALE,
         float(np.clip((accuracy_change + tolerance) / _DELTA_SCALE, -3.0, 3.0)), float(accuracy_change < -tolerance)],
        dtype=np.float64,
    )


def observation(
    *,
    layer_topology: np.ndarray,
    layer_weight_stats: np.ndarray,
    layer_activation_stats: np.ndarray,
    network_topology: np.ndarray,
    network_weight_stats: np.ndarray,
    network_activation_stats: np.ndarray,
    context: np.ndarray,
) -> np.ndarray:
    """Assemble the flat float32 observation in :data:`OBSERVATION_SEGMENTS` order.

    The ``*_stats`` arguments are per-neuron statistic matrices (``neurons × 8``; the network ones
    stack every hidden layer's neurons); they are pooled here and squashed with :func:`squash`.
    """
    parts = [
        np.asarray(layer_topology, dtype=np.float64),
        squash(pool_over_neurons(layer_weight_stats)),
        squash(pool_over_neurons(layer_activation_stats)),
        np.asarray(network_topology, dtype=np.float64),
        squash(pool_over_neurons(network_weight_stats)),
        squash(pool_over_neurons(network_activation_stats)),
        np.asarray(context, dtype=np.float64),
    ]
    for (name, size), part in zip(OBSERVATION_SEGMENTS, parts):
        if part.shape != (size,):
            raise ValueError(f"Observation segment {name!r} must have {size} values; got shape {part.shape}.")
    out = np.concatenate(parts)
    return np.nan_to_num(out, nan=0.0, posinf=10.0, neginf=-10.0).astype(np.float32)
