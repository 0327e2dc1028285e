"""The pruning space of a model: its prunable groups, their channel rankings, and candidate building.

Tracing a model with Torch-Pruning's dependency graph (DepGraph) is the expensive step of
structured pruning, so :class:`PruningSpace` does it exactly once per base model. For every
prunable group it keeps

* the list of coupled layer edits (from ``DG.get_pruning_group`` with *all* root channels), each
  index tagged with the root channel it comes from, and
* the group's channel ranking by an importance criterion (least important first).

A candidate with keep ratios ``r`` then needs no graph work at all: for group ``g`` the pruned
root channels are ``ranking_g[: C_g - keep(r_g)]``, each layer edit keeps the indices whose root
channel is pruned, and the resulting :class:`~rayprune.pruning.plan.PruningPlan` is applied to a
copy of the base model. :meth:`PruningSpace.build_retrace` is the ordinary Torch-Pruning path
(re-trace a copy, prune group by group) kept as the reference the fast path is tested against.

Example::

    space = PruningSpace(model, torch.randn(1, 3, 32, 32), importance="l2", round_to=8)
    small = space.build([0.5] * space.num_groups)       # physically smaller nn.Module
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import warnings
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from ..engine.evaluate import training_mode
from ..errors import UserError
from .importance import Importance, get_importance
from .plan import PlanEntry, PruningPlan, apply_plan, pruner_name
from .rounding import check_keep_ratio, keep_counts

__all__ = ["GroupMember", "PrunableGroup", "PruningSpace", "find_output_layers", "KeepRatios"]

#: Keep ratios: one float for every group, a sequence (one per group) or ``{root name: ratio}``.
KeepRatios = Union[float, Sequence[float], Mapping[str, float]]

_ROOT_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


@dataclass(frozen=True)
class GroupMember:
    """One coupled layer edit of a group: ``idxs[i]`` is removed when root channel ``root_idxs[i]`` is."""

    target: str
    kind: str  # "module" | "parameter"
    pruner: str
    fn: str
    pruning_dim: int
    idxs: np.ndarray
    root_idxs: np.ndarray


@dataclass(frozen=True)
class PrunableGroup:
    """A set of coupled layers that must keep the same channels: the agent's decision unit."""

    index: int
    root: str  # name of the conv/linear whose output channels define the group
    root_type: str  # "Conv2d", "Linear", ...
    channels: int
    in_channels: int
    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    members: tuple[GroupMember, ...]
    ranking: np.ndarray  # root channel indices, least important first
    #: fewest channels the group may keep: one per producer layer (a concat branch may not be emptied)
    min_channels: int = 1
    #: the importance criterion's score of each root channel (channel order), normalised by the group's mean
    #: (Torch-Pruning's ``normalizer="mean"``), so scores compare across groups: global pruning ranks on them;
    #: NaN where the criterion does not score the group (bn_scale on a group without BatchNorm)
    scores: Optional[np.ndarray] = None
    #: equal blocks the channels fall in (1: none): a group that feeds or comes out of a grouped convolution with
    #: ``groups=G`` loses the same positions in each of its G blocks (Torch-Pruning's channel groups), so it keeps
    #: a multiple of ``blocks`` channels and its :attr:`ranking` lists whole positions, block by block
    blocks: int = 1

    @property
    def layers(self) -> tuple[str, ...]:
        """Names of every module or parameter this group edits."""
        return tuple(dict.fromkeys(m.target for m in self.members))


def grouped_conv(module) -> bool:
    """A convolution with ``1 < groups`` that is not a plain depthwise one (``groups == in == out``, which
    Torch-Pruning couples channel by channel): a ResNeXt/RegNet/ShuffleNet-style grouped convolution, or a
    depthwise one with a channel multiplier. Its channels can only go in equal numbers per group, the same
    positions in each: :func:`channel_blocks` says whether a coupled group can be pruned that way.

    >>> grouped_conv(nn.Conv2d(32, 64, 3, groups=4)), grouped_conv(nn.Conv2d(32, 32, 3, groups=32))
    (True, False)
    >>> grouped_conv(nn.Conv2d(32, 64, 3, groups=32)), grouped_conv(nn.Linear(4, 4))
    (True, False)
    """
    groups = getattr(module, "groups", 1)
    return (isinstance(module, nn.modules.conv._ConvNd) and groups > 1
            and not (groups == module.in_channels == module.out_channels))


def channel_blocks(channels: int, sides: Sequence[tuple[int, int, bool]]) -> Optional[int]:
    """The number of equal blocks a group of ``channels`` coupled channels must be pruned in, given the grouped
    convolutions it touches, or None when it cannot be pruned alike in every block. ``sides``: per grouped
    convolution, ``(groups, channels on the coupled side, whether the group's channels are that side's own
    channels in order)``. Each block must keep at least one channel and lose whole positions, so a block needs
    two channels or more (a depthwise convolution with a channel multiplier has one input channel per group).

    >>> channel_blocks(32, [(4, 32, True)]), channel_blocks(32, [(4, 32, True), (8, 32, True)])
    (4, 8)
    >>> channel_blocks(32, [(32, 32, True)]), channel_blocks(32, [(4, 64, True)]), channel_blocks(32, [(4, 32, False)])
    (None, None, None)
    """
    blocks = 1
    for groups, side, in_order in sides:
        if side != channels or not in_order:
            return None
        blocks = math.lcm(blocks, int(groups))
    return blocks if channels % blocks == 0 and channels // blocks >= 2 else None


def in_blocks(module) -> bool:
    """A layer whose coupled channels may only go alike in equal blocks: a grouped convolution
    (:func:`grouped_conv`), or an ``nn.MultiheadAttention`` with several heads (its embedding dimension is
    split into ``num_heads`` heads of equal size; Torch-Pruning removes the same indices from the q, k and v
    projections, so equal positions in every head keep the heads whole).

    >>> in_blocks(nn.MultiheadAttention(48, 4)), in_blocks(nn.MultiheadAttention(48, 1))
    (True, False)
    """
    if isinstance(module, nn.MultiheadAttention):
        return module.num_heads > 1
    return grouped_conv(module)


def _block_side(item) -> tuple[int, int, bool]:
    """``(blocks, channels on the coupled side, whether the group's channels are that side's own channels in
    order)`` of a Torch-Pruning group item on a layer :func:`in_blocks` (:func:`channel_blocks`)."""
    layer = item.dep.target.module
    if isinstance(layer, nn.MultiheadAttention):
        blocks, side = layer.num_heads, layer.embed_dim
    else:
        blocks = layer.groups
        side = layer.out_channels if item.dep.handler.__name__ == "prune_out_channels" else layer.in_channels
    idxs, roots = np.asarray(item.idxs, dtype=np.int64), np.asarray(item.root_idxs, dtype=np.int64)
    return int(blocks), int(side), bool(np.array_equal(idxs, roots) and np.array_equal(idxs, np.arange(side)))


def blocked_ranking(scores: np.ndarray, blocks: int) -> np.ndarray:
    """Channels least important first, whole positions at a time: position ``p`` of every block
    (``b * size + p``) together, positions ordered by their summed score, so any prefix of ``k * blocks``
    channels removes ``k`` positions from every block alike.

    >>> blocked_ranking(np.array([5.0, 1.0, 3.0, 4.0, 2.0, 7.0]), 2).tolist()  # blocks [5 1 3] and [4 2 7]
    [1, 4, 0, 3, 2, 5]
    """
    size = len(scores) // blocks
    by_position = np.asarray(scores, dtype=np.float64).reshape(blocks, size).sum(axis=0)
    order = np.argsort(by_position, kind="stable")
    return (order[:, None] + size * np.arange(blocks)[None, :]).reshape(-1).astype(np.int64)


def _dependency_graph(model: nn.Module, example_inputs):
    """Torch-Pruning's dependency graph of ``model``, without its warning about parameters used outside a layer
    (rayprune says which and how they are pruned itself: :attr:`PruningSpace.free_parameters`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Unwrapped parameters detected")
        return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)


def _pair(value) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):  # padding="same"/"valid"
        return (-1, -1)
    value = tuple(int(v) for v in value)
    return (value + value)[:2] if len(value) == 1 else value[:2]


def _descriptors(module: nn.Module) -> dict:
    if isinstance(module, nn.Linear):
        return dict(in_channels=module.in_features, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0))
    return dict(
        in_channels=module.in_channels,
        kernel_size=_pair(module.kernel_size),
        stride=_pair(module.stride),
        padding=_pair(module.padding),
    )


def _as_inputs(example_inputs) -> tuple:
    return example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)


def _flatten_tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, Mapping):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flatten_tensors(o)]
    return []


@torch.no_grad()
def _trace_layers(model: nn.Module, example_inputs) -> tuple[list[str], list[str]]:
    """(conv/linear layer names in the order they run, names of those producing the output)."""
    produced: list[tuple[str, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, name=name: produced.append((name, out)))
        for name, m in model.named_modules()
        if isinstance(m, _ROOT_TYPES)
    ]
    try:
        with training_mode(model, False):
            outputs = _flatten_tensors(model(*_as_inputs(example_inputs)))
    finally:
        for h in hooks:
            h.remove()
    names = [name for name, out in produced if any(out is o for o in outputs)]
    if not names and produced:
        names = [produced[-1][0]]
    order = list(dict.fromkeys(name for name, _ in produced))
    return order, list(dict.fromkeys(names))


class _ChannelSplits(torch.overrides.TorchFunctionMode):
    """Records whether a forward pass splits the channel dimension of a tensor into two (``view(b, g, c // g, h, w)``,
    the first step of a channel shuffle) or shuffles channels outright (``channel_shuffle``)."""

    _RESHAPES = {torch.Tensor.view, torch.Tensor.reshape, torch.reshape, torch.Tensor.unflatten, torch.unflatten}
    _SHUFFLES = {getattr(torch, "channel_shuffle", None), getattr(torch.nn.functional, "channel_shuffle", None),
                 getattr(torch, "native_channel_shuffle", None)} - {None}

    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in self._SHUFFLES:
            self.found = True
        elif func in self._RESHAPES and args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
            x = args[0]
            if (x.dim() >= 3 and out.dim() == x.dim() + 1 and out.shape[0] == x.shape[0]
                    and out.shape[1] > 1 and out.shape[2] > 1 and out.shape[1] * out.shape[2] == x.shape[1]):
                self.found = True
        return out


def splits_channels(model: nn.Module, example_inputs) -> bool:
    """Whether ``model``'s forward pass splits a tensor's channels into groups (a channel shuffle), which
    Torch-Pruning's dependency graph does not follow: channels move between the groups of the grouped
    convolution after it. A flatten of the spatial dimensions (a ViT's patches) is not a split.

    >>> splits_channels(nn.Sequential(nn.Conv2d(3, 8, 1), nn.ChannelShuffle(2)), torch.zeros(1, 3, 4, 4))
    True
    >>> splits_channels(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Flatten(2)), torch.zeros(1, 3, 4, 4))
    False
    """
    mode = _ChannelSplits()
    try:
        with torch.no_grad(), training_mode(model, False), mode:
            model(*_as_inputs(example_inputs))
    except Exception:  # noqa: BLE001 - a model that will not run under the mode: assume the worst, prune less
        return True
    return mode.found


def find_output_layers(model: nn.Module, example_inputs) -> list[str]:
    """Names of the conv/linear layers that produce the model's output (never pruned).

    A layer counts if the tensor it returns *is* one of the model's outputs; if no layer does
    (the output went through a reshape, say), the last conv/linear layer that ran is taken.
    """
    return _trace_layers(model, example_inputs)[1]


def _protect_segments(ranking: np.ndarray, members: Sequence["GroupMember"]) -> tuple[np.ndarray, int]:
    """Move each producer's most important channel to the end of the ranking.

    A group can span several producers (conv branches joined by ``torch.cat`` under a residual
    add); pruning the group's least important channels could remove *every* channel of one
    branch, leaving a layer with 0 outputs. Keeping each producer's best channel last, and never
    keeping fewer channels than there are producers, prevents that.
    """
    producers = {
        frozenset(m.root_idxs.tolist()) for m in members
        if m.fn == "prune_out_channels" and m.kind == "module" and m.pruner in ("CONV", "LINEAR", "DEPTHWISE_CONV")
    }
    if len(producers) <= 1:
        return ranking, 1
    position = {int(c): i for i, c in enumerate(ranking)}
    keep_last = {max(seg, key=position.__getitem__) for seg in producers if seg}
    head = [c for c in ranking if int(c) not in keep_last]
    tail = sorted(keep_last, key=position.__getitem__)
    return np.asarray(head + tail, dtype=np.int64), len(keep_last)


def _normalised(scores: np.ndarray) -> np.ndarray:
    """Scores divided by their mean (Torch-Pruning's ``normalizer="mean"``; a no-op on its own criteria,
    which are normalised already), so a custom criterion's scores compare across groups too.

    >>> _normalised(np.array([1.0, 3.0])).tolist()
    [0.5, 1.5]
    """
    scores = np.asarray(scores, dtype=np.float64)
    mean = float(np.abs(scores).mean()) if scores.size else 0.0
    return scores / mean if mean > 0 else scores


class PruningSpace:
    """Prunable groups of a base model, ranked once, from which candidates are built without tracing.

    Args:
        model: the trained base model. It is copied; later changes to it do not leak in.
        example_inputs: a batch (or tuple of inputs) the model accepts, used once for tracing.
        importance: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"random"`` or a callable group -> scores.
        round_to: kept channel counts are rounded to this multiple (8 suits GPUs).
        ignored_layers: names of conv/linear layers whose output channels must never be pruned,
            in addition to the layers that produce the model's output.
    """

    def __init__(
        self,
        model: nn.Module,
        example_inputs,
        *,
        importance: Union[str, Importance] = "l2",
        round_to: int = 1,
        ignored_layers: Iterable[str] = (),
        unbuildable: Optional[Sequence[str]] = None,
    ) -> None:
        if int(round_to) < 1:
            raise ValueError(f"The 'round_to' of the pruning space must be >= 1; got {round_to!r}.")
        self.round_to = int(round_to)
        self.importance = importance if isinstance(importance, str) else getattr(importance, "__name__", "custom")
        self.example_inputs = example_inputs
        self.base = copy.deepcopy(model).eval()
        names = dict(self.base.named_modules())
        ignored_layers = (ignored_layers,) if isinstance(ignored_layers, str) else tuple(ignored_layers)
        unknown = [n for n in ignored_layers if n not in names]
        if unknown:
            prunable = [n for n, m in names.items() if n and isinstance(m, (nn.Conv2d, nn.Linear, nn.Conv1d))]
            close = sorted({c for n in unknown for c in difflib.get_close_matches(n, list(names), n=3)})
            raise UserError(
                f"pruning.ignored_layers names {unknown}, which the model does not have"
                + (f" (did you mean {close}?)" if close else "")
                + f"; its convolution and linear layers are {prunable[:12]}" + (" ..." if len(prunable) > 12 else "")
                + " (names as in model.named_modules()).")
        self._execution_order, self.output_layers = _trace_layers(self.base, example_inputs)
        self.ignored_layers = tuple(dict.fromkeys([*self.output_layers, *ignored_layers]))
        #: ``(root layer, grouped convolutions it is coupled to)`` of each group left unpruned because it touches
        #: a grouped convolution (:func:`grouped_conv`) whose blocks it cannot be pruned alike in (:func:`channel_blocks`)
        self.skipped: list[tuple[str, tuple[str, ...]]] = []
        self._splits_channels = splits_channels(self.base, example_inputs)
        self.groups = self._discover(get_importance(importance))
        self._cache: dict[tuple[int, int], list[tuple[tuple, np.ndarray]]] = {}
        #: ``(root layer, error)`` of each group whose pruned model does not run (:meth:`_drop_unbuildable`);
        #: ``unbuildable`` (roots) drops the groups another process found so, without checking again, so that
        #: every process of a run has the same groups (keep ratios are matched to groups by position)
        self.unbuildable: list[tuple[str, str]] = []
        self._drop_unbuildable(None if unbuildable is None else set(unbuildable))
        if not self.groups:
            raise UserError(
                "The model has no prunable groups: no conv/linear layer whose output channels can be "
                f"removed (output layers {list(self.output_layers)} are never pruned"
                + (f"; {self.skipped_text()}" if self.skipped or self.unbuildable else "") + ")."
            )

    # -- discovery (once) -------------------------------------------------------------------
    def _discover(self, importance: Importance) -> list[PrunableGroup]:
        model = self.base
        dg = _dependency_graph(model, self.example_inputs)
        module_names = {m: n for n, m in model.named_modules()}
        param_names = {p: n for n, p in model.named_parameters()}
        ignored = [model.get_submodule(n) for n in self.ignored_layers]
        groups = []
        for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
            root = group[0].dep.target.module
            channels = len(group[0].idxs)
            if channels < 2 or root not in module_names:
                continue
            grouped_items = [i for i in group.items
                             if i.dep.target.module in module_names and in_blocks(i.dep.target.module)]
            grouped = tuple(dict.fromkeys(module_names[i.dep.target.module] for i in grouped_items))
            blocks = 1
            if grouped:  # prunable only alike in every block of the convolutions' groups
                blocks = channel_blocks(channels, [_block_side(i) for i in grouped_items])
                if self._splits_channels and any(isinstance(i.dep.target.module, tp.ops._ReshapeOp)
                                                 for i in group.items):
                    blocks = None  # a channel shuffle (view/transpose/reshape) moves channels between the blocks,
                    # which Torch-Pruning does not follow: the pruned model would not be the base's sub-network
                if blocks is None:  # before the importance: Torch-Pruning's criteria fail on some of these
                    self.skipped.append((module_names.get(root, str(root)), grouped))
                    continue
            members = []
            for item in group.items:
                dep, target = item.dep, item.dep.target
                if isinstance(target.module, nn.Parameter):
                    name, kind = param_names.get(target.module), "parameter"
                else:
                    name, kind = module_names.get(target.module), "module"
                if name is None:  # tp's internal ops (add, concat, reshape): nothing to edit
                    continue
                members.append(
                    GroupMember(
                        target=name,
                        kind=kind,
                        pruner=pruner_name(dep.handler.__self__),
                        fn=dep.handler.__name__,
                        pruning_dim=int(target.pruning_dim),
                        idxs=np.asarray(item.idxs, dtype=np.int64),
                        root_idxs=np.asarray(item.root_idxs, dtype=np.int64),
                    )
                )
            try:
                with torch.no_grad():
                    scores = importance(group)
            except Exception:  # noqa: BLE001 - a criterion that cannot score a grouped convolution's slices
                if blocks == 1:
                    raise
                self.skipped.append((module_names.get(root, str(root)), grouped))
                continue
            covered = scores is not None  # tp returns None for groups the criterion does not cover
            if not covered:
                scores = torch.zeros(channels)
            scores = torch.nan_to_num(scores.detach().float().cpu(), nan=0.0, posinf=3.0e38, neginf=-3.0e38)
            ranking = np.argsort(scores.numpy(), kind="stable").astype(np.int64)
            ranking, min_channels = _protect_segments(ranking, members)
            if blocks > 1:
                if min_channels > 1:  # concatenated producers and blocks at once: not handled, left whole
                    self.skipped.append((module_names.get(root, str(root)), grouped))
                    continue
                ranking, min_channels = blocked_ranking(scores.numpy(), blocks), blocks
            groups.append(
                PrunableGroup(
                    index=-1,
                    root=module_names[root],
                    root_type=type(root).__name__,
                    channels=channels,
                    **_descriptors(root),
                    members=tuple(members),
                    ranking=ranking,
                    min_channels=min_channels,
                    # a group the criterion does not score has no place in a global ranking: NaN, never dropped by it
                    scores=_normalised(scores.numpy()) if covered else np.full(channels, np.nan),
                    blocks=blocks,
                )
            )
        # One step per group from input to output, in the order the roots run in forward().
        rank = {name: i for i, name in enumerate(self._execution_order)}
        groups.sort(key=lambda g: rank.get(g.root, len(rank)))
        return [dataclasses.replace(g, index=i) for i, g in enumerate(groups)]

    def _drop_unbuildable(self, known: Optional[set[str]] = None) -> None:
        """Prune each group alone by half and run the model on the example inputs; a group whose pruned model
        fails is left unpruned (:attr:`unbuildable`). Torch-Pruning's dependency graph can couple channels
        wrongly: a concatenation followed by ``flatten`` and a ``Linear`` made one group of both branches and
        cut the linear layer's inputs to fit neither ("mat1 and mat2 shapes cannot be multiplied")."""
        kept = []
        for group in self.groups:
            if known is not None:  # decided by the process that built the run's first space
                if group.root in known:
                    self.unbuildable.append((group.root, "found by the driver"))
                else:
                    kept.append(group)
                continue
            counts = [g.channels for g in self.groups]
            counts[group.index] = (max(group.min_channels, group.channels // 2) if group.blocks == 1 else
                                   keep_counts([0.5], [group.channels], [group.min_channels],
                                               [self.multiples[group.index]])[0])  # whole positions of its blocks
            try:
                with torch.no_grad():
                    self._built(self.plan_from_counts(counts))(*_as_inputs(self.example_inputs))
            except (MemoryError, torch.cuda.OutOfMemoryError):
                raise  # the machine, not the group
            except Exception as exc:  # noqa: BLE001 - any other failure: this group cannot be pruned as traced
                first = next(iter(str(exc).strip().splitlines()), "") or repr(exc)
                self.unbuildable.append((group.root, f"{type(exc).__name__}: {first[:200]}"))
                continue
            kept.append(group)
        if len(kept) < len(self.groups):
            self.groups = [dataclasses.replace(g, index=i) for i, g in enumerate(kept)]
            self._cache = {}  # keyed by group index

    def skipped_text(self) -> str:
        """One sentence on the groups left unpruned: those touching a grouped convolution, and those whose pruned
        model did not run ('' if none)."""
        parts = []
        if self.skipped:
            convs = sorted({c for _, cs in self.skipped for c in cs})
            roots = [r for r, _ in self.skipped]
            parts.append(f"{len(roots)} group(s) of coupled channels (rooted at {roots[:6]}"
                         f"{' ...' if len(roots) > 6 else ''}) are left unpruned because they feed or come out of "
                         f"grouped convolution(s) {convs[:6]}{' ...' if len(convs) > 6 else ''} (groups > 1, not "
                         "depthwise; or multi-head attention) that they cannot be pruned alike in every block (group "
                         "or head) of: a block of one channel (a depthwise convolution with a channel multiplier, "
                         "an attention head of width 1), channels concatenated, sliced or reshaped (a channel "
                         "shuffle) before the layer, or a criterion that cannot score its weights")
        if self.unbuildable:
            roots = [r for r, _ in self.unbuildable]
            parts.append(f"{len(roots)} group(s) (rooted at {roots[:6]}{' ...' if len(roots) > 6 else ''}) are left "
                         "unpruned because the model with that group pruned alone does not run — Torch-Pruning could "
                         f"not follow its channels (the first: {self.unbuildable[0][1]}); a concatenation before a "
                         "flatten and a Linear does this (pooling to 1x1 before the flatten does not), and so do "
                         "attention written by hand, reshaping channels into heads, and an nn.MultiheadAttention "
                         "whose keys or values have another width than its embedding (kdim/vdim); one with "
                         "kdim = vdim = embed_dim is pruned head by head")
        return "; ".join(parts)

    # -- keep ratios -> counts -> plan -> model ------------------------------------------------
    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def free_parameters(self) -> list[tuple[str, int]]:
        """``(name, dimension)`` of each parameter used outside a layer (a learned position embedding, a scale) that
        a group prunes, and the dimension it is pruned along: Torch-Pruning takes its last dimension longer
        than 1 as the channels."""
        return list(dict.fromkeys((m.target, m.pruning_dim) for g in self.groups for m in g.members
                                  if m.kind == "parameter"))

    @property
    def multiples(self) -> list[int]:
        """Per group, the multiple its kept channels are rounded to: ``round_to``, and for a group in blocks
        (:attr:`PrunableGroup.blocks`) a multiple of its blocks too."""
        return [math.lcm(self.round_to, g.blocks) for g in self.groups]

    def normalize_ratios(self, keep_ratios: KeepRatios) -> list[float]:
        """Validate keep ratios in any accepted form and return one float per group."""
        if not isinstance(keep_ratios, (str, bytes, Mapping)) and np.ndim(keep_ratios) == 0:
            return [check_keep_ratio(float(keep_ratios))] * self.num_groups
        if isinstance(keep_ratios, Mapping):
            roots = {g.root: g.index for g in self.groups}
            unknown = sorted(set(keep_ratios) - set(roots))
            if unknown:
                raise ValueError(f"keep ratios name unknown groups {unknown}; groups are {sorted(roots)}.")
            ratios = [1.0] * self.num_groups
            for name, r in keep_ratios.items():
                ratios[roots[name]] = check_keep_ratio(r, name=f"keep ratio of group {name!r}")
            return ratios
        ratios = list(keep_ratios)
        if len(ratios) != self.num_groups:
            raise ValueError(
                f"Expected {self.num_groups} keep ratios (one per prunable group); got {len(ratios)}."
            )
        return [check_keep_ratio(r, name=f"keep ratio of group {i}") for i, r in enumerate(ratios)]

    def keep_counts(self, keep_ratios: KeepRatios) -> list[int]:
        """Channels kept per group after rounding to ``round_to``."""
        ratios = self.normalize_ratios(keep_ratios)
        return keep_counts(ratios, [g.channels for g in self.groups], [g.min_channels for g in self.groups],
                           self.multiples)

    def rounded_ratios(self, keep_ratios: KeepRatios) -> list[float]:
        """The keep ratios that are actually realised after rounding (``keep / channels``)."""
        return [k / g.channels for k, g in zip(self.keep_counts(keep_ratios), self.groups)]

    def _group_edits(self, index: int, n_pruned: int) -> list[tuple[tuple, np.ndarray]]:
        key = (index, n_pruned)
        if key not in self._cache:
            group = self.groups[index]
            pruned_roots = group.ranking[:n_pruned]
            edits = []
            for m in group.members:
                idxs = m.idxs[np.isin(m.root_idxs, pruned_roots)]
                if idxs.size:
                    edits.append(((m.target, m.kind, m.pruner, m.fn, m.pruning_dim), idxs))
            self._cache[key] = edits
        return self._cache[key]

    def plan_from_counts(self, counts: Sequence[int]) -> PruningPlan:
        """The layer edits that keep ``counts[g]`` channels of each group ``g``."""
        merged: dict[tuple, list[np.ndarray]] = {}
        for group, keep in zip(self.groups, counts):
            if not 1 <= keep <= group.channels:
                raise ValueError(f"Group {group.index} ({group.root}) has {group.channels} channels; cannot keep {keep}.")
            if (group.channels - int(keep)) % group.blocks:
                raise ValueError(f"Group {group.index} ({group.root}) is pruned alike in {group.blocks} blocks of a "
                                 f"grouped convolution; it cannot keep {keep} of {group.channels} channels (keep a "
                                 f"multiple of {group.blocks}).")
            for key, idxs in self._group_edits(group.index, group.channels - int(keep)):
                merged.setdefault(key, []).append(idxs)
        entries = []
        for (target, kind, pruner, fn, dim), parts in merged.items():
            idxs = np.unique(np.concatenate(parts))
            entries.append(PlanEntry(target, kind, pruner, fn, dim, tuple(int(i) for i in idxs)))
        return PruningPlan(entries)

    def plan(self, keep_ratios: KeepRatios) -> PruningPlan:
        """The pruning plan for ``keep_ratios`` (after rounding)."""
        return self.plan_from_counts(self.keep_counts(keep_ratios))

    def build(self, keep_ratios: KeepRatios) -> nn.Module:
        """A physically smaller copy of the base model (fast path: no tracing).

        The module tree is copied with the base's tensors shared; Torch-Pruning's pruning
        functions put new (index-selected) tensors in place of the ones they edit, and only the
        tensors the plan leaves untouched are cloned. Each weight is copied once, not twice
        (deep copy, then index_select). The candidate shares no storage with the base.
        """
        return self._built(self.plan(keep_ratios))

    def _built(self, plan: PruningPlan) -> nn.Module:
        """:meth:`build` of a plan."""
        base = self.base
        shared = [*base.parameters(), *base.buffers()]
        model = copy.deepcopy(base, {id(t): t for t in shared})
        apply_plan(model, plan)
        base_ids = {id(t) for t in shared}
        with torch.no_grad():
            for module in model.modules():
                for name, p in module._parameters.items():
                    if p is not None and id(p) in base_ids:
                        module._parameters[name] = nn.Parameter(p.detach().clone(), requires_grad=p.requires_grad)
                for name, b in module._buffers.items():
                    if b is not None and id(b) in base_ids:
                        module._buffers[name] = b.clone()
        return model

    def build_retrace(self, keep_ratios: KeepRatios) -> nn.Module:
        """The same candidate through plain Torch-Pruning: re-trace a copy and prune group by group.

        Slow; kept as the reference for :meth:`build` and for the benchmark.
        """
        counts = self.keep_counts(keep_ratios)
        model = copy.deepcopy(self.base)
        dg = _dependency_graph(model, self.example_inputs)
        by_name = {g.root: g for g in self.groups}
        ignored = [model.get_submodule(n) for n in self.ignored_layers]
        pending = []
        for group in dg.get_all_groups(ignored_layers=ignored, root_module_types=_ROOT_TYPES):
            name = dg._module2name.get(group[0].dep.target.module)
            g = by_name.get(name)
            if g is not None:
                n_pruned = g.channels - counts[g.index]
                if n_pruned:
                    pending.append((group, g.ranking[:n_pruned].tolist()))
        for group, idxs in pending:
            group.prune(idxs=idxs)
        return model

    def describe(self) -> list[dict]:
        """One dict per group (index, root, type, channels, descriptors, layers) for tables and specs."""
        return [
            dict(
                index=g.index,
                root=g.root,
                type=g.root_type,
                channels=g.channels,
                in_channels=g.in_channels,
                kernel_size=list(g.kernel_size),
                stride=list(g.stride),
                padding=list(g.padding),
                layers=list(g.layers),
                blocks=g.blocks,
            )
            for g in self.groups
        ]
