"""Params and MACs as exact functions of the kept channel counts, without building the model.

For every layer a group edits, the number of its input or output channels removed when the
group drops its ``n`` least important root channels is a lookup (``removed[n]``, a cumulative sum
along the group's ranking: one root channel can stand for several inputs of a Linear after a
flatten). A layer's cost then follows from its new shape:

* Conv: ``params = out' * in'/groups' * prod(kernel) (+ out' bias)``,
  ``MACs = params_without_bias * H_out * W_out``;
* Linear: ``params = out' * in' (+ out')``, ``MACs = out' * in' * tokens``;
* per-channel layers (BatchNorm, LayerNorm, ...): params scale with the channels kept.

Everything no group touches is a constant. The model checks itself against the measured
values of one built candidate (:attr:`AnalyticCosts.exact`); a model whose layers it does not
understand is flagged inexact and then only steers the search, never decides feasibility.
Measured costs always decide feasibility anyway.

Example::

    analytic = AnalyticCosts(space, CostContext(input_shape=(3, 32, 32)))
    analytic.params(space.keep_counts(0.5)), analytic.macs(space.keep_counts(0.5))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..pruning.space import PruningSpace
from .context import CostContext
from .metrics import count_macs, count_params

__all__ = ["AnalyticCosts"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class _Layer:
    module: nn.Module
    out_edits: list = field(default_factory=list)  # (group index, removed-by-n lookup)
    in_edits: list = field(default_factory=list)
    depthwise: bool = False
    spatial: int = 1  # output positions per sample (H_out*W_out for conv, tokens for linear)


class AnalyticCosts:
    """Exact params/MACs of any candidate of ``space`` from its keep counts (microseconds)."""

    NAMES = ("params", "macs")

    def __init__(self, space: PruningSpace, context: CostContext, *, verify: bool = True) -> None:
        self.space = space
        self.context = context
        base = space.base
        self._layers: dict[str, _Layer] = {}
        self.supported = True
        for g in space.groups:
            for m in g.members:
                module = base.get_submodule(m.target) if m.kind == "module" else None
                if module is None or module.__class__ in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
                    self.supported = False
                    continue
                per_root = np.bincount(m.root_idxs, minlength=g.channels)[g.ranking]
                removed = np.concatenate([[0], np.cumsum(per_root)]).astype(np.int64)
                layer = self._layers.setdefault(m.target, _Layer(module))
                layer.depthwise = layer.depthwise or m.pruner == "DEPTHWISE_CONV"
                (layer.out_edits if m.fn == "prune_out_channels" else layer.in_edits).append((g.index, removed))
        self._record_spatial(base)
        modeled_params = sum(self._layer_params(l, 0, 0) for l in self._layers.values())
        modeled_macs = sum(self._layer_macs(l, 0, 0) for l in self._layers.values())
        self._base_params = count_params(base)
        self._base_macs = count_macs(base, context)
        self._fixed_params = self._base_params - modeled_params
        self._fixed_macs = self._base_macs - modeled_macs
        self._compiled = [self._compile(layer) for layer in self._layers.values()]
        self._channels = [g.channels for g in space.groups]
        self._memo: dict[tuple[int, ...], tuple[float, float]] = {}
        self.exact = self.supported and (not verify or self._verify())

    def _compile(self, layer: _Layer) -> tuple:
        """A layer's formula as plain numbers, so a candidate's cost is a loop of integer arithmetic:
        ``(kind, out, in, groups, kernel, bias, spatial, depthwise, numel, out_edits, in_edits)``."""
        m = layer.module
        outs = [(g, lookup.tolist()) for g, lookup in layer.out_edits]
        ins = [(g, lookup.tolist()) for g, lookup in layer.in_edits]
        if isinstance(m, (nn.Linear, *_CONV)):
            linear = isinstance(m, nn.Linear)
            return ("weight", m.out_features if linear else m.out_channels, m.in_features if linear else m.in_channels,
                    1 if linear else m.groups, 1 if linear else math.prod(m.kernel_size), m.bias is not None,
                    layer.spatial, layer.depthwise, 0, outs, ins)
        own = [p for p in m.parameters(recurse=False)]
        if own and all(p.dim() == 1 and p.shape[0] == own[0].shape[0] for p in own):
            return ("channel", own[0].shape[0], 0, 1, 1, False, 1, False, sum(p.numel() for p in own), outs, ins)
        return ("const", 0, 0, 1, 1, False, 1, False, sum(p.numel() for p in own), outs, ins)

    @torch.no_grad()
    def _record_spatial(self, base: nn.Module) -> None:
        hooks = []
        for layer in self._layers.values():
            if isinstance(layer.module, (nn.Linear, *_CONV)):
                def hook(mod, inp, out, layer=layer):
                    channels = out.shape[-1] if isinstance(mod, nn.Linear) else out.shape[1]
                    layer.spatial = out.numel() // max(1, channels)
                hooks.append(layer.module.register_forward_hook(hook))
        try:
            base(self.context.example_inputs(batch_size=1, device=next(base.parameters()).device))
        finally:
            for h in hooks:
                h.remove()

    # -- per-layer formulas --------------------------------------------------------------------
    def _layer_shape(self, layer: _Layer, removed_out: int, removed_in: int) -> tuple[int, int, int]:
        m = layer.module
        if isinstance(m, nn.Linear):
            return m.out_features - removed_out, m.in_features - removed_in, 1
        if isinstance(m, _CONV):
            if layer.depthwise:
                out = m.out_channels - max(removed_out, removed_in)
                return out, out, out
            return m.out_channels - removed_out, m.in_channels - removed_in, m.groups
        return 0, 0, 1

    def _layer_params(self, layer: _Layer, removed_out: int, removed_in: int) -> float:
        m = layer.module
        if isinstance(m, (nn.Linear, *_CONV)):
            out, inp, groups = self._layer_shape(layer, removed_out, removed_in)
            kernel = 1 if isinstance(m, nn.Linear) else math.prod(m.kernel_size)
            return out * (inp // groups) * kernel + (out if m.bias is not None else 0)
        # per-channel layers: every own parameter is 1-D along the pruned channels
        own = [p for p in m.parameters(recurse=False)]
        if not own:
            return 0.0
        channels = own[0].shape[0]
        if any(p.dim() != 1 or p.shape[0] != channels for p in own):
            self.supported = False
            return float(sum(p.numel() for p in own))
        return float(sum(p.numel() for p in own)) * (channels - removed_out) / channels

    def _layer_macs(self, layer: _Layer, removed_out: int, removed_in: int) -> float:
        m = layer.module
        if not isinstance(m, (nn.Linear, *_CONV)):
            return 0.0
        out, inp, groups = self._layer_shape(layer, removed_out, removed_in)
        kernel = 1 if isinstance(m, nn.Linear) else math.prod(m.kernel_size)
        return float(out * (inp // groups) * kernel * layer.spatial)

    def _removed(self, edits: list, pruned: Sequence[int]) -> int:
        return int(sum(lookup[pruned[g]] for g, lookup in edits))

    # -- public --------------------------------------------------------------------------------
    def _costs(self, counts: Sequence[int]) -> tuple[float, float]:
        """(params, MACs) of a candidate, memoised: searches ask for the same counts many times
        (bisections converge on the same channel count, agents revisit candidates)."""
        key = tuple(int(k) for k in counts)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        pruned = [c - k for c, k in zip(self._channels, key)]
        params, macs = float(self._fixed_params), float(self._fixed_macs)
        for kind, out, inp, groups, kernel, bias, spatial, depthwise, numel, outs, ins in self._compiled:
            ro = sum(lookup[pruned[g]] for g, lookup in outs)
            if kind == "weight":
                ri = sum(lookup[pruned[g]] for g, lookup in ins)
                if depthwise:
                    out = inp = groups = out - max(ro, ri)
                else:
                    out, inp = out - ro, inp - ri
                weights = out * (inp // groups) * kernel
                params += weights + (out if bias else 0)
                macs += weights * spatial
            elif kind == "channel":
                params += numel * (out - ro) / out
            else:  # parameters the model cannot scale (the model is then not exact, see _layer_params)
                params += numel
        if len(self._memo) > 200_000:  # bounded: a long search must not grow without limit
            self._memo.clear()
        self._memo[key] = (params, macs)
        return params, macs

    def _vectorised(self) -> tuple:
        """:attr:`_compiled` with numpy lookups, for :meth:`costs_many` (built on first use, not pickled)."""
        vec = self.__dict__.get("_vectors")
        if vec is None:
            layers = [(kind, out, inp, groups, kernel, bias, spatial, depthwise, numel,
                       [(g, np.asarray(lookup, dtype=np.int64)) for g, lookup in outs],
                       [(g, np.asarray(lookup, dtype=np.int64)) for g, lookup in ins])
                      for kind, out, inp, groups, kernel, bias, spatial, depthwise, numel, outs, ins in self._compiled]
            vec = self._vectors = (np.asarray(self._channels, dtype=np.int64), layers)
        return vec

    def costs_many(self, counts) -> tuple[np.ndarray, np.ndarray]:
        """(params, MACs) of a batch of candidates, ``counts[b, g]`` channels kept in group ``g``:
        :meth:`_costs` row by row, vectorised over the rows (the same arithmetic in the same order,
        so every value equals the scalar one exactly: integer shapes, one float64 addition per layer).
        Not memoised. The search agents' batched projection calls it once per bisection step.
        """
        counts = np.asarray(counts)
        channels, layers = self._vectorised()
        if counts.ndim != 2 or counts.shape[1] != len(channels):
            raise ValueError(f"Expected keep counts of shape (batch, {len(channels)}); got {counts.shape}.")
        if counts.dtype.kind not in "iu":
            counts = counts.astype(np.int64)  # int() of each, as _costs does: toward zero
        pruned = np.ascontiguousarray((channels - counts.astype(np.int64, copy=False)).T)  # [G, B]
        rows = counts.shape[0]
        params = np.full(rows, float(self._fixed_params))
        macs = np.full(rows, float(self._fixed_macs))
        for kind, out, inp, groups, kernel, bias, spatial, depthwise, numel, outs, ins in layers:
            ro = 0
            for g, lookup in outs:
                ro = ro + lookup[pruned[g]]
            if kind == "weight":
                ri = 0
                for g, lookup in ins:
                    ri = ri + lookup[pruned[g]]
                if depthwise:
                    out = inp = groups = out - np.maximum(ro, ri)
                    if np.any(groups == 0):
                        raise ZeroDivisionError("integer division or modulo by zero")
                else:
                    out, inp = out - ro, inp - ri
                weights = out * (inp // groups) * kernel
                params += (weights + out) if bias else weights
                macs += weights * spatial
            elif kind == "channel":
                params += numel * (out - ro) / out
            else:
                params += numel
        return params, macs

    def params(self, counts: Sequence[int]) -> float:
        """Parameters of the candidate that keeps ``counts[g]`` channels in group ``g``."""
        return self._costs(counts)[0]

    def macs(self, counts: Sequence[int]) -> float:
        """MACs (one sample) of the candidate that keeps ``counts[g]`` channels in group ``g``."""
        return self._costs(counts)[1]

    def __getstate__(self) -> dict:
        # Shipped to env runners and actors: the formulas travel, not the model they came from.
        state = dict(self.__dict__)
        state.update(space=None, _layers={}, _memo={}, _vectors=None)
        return state

    def __call__(self, name: str, counts: Sequence[int]) -> float:
        if name == "params":
            return self.params(counts)
        if name == "macs":
            return self.macs(counts)
        raise ValueError(f"Cost {name!r} has no analytic model; analytic costs are {list(self.NAMES)}.")

    @property
    def base(self) -> dict[str, float]:
        """The unpruned model's params and MACs."""
        return {"params": self._base_params, "macs": self._base_macs}

    def _verify(self) -> bool:
        counts = self.space.keep_counts(0.5)
        model = self.space.build(counts and [c / g.channels for c, g in zip(counts, self.space.groups)])
        measured = (count_params(model), count_macs(model, self.context))
        predicted = (self.params(counts), self.macs(counts))
        return all(abs(a - b) <= 1e-6 * max(1.0, a) for a, b in zip(measured, predicted))
