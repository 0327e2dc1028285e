"""Params and MACs as exact functions of the kept channel counts, without building the model.

For every layer a group edits, the number of its input or output channels removed when the
group drops its ``n`` least important root channels is a lookup (``removed[n]``, a cumulative sum
along the group's ranking: one root channel can stand for several inputs of a Linear after a
flatten). A layer's cost then follows from its new shape:

* Conv: ``params = out' * in'/groups' * prod(kernel) (+ out' bias)``,
  ``MACs = params_without_bias * H_out * W_out``;
* Linear: ``params = out' * in' (+ out')``, ``MACs = out' * in' * tokens``;
* per-channel layers (BatchNorm, LayerNorm, ...) and a parameter used outside a layer (a learned position
  embedding, pruned along one dimension): params scale with the channels kept;
* ``nn.MultiheadAttention`` (q, k, v packed, as by default): a q projection ``E' x E'`` over the ``n`` query
  tokens, k and v projections ``2E' x E'`` over the ``s`` key tokens, an output projection ``E' x E'``, and
  the two attention products, ``2 n s E'`` MACs (as :func:`~rayprune.costs.metrics.count_macs` counts them).

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
from typing import Optional, Sequence

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
    module: Optional[nn.Module]  # None: a parameter used outside a layer (``numel`` elements, ``channels`` along
    out_edits: list = field(default_factory=list)  # (group index, removed-by-n lookup)  the pruned dimension)
    in_edits: list = field(default_factory=list)
    depthwise: bool = False
    spatial: int = 1  # output positions per sample (H_out*W_out for conv, tokens for linear and attention)
    keys: int = 1  # attention: key tokens per sample
    numel: int = 0
    channels: int = 0


class AnalyticCosts:
    """Exact params/MACs of any candidate of ``space`` from its keep counts (microseconds)."""

    NAMES = ("params", "macs")

    def __init__(self, space: PruningSpace, context: CostContext, *, verify: bool = True) -> None:
        self.space = space
        self.context = context
        base = space.base
        self._layers: dict[str, _Layer] = {}
        self.supported = True
        params = dict(base.named_parameters())
        for g in space.groups:
            for m in g.members:
                module = base.get_submodule(m.target) if m.kind == "module" else None
                if m.kind == "parameter" and m.target in params:  # e.g. a position embedding added to tokens
                    p = params[m.target]
                    layer = self._layers.setdefault(m.target, _Layer(None, numel=p.numel(),
                                                                     channels=p.shape[m.pruning_dim]))
                elif module is None or module.__class__ in (nn.ConvTranspose1d, nn.ConvTranspose2d,
                                                            nn.ConvTranspose3d):
                    self.supported = False
                    continue
                else:
                    layer = self._layers.setdefault(m.target, _Layer(module))
                per_root = np.bincount(m.root_idxs, minlength=g.channels)[g.ranking]
                removed = np.concatenate([[0], np.cumsum(per_root)]).astype(np.int64)
                layer.depthwise = layer.depthwise or m.pruner == "DEPTHWISE_CONV"
                (layer.out_edits if m.fn == "prune_out_channels" else layer.in_edits).append((g.index, removed))
        self._record_spatial(base)
        self._compiled = [entry for layer in self._layers.values() for entry in self._compile(layer)]
        self._channels = [g.channels for g in space.groups]
        self._fixed_params = self._fixed_macs = 0.0
        self._memo: dict[tuple[int, ...], tuple[float, float]] = {}
        modeled_params, modeled_macs = self._costs(self._channels)  # the modeled layers alone, unpruned
        self._memo.clear()
        self._base_params = count_params(base)
        self._base_macs = count_macs(base, context)
        self._fixed_params = self._base_params - modeled_params
        self._fixed_macs = self._base_macs - modeled_macs
        self.exact = self.supported and (not verify or self._verify())

    def _compile(self, layer: _Layer) -> list[tuple]:
        """A layer's formulas as plain numbers, so a candidate's cost is a loop of integer arithmetic: tuples of
        ``(kind, out, in, groups, kernel, bias, spatial, depthwise, numel, out_edits, in_edits)``. A layer it does
        not understand is a constant and makes the model inexact (:attr:`supported`)."""
        m = layer.module
        outs = [(g, lookup.tolist()) for g, lookup in layer.out_edits]
        ins = [(g, lookup.tolist()) for g, lookup in layer.in_edits]
        if m is None:  # a parameter outside a layer: its elements scale with the channels of its pruned dimension
            return [("channel", layer.channels, 0, 1, 1, False, 1, False, layer.numel, outs, ins)]
        if isinstance(m, (nn.Linear, *_CONV)):
            linear = isinstance(m, nn.Linear)
            return [("weight", m.out_features if linear else m.out_channels,
                     m.in_features if linear else m.in_channels, 1 if linear else m.groups,
                     1 if linear else math.prod(m.kernel_size), m.bias is not None, layer.spatial, layer.depthwise, 0,
                     outs, ins)]
        if isinstance(m, nn.MultiheadAttention) and m._qkv_same_embed_dim and not layer.in_edits:
            # Torch-Pruning cuts the embedding and the q, k, v and output projections by the same indices
            e, n, s = m.embed_dim, layer.spatial, layer.keys
            twice = [(g, [2 * r for r in lookup]) for g, lookup in outs]
            extra = [p.numel() for p in (m.bias_k, m.bias_v) if p is not None]
            bias = m.in_proj_bias is not None
            return [("weight", e, e, 1, 1, bias, n, False, 0, outs, outs),  # q
                    ("weight", 2 * e, e, 1, 1, bias, s, False, 0, twice, outs),  # k and v
                    ("weight", e, e, 1, 1, m.out_proj.bias is not None, n, False, 0, outs, outs),
                    ("products", e, 0, 1, 1, False, 1, False, 2 * n * s, outs, []),  # q k^T and attention v
                    *([("channel", e, 0, 1, 1, False, 1, False, sum(extra), outs, [])] if extra else [])]
        own = [p for p in m.parameters(recurse=False)]
        if own and all(p.dim() == 1 and p.shape[0] == own[0].shape[0] for p in own):
            return [("channel", own[0].shape[0], 0, 1, 1, False, 1, False, sum(p.numel() for p in own), outs, ins)]
        if own or any(True for _ in m.parameters()):
            self.supported = False  # parameters it cannot scale with the channels
        return [("const", 0, 0, 1, 1, False, 1, False, sum(p.numel() for p in m.parameters()), outs, ins)]

    @torch.no_grad()
    def _record_spatial(self, base: nn.Module) -> None:
        hooks = []
        for layer in self._layers.values():
            if isinstance(layer.module, (nn.Linear, *_CONV)):
                def hook(mod, inp, out, layer=layer):
                    channels = out.shape[-1] if isinstance(mod, nn.Linear) else out.shape[1]
                    layer.spatial = out.numel() // max(1, channels)
                hooks.append(layer.module.register_forward_hook(hook))
            elif isinstance(layer.module, nn.MultiheadAttention):
                def attention_hook(mod, args, kwargs, out, layer=layer):  # batch of one: tokens = numel / E
                    key = args[1] if len(args) > 1 else kwargs.get("key")
                    layer.spatial = out[0].numel() // mod.embed_dim
                    layer.keys = key.numel() // mod.embed_dim if key is not None else layer.spatial
                hooks.append(layer.module.register_forward_hook(attention_hook, with_kwargs=True))
        try:
            base(self.context.example_inputs(batch_size=1, device=next(base.parameters()).device))
        finally:
            for h in hooks:
                h.remove()

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
            elif kind == "products":  # MACs per kept channel, no parameters
                macs += numel * (out - ro)
            else:  # parameters the model cannot scale (the model is then not exact, see _compile)
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
            elif kind == "products":
                macs += numel * (out - ro)
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
