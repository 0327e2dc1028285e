"""A pruning problem: everything a config resolves to, built once per process.

The dataset on its device (or, streamed, as torch Datasets read batch by batch), the trained base
model, its pruning space, the cost functions with their measuring context, the budgets as absolute
limits, and the analytic params/MACs model. Evaluators (local or Ray actors) hold one and evaluate
many candidates against it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from .base_model import architecture_of, obtain_base_model
from .config import Config
from .costs import (
    ANALYTIC_COSTS,
    TIMED_COSTS,
    AnalyticCosts,
    Budget,
    CostContext,
    CostFn,
    PairedTiming,
    measure_base_costs,
    measure_costs,
    paired_columns,
    resolve_costs,
)
from .costs.budget import fits
from .data import Dataset, StreamedDataset, load_dataset
from .data.datasets import input_hint
from .engine.evaluate import training_mode
from .engine.objective import DataSplit, MetricError, Objective, resolve_objective
from .errors import UserError
from .inputs import probe_inputs
from .models import check_model_for_data
from .names import is_in_memory
from .pruning import PruningSpace
from .pruning.onnx_export import check_onnx_opset

__all__ = ["PruningProblem", "resolve_device", "configured_dataset", "config_in_memory"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; otherwise ``torch.device(name)``; a :class:`UserError` (exit 2, one
    line) for a name torch does not know or a CUDA device this machine does not have."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as err:
        raise UserError(f"data.device (--device) must be auto, cpu, cuda or cuda:N; got {name!r} ({err}).") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"data.device (--device) is {name!r} but CUDA is not available on this machine (torch "
                        f"{torch.__version__}); use --device auto (CUDA where there is one) or cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise UserError(f"data.device (--device) is {name!r} but this machine has {torch.cuda.device_count()} CUDA "
                        "device(s), numbered from 0.")
    return device


def _split_of(data: Dataset | StreamedDataset, split: str, device: torch.device, max_samples: Optional[int] = None,
              seed: int = 0) -> DataSplit:
    """The metric's view of ``split``: all of it, or ``max_samples`` of it (the first ones of resident data,
    a fixed random subset drawn by ``seed`` of streamed data: :meth:`~rayprune.data.SplitSource.sample`)."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test'; got {split!r}")
    source = data.source(split)
    if max_samples is not None and max_samples < len(source):
        source = source.sample(max_samples, seed=seed)
    return DataSplit(split, source=source, device=device)


def config_in_memory(cfg: Config) -> bool:
    """Whether ``cfg`` names a model or data handed over as an object (the Python API): a problem
    that cannot be rebuilt from the config alone."""
    return is_in_memory(cfg.model.name) or is_in_memory(cfg.data.name)


def configured_dataset(cfg: Config) -> Dataset | StreamedDataset:
    """The dataset ``cfg.data`` names, on CPU (the one place a config's data section is read)."""
    d = cfg.data
    return load_dataset(d.name, root=d.root, path=d.path, label=d.label, image_size=d.image_size, scale=d.scale,
                        split_column=d.split_column, classes=d.classes, drop=d.drop, val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=cfg.seed,
                        max_samples=d.max_samples, task=d.task, streaming=d.streaming,
                        max_resident_mb=d.max_resident_mb, num_workers=d.num_workers)


def warn_if_groups_skipped(problem: "PruningProblem", log: Callable[[str], None]) -> None:
    """Say which groups of channels the search leaves whole (a grouped convolution, or a pruned model that does not run)."""
    if problem.space.skipped or problem.space.unbuildable:
        log(f"warning: {problem.space.skipped_text()}; the other {problem.space.num_groups} group(s) are searched "
            "(`rayprune validate CONFIG --groups` lists them; from Python, problem.space.describe()).")
    free = problem.space.free_parameters
    if free:
        shapes = dict(problem.space.base.named_parameters())
        log("note: parameter(s) used outside a layer are pruned with the channels they meet: "
            + ", ".join(f"{name} {tuple(shapes[name].shape)} along dimension {dim}" for name, dim in free)
            + " (Torch-Pruning takes the last dimension longer than 1 as the channels; if that is not so for one, "
              "keep the layers that produce its channels whole with pruning.ignored_layers)")


def warn_if_unaligned_for_runtime(cfg: Config, log: Callable[[str], None]) -> None:
    """Say so when latency is timed with ONNX Runtime and kept channel counts need not be multiples of 8: its CPU
    kernels are about 2.5x slower for a layer of 46, 55 or 63 channels than for 48, 56 or 64 (BENCHMARKS.md, "ONNX
    Runtime and channel counts"), so candidates pruned to any count come out slower than the base."""
    timed = any("latency_ms" in names for names in (cfg.costs.measure, cfg.budgets, cfg.sweep.budgets))
    if timed and cfg.costs.latency.runtime == "onnxruntime" and cfg.pruning.round_to % 8:
        log(f"warning: latency is timed with ONNX Runtime and pruning.round_to is {cfg.pruning.round_to}: its CPU "
            "kernels run a layer whose channel count is not a multiple of 8 about 2.5x slower (46 channels against "
            "48), so a model pruned to such counts can be slower than the unpruned one; set pruning.round_to: 8 "
            "(BENCHMARKS.md, \"ONNX Runtime and channel counts\").")


def check_export_opset(problem: "PruningProblem") -> None:
    """Refuse an ``export.onnx_opset`` the base model cannot be written in (or without onnx installed), before the
    search (:func:`rayprune.pruning.onnx_export.check_onnx_opset`: one export of the base; nothing when unset)."""
    check_onnx_opset(problem.space.base, problem.data.input_shape, problem.data.input_dtype,
                     problem.config.export.onnx_opset)


def warn_if_base_at_chance(problem: "PruningProblem", log: Callable[[str], None]) -> None:
    """Log a warning when the base model's validation accuracy is no better than always answering the most
    common class (within two standard errors): :func:`base_at_chance`'s message. Regression: a base no better than
    the train mean."""
    if getattr(problem.data, "task", "classification") == "regression":
        if problem.base_info.get("source") != "untrained":
            _warn_if_regressor_below_the_mean(problem, log)
        return
    message, permuted = _chance_verdict(problem)
    if permuted:  # the search's fine-tunes would retrain it into rayprune's order: the export would answer in another
        raise UserError(f"{message.rstrip('.')}. Stopped before the search: fine-tuning would re-learn the classes in "
                        "rayprune's order, and the pruned model would answer in another order than yours. From "
                        "Python, give the order in the data: {'train': (x, y), 'class_names': [...]}.")
    if message:
        log(f"warning: {message}")


def base_at_chance(problem: "PruningProblem", *, imbalance: bool = True) -> Optional[str]:
    """Why the base classifier's validation accuracy is no better than always answering the most common class
    (within two standard errors), or None: its accuracies, and every candidate's, then mean little. At chance for
    a model trained elsewhere, the likely cause is preprocessing (named where rayprune applied some); far *below*
    chance, classes numbered in another order than rayprune's (a good model whose outputs are permuted is wrong on
    nearly every sample); for one trained here, a failed training; above chance on imbalanced data, accuracy
    itself (``imbalance=False``: not judged against the most common class, only against 1 / classes)."""
    return _chance_verdict(problem, imbalance=imbalance)[0]


def _chance_verdict(problem: "PruningProblem", *, imbalance: bool = True) -> tuple[Optional[str], bool]:
    """:func:`base_at_chance`'s message, and whether it is the far-below-chance case of a model trained elsewhere on
    named classes (its outputs number them in another order: :func:`warn_if_base_at_chance` stops there)."""
    from .search.score_signal import chance_and_base

    if problem.base_info.get("source") == "untrained":  # `validate` before any training: nothing to judge
        return None, False
    if getattr(problem.data, "task", "classification") == "regression":
        return None, False
    chance, base = chance_and_base(problem)
    y = getattr(problem.data, "y_val", None)
    if chance is None or base is None or y is None or len(y) == 0:
        return None, False
    n = len(y)
    majority = float(torch.bincount(torch.as_tensor(y).reshape(-1).long().cpu()).max()) / n
    floor = max(chance, majority) if imbalance else chance
    clearly_above = floor + 2.0 * math.sqrt(floor * (1.0 - floor) / n)  # two standard errors over the floor
    if base > clearly_above:
        return None, False
    spread = 2.0 * math.sqrt(chance * (1.0 - chance) / n)
    at_chance = base <= chance + spread
    names = getattr(problem.data, "class_names", None)
    permuted = False
    if problem.base_info.get("source") in ("trained", "cache"):
        why = ("its training did not learn (base_training: more epochs, another lr, or check the labels); "
               "pruning it is pointless")
    elif base < chance - spread and names and (relabelled := _relabelled_accuracy(problem)) is not None \
            and relabelled > clearly_above:
        permuted = True  # (a model answering one class for every input is below chance too: not this case)
        why = (f"far below chance ({100 * chance:.1f} %), as a model scores whose outputs number the classes in "
               f"another order than rayprune's (with its outputs matched to the classes they answer most, it scores "
               f"{100 * relabelled:.1f} %): rayprune numbers them {list(names)} (text labels in sorted order, "
               f"unless data.classes gives the order); set data.classes to the order your model was trained on")
    elif not at_chance:
        why = (f"on data this imbalanced accuracy says little (the most common class alone scores "
               f"{100 * majority:.1f} %); a metric of yours that weighs the classes (search.metric) may judge it better")
    else:
        data = problem.data
        scalable = _takes_scale(problem.config)
        how = ("rayprune scales tabular columns to the train split's range; " + (
               "set data.scale: none if the model expects the columns as the file holds them" if scalable else
               "to feed them as the file holds them (token ids, say), return the arrays from a data function of "
               "yours (data.name: package.module:function), whose data is used as given")
               if getattr(data, "feature_low", None) is not None else
               "rayprune normalises images per channel with the train split's mean and std; load them with a data "
               "factory of yours to keep your own preprocessing" if getattr(data, "mean", None) is not None else "")
        why = ("a model trained elsewhere usually saw other preprocessing than it gets here"
               + (f" ({how})" if how else "") + ", or other labels" + (
                   f" (rayprune numbers the classes {list(names)})" if names else ""))
    return (f"the base model scores {100 * base:.1f} % on the validation split ({n} samples), no better "
            + (f"than always answering the most common class ({100 * floor:.1f} %)" if imbalance else
               f"than chance (one class in {round(1 / chance)}: {100 * chance:.1f} %)") + f": {why}.", permuted)


def _relabelled_accuracy(problem: "PruningProblem") -> Optional[float]:
    """The base classifier's validation accuracy with each of its outputs read as the class it answers most (a
    greedy matching of the confusion matrix: a lower bound on the best renumbering); None for streamed data.

    A model whose outputs number the classes in another order scores far below chance and high here; a model that
    answers one class for everything (a preprocessing mismatch) stays low."""
    data = problem.data
    if getattr(data, "streamed", False) or getattr(data, "x_val", None) is None:
        return None
    k = int(problem.data.num_classes)
    model = problem.base_model
    predicted = []
    with training_mode(model, False), torch.inference_mode():
        for start in range(0, len(data.x_val), 512):
            out = model(data.x_val[start:start + 512].to(problem.device))
            predicted.append(out.reshape(len(out), -1).argmax(dim=1).cpu())
    truth = torch.as_tensor(data.y_val).reshape(-1).long().cpu()
    pred = torch.cat(predicted).clamp(0, max(k - 1, 0))
    confusion = torch.bincount(truth * k + pred, minlength=k * k).reshape(k, k).double()  # [class, output]
    matched = 0.0
    for _ in range(k):  # greedily pair the largest remaining (class, output) cell
        value, flat = confusion.reshape(-1).max(dim=0)
        if value <= 0:
            break
        matched += float(value)
        row, col = divmod(int(flat), k)
        confusion[row, :] = -1.0
        confusion[:, col] = -1.0
    return matched / max(len(truth), 1)


def _warn_if_regressor_below_the_mean(problem: "PruningProblem", log: Callable[[str], None]) -> None:
    """The regression counterpart of :func:`warn_if_base_at_chance`: a base model whose minus MSE on validation is
    no better than always predicting the train split's mean (the default metric only; resident data)."""
    data, base = problem.data, (problem.base_accuracy or {}).get("val")
    y_train, y_val = getattr(data, "y_train", None), getattr(data, "y_val", None)
    if problem.objective.custom_metric or base is None or y_train is None or y_val is None or not len(y_val):
        return
    mean = y_train.float().mean(dim=0)
    constant = -float(((y_val.float() - mean) ** 2).mean())
    if base > constant:
        return
    scaled = getattr(data, "feature_low", None) is not None
    how = (" rayprune scales tabular columns to the train split's range: " + (
           "set data.scale: none if the model expects the columns as the file holds them" if _takes_scale(
               problem.config) else "return the arrays from a data function of yours to keep them as given")
           if scaled else "")
    why = ("its training did not learn (base_training: more epochs, another lr)" if problem.base_info.get("source") in
           ("trained", "cache") else "a model trained elsewhere usually saw other preprocessing than it gets here." + how)
    log(f"warning: the base model scores {base:.4g} (minus the MSE) on the validation split ({len(y_val)} samples), no "
        f"better than always predicting the train split's mean ({constant:.4g}): {why}")


def warn_if_carved(cfg: Config, data: Any, log: Callable[[str], None], *, trained_elsewhere: Optional[bool] = None
                   ) -> None:
    """A model trained elsewhere (a checkpoint, or, from Python, a module handed over) scored on val/test rows
    rayprune split off the user's own file: if the model trained on the whole file, every score is partly measured
    on its training rows."""
    carved = getattr(data, "carved", ())
    if not carved or not (cfg.model.checkpoint if trained_elsewhere is None else trained_elsewhere):
        return
    rows = " and ".join(carved)
    if cfg.data.name == "tabular" and cfg.data.split_column:
        how = f"give {rows} rows of your own in the split column {cfg.data.split_column!r}"
    elif cfg.data.name == "tabular":
        how = "give the file a column of train/val/test and name it in data.split_column"
    elif cfg.data.name == "imagefolder":
        how = (f"lay the folder out as train/, val/ and test/ sub-folders of class folders (the {rows} "
               f"{'ones are' if len(carved) > 1 else 'one is'} missing)")
    elif cfg.data.name == "npz":
        how = f"store your own {' and '.join(f'x_{s}/y_{s}' for s in carved)} arrays in the file"
    else:
        how = "hand over your own held-out splits"
    log(f"warning: rayprune split the {rows} {'images' if cfg.data.name == 'imagefolder' else 'rows'} off "
        f"{cfg.data.path or cfg.data.root or cfg.data.name} "
        f"(data.val_fraction, data.test_fraction, by the config's seed); if your model was trained on "
        f"those rows, its scores (and every candidate's) are partly measured on training data: {how}.")


def neon_requested(cfg: Config, agent: Optional[str] = None) -> bool:
    """Whether this run's agent (``agent``, else ``search.agent``) or a sweep's agents include neon."""
    return "neon" in {agent or cfg.search.agent, *cfg.sweep.agents}


def check_streaming_agent(cfg: Config, data: Dataset | StreamedDataset, agent: Optional[str] = None) -> None:
    """Refuse the neon agent on streamed data before anything is trained: it reads whole splits as tensors."""
    if data.streamed and neon_requested(cfg, agent):
        raise UserError(f"The neon agent needs the data as tensors (it prunes small tabular MLPs) but dataset "
                        f"{data.name!r} is streamed (data.streaming: {cfg.data.streaming!r}, "
                        f"{data.size_mb or 0:.0f} MiB estimated); set data.streaming: false, or use a search "
                        f"agent (evolution, crl, tpe, random), which read streamed data.")


def check_neon_model(cfg: Config, model: nn.Module, data: Any) -> None:
    """Refuse the neon agent for a model with convolutions before its base model trains (it prunes MLPs:
    :func:`~rayprune.neon.topology.require_dense`, checked on the pruning space the model's convolutions give)."""
    if not neon_requested(cfg):
        return
    if not any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules()):
        return  # no convolution: every group is rooted at a Linear (checked again on the problem's own space)
    from .neon.topology import require_dense

    example = probe_inputs(1, tuple(data.input_shape), data.input_dtype, device=next(model.parameters()).device)
    require_dense(PruningSpace(model, example, importance=cfg.pruning.importance, round_to=cfg.pruning.round_to,
                               ignored_layers=cfg.pruning.ignored_layers))


def fed_as_the_model_reads_it(model: nn.Module, data: Any, cfg: Config) -> Any:
    """``data`` checked against ``model`` (:func:`check_model_for_data`), its inputs made int64 token ids when the
    model's nn.Embedding reads them and they reached rayprune unscaled (:meth:`Dataset.as_token_ids`), and 2-D
    samples fed without the channel axis rayprune gave them when the model takes them so, e.g. (channels, length)
    for a Conv1d (:meth:`Dataset.without_channel_axis`; in-memory data, not streamed)."""
    from .models.registry import FloatIdsRefused

    def check(dtype: str, fed: Any = None) -> None:
        fed = data if fed is None else fed
        check_model_for_data(model, tuple(fed.input_shape), task=fed.task, num_classes=fed.num_classes,
                             custom_loss=cfg.engine.loss is not None, input_dtype=dtype,
                             custom_metric=cfg.search.metric is not None)

    try:
        check(data.input_dtype)
        return data
    except FloatIdsRefused as err:
        ids = data.as_token_ids()
        if ids is None:
            scaled = data.mean is not None or getattr(data, "feature_low", None) is not None
            why = ("they are streamed (data.streaming), and streamed inputs are cast to float32" if data.streamed else
                   "rayprune read the samples as images (2-D samples get a channel axis)" if data.kind == "image" else
                   "rayprune scaled them to the train split's range: set data.scale: none" if scaled
                   and _takes_scale(cfg) else
                   "rayprune scaled or normalised them (an .npz file's columns are scaled to the train split's range): "
                   "return the arrays from a data function of yours (data.name: package.module:function), whose data "
                   "is used as given" if scaled else
                   "they are not all whole numbers >= 0 (below 2**24)")
            raise UserError(f"{err}; rayprune feeds token ids as int64 when they reach it unscaled, but not these: "
                            f"{why}. Or cast the ids in your forward (`self.embedding(x.long())`).") from err
        data = ids
        check("int64")
    except UserError as err:
        # 2-D samples read as one-channel images, for a model that takes them as they were: (channels, length)
        seq = data.without_channel_axis() if not data.streamed else None
        if seq is not None:
            try:
                check(seq.input_dtype, seq)
                return seq
            except UserError as seq_err:
                if _takes(model, seq):  # the model reads them so; what failed is another check (its outputs)
                    raise seq_err from None
        # failed before its embedding saw the float probe (e.g. padding counted on zeros)
        ids = data.as_token_ids() if any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules()) \
            else None
        if ids is None:
            raise
        data = ids
        try:
            check("int64")
        except UserError:
            raise err from None
    if neon_requested(cfg):
        raise UserError("The neon agent prunes small tabular MLPs on float features; this model reads token ids "
                        "(int64) with an nn.Embedding: use a search agent (random, evolution, crl, tpe).")
    return data


def _takes(model: nn.Module, data: Any) -> bool:
    """Whether ``model`` runs on ``data``'s input shape and dtype (nothing else checked)."""
    from .models import check_input_shape

    try:
        check_input_shape(model, tuple(data.input_shape), data.input_dtype)
        return True
    except UserError:
        return False


def _takes_scale(cfg: Config) -> bool:
    """Whether the config's dataset takes ``data.scale`` (a table: ``tabular``, ``sklearn:*``)."""
    return cfg.data.name == "tabular" or str(cfg.data.name).startswith("sklearn:")


def _channel_axis_hint(model: nn.Module, data: Any) -> str:
    """When rayprune gave 2-D samples a channel axis (read them as (1, H, W) images) and the model takes them as they
    were, e.g. (channels, length) for a Conv1d: say so, and what to do; empty otherwise."""
    from .models import check_input_shape

    shape = tuple(data.input_shape)
    if data.kind != "image" or len(shape) != 3 or shape[0] != 1:
        return ""
    try:
        check_input_shape(model, shape[1:])
    except UserError:
        return ""
    return (f" (rayprune feeds these samples as one-channel images {shape} — 2-D samples get a channel axis — and "
            f"your model takes them without it, as {shape[1:]}, e.g. (channels, length) for a Conv1d: such samples "
            f"are fed as given only when they are held in memory, not streamed (data.streaming); drop the axis in "
            f"your forward, e.g. `x = x.squeeze(1)`, and the exported model then takes {shape} inputs too)")


def _base_score(objective: Any, model: nn.Module, data: Any, split: str, device: Any, context: Any) -> float:
    """The base model's score on ``split``; the model raising on that split's samples (an out-of-vocabulary token
    id, a sample of another shape) is an error naming the split, not a traceback from inside the evaluation."""
    try:
        return objective.score(model, _split_of(data, split, device), context)
    except MetricError as exc:
        raise UserError(f"{exc} (on the base model, before any candidate: fix the metric first)") from None
    except (UserError, KeyboardInterrupt, MemoryError, torch.cuda.OutOfMemoryError):
        raise
    except Exception as exc:  # the user's forward on the user's data: any error is theirs to see, with where
        raise UserError(
            f"The base model raised {type(exc).__name__} on the {split} split while rayprune measured its "
            f"{'accuracy' if objective.metric_name == 'accuracy' else objective.metric_name}, before any pruning: {exc}. Its forward "
            f"runs on every sample of the {split} split (e.g. a token id outside an nn.Embedding's "
            f"num_embeddings raises 'index out of range'): fix the data or the model.") from exc


def _check_user_loss(name: str, loss_fn: Any, model: nn.Module, data: Any, device: Any) -> None:
    """``engine.loss`` tried once on the base model's outputs for a few train samples (no step taken): a loss that is
    not a scalar, raises, or is not finite stops the run here, before the search, not in every candidate's fine-tune."""
    import math

    from .engine.train import checked_loss

    xb, yb = next(iter(data.source("train").batches(8, device=device)))
    was = model.training
    try:
        model.eval()
        loss = checked_loss(loss_fn, model(xb), yb)
    except UserError as exc:
        raise UserError(f"{str(exc).rstrip('.')} (engine.loss {name!r} on the base model's outputs, before the "
                        "search).") from None
    except Exception as exc:  # the user's function on the user's outputs
        raise UserError(f"engine.loss {name!r} raised {type(exc).__name__} on the base model's outputs for 8 train "
                        f"samples, before the search: {exc}") from exc
    finally:
        model.train(was)
    if not math.isfinite(float(loss.detach())):
        raise UserError(f"engine.loss {name!r} returned {float(loss.detach())} on the base model's outputs for 8 train "
                        "samples, before the search; expected a finite number.")


@dataclass
class PruningProblem:
    """A config resolved: data, base model, pruning space, costs, budgets and limits."""

    config: Config
    data: Dataset | StreamedDataset
    device: torch.device
    base_model: nn.Module
    base_info: dict[str, Any]
    architecture: dict[str, Any]
    space: PruningSpace
    costs: dict[str, CostFn]
    context: CostContext
    budgets: list[Budget]
    base_costs: dict[str, float]
    analytic: AnalyticCosts
    base_accuracy: dict[str, float] = field(default_factory=dict)
    objective: Objective = field(default_factory=resolve_objective)
    _timing: Optional[PairedTiming] = field(default=None, init=False, repr=False, compare=False)
    _splits: dict[tuple[str, Optional[int]], DataSplit] = field(default_factory=dict, init=False, repr=False,
                                                                 compare=False)

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        *,
        progress: bool = True,
        log: Callable[[str], None] = print,
        device: Optional[str] = None,
        base_costs: Optional[Mapping[str, float]] = None,
        base_accuracy: Optional[Mapping[str, float]] = None,
        train_base: bool = True,
    ) -> "PruningProblem":
        """Load the data, obtain the base model (trained and cached on first use) and assemble.

        ``train_base=False``: an untrained base model when none is cached (budget checks need only
        the architecture; see :func:`rayprune.base_model.obtain_base_model`).

        ``base_costs``/``base_accuracy`` from an earlier measurement keep every process of a sweep
        on the same budget limits.
        """
        dev = resolve_device(device or cfg.data.device)
        data = configured_dataset(cfg).to(dev)
        check_streaming_agent(cfg, data)
        model, info = obtain_base_model(cfg, data, device=dev, progress=progress, log=log, train=train_base)
        problem = cls.from_parts(cfg, data, model, info, device=dev, base_costs=base_costs, base_accuracy=base_accuracy)
        warn_if_groups_skipped(problem, log)  # once, in the driver (evaluators assemble theirs with from_parts)
        warn_if_unaligned_for_runtime(cfg, log)
        if base_accuracy is None:  # measured here (not handed over by the driver): say so once if it is chance
            check_export_opset(problem)  # before any search: a run asked for opset 99 stops here
            warn_if_carved(cfg, problem.data, log)
            warn_if_base_at_chance(problem, log)
        return problem

    @classmethod
    def from_parts(
        cls,
        cfg: Config,
        data: Dataset | StreamedDataset,
        model: nn.Module,
        base_info: dict[str, Any],
        *,
        device: torch.device,
        base_costs: Optional[Mapping[str, float]] = None,
        base_accuracy: Optional[Mapping[str, float]] = None,
        unbuildable: Optional[Sequence[str]] = None,
    ) -> "PruningProblem":
        """Assemble a problem from an already loaded dataset and base model (e.g. in a Ray actor).

        Passing the driver's ``base_costs`` keeps every process on the same budget limits (latency
        measured once, not once per process).
        """
        data = data.to(device)
        check_streaming_agent(cfg, data)
        model = model.to(device)
        try:
            data = fed_as_the_model_reads_it(model, data, cfg)
        except UserError as err:
            hint = (input_hint(data) + _channel_axis_hint(model, data)) if "does not accept inputs" in str(err) else ""
            if not hint:
                raise
            raise UserError(f"{err}{hint}") from err
        model.eval()
        example = probe_inputs(1, tuple(data.input_shape), data.input_dtype, device=device)
        space = PruningSpace(
            model, example, importance=cfg.pruning.importance, round_to=cfg.pruning.round_to,
            ignored_layers=cfg.pruning.ignored_layers, unbuildable=unbuildable,
        )
        if neon_requested(cfg):  # before the base is scored: validate says so too
            from .neon.topology import require_dense

            require_dense(space)
        lat = cfg.costs.latency
        context = CostContext(
            input_shape=tuple(data.input_shape), device=lat.device, batch_size=lat.batch_size, runtime=lat.runtime,
            threads=lat.threads, warmup=lat.warmup, repeats=lat.repeats, options=dict(cfg.costs.options),
            input_dtype=data.input_dtype, onnx_opset=cfg.export.onnx_opset,
        )
        costs = resolve_costs(cfg.cost_names(), cfg.costs.custom)
        if data.task != cfg.data.task and not is_in_memory(cfg.data.name):
            raise UserError(f"data.task is {cfg.data.task!r} but the dataset {data.name!r} is {data.task!r}.")
        objective = resolve_objective(data.task, cfg.search.metric, cfg.engine.loss, cfg.search.metric_mode)
        if base_costs is None:
            base_costs = measure_base_costs(space.base, costs, context)
        analytic = AnalyticCosts(space, CostContext(input_shape=tuple(data.input_shape), device=str(device),
                                                    input_dtype=data.input_dtype))
        if base_accuracy is None:
            base_accuracy = {split: _base_score(objective, space.base, data, split, device, context)
                             for split in ("val", "test")}
            if cfg.engine.loss is not None:
                _check_user_loss(cfg.engine.loss, objective.loss, space.base, data, device)
        return cls(
            config=cfg, data=data, device=device, base_model=space.base, base_info=dict(base_info),
            architecture=architecture_of(cfg, data), space=space, costs=costs, context=context,
            budgets=cfg.budget_list(), base_costs=dict(base_costs), analytic=analytic,
            base_accuracy=dict(base_accuracy), objective=objective,
        )

    @property
    def in_memory(self) -> bool:
        """Whether the model or the data was handed over as an object (the Python API): the problem
        cannot be rebuilt from the config, so other processes get it through :meth:`shareable`."""
        return config_in_memory(self.config)

    def shareable(self) -> dict[str, Any]:
        """What another process needs to rebuild this problem without re-training or re-measuring:
        the config, the dataset and base weights on CPU, base costs and accuracies (and the base
        module itself when it was handed over in memory: Ray pickles its class by value if it lives
        in ``__main__`` or a notebook).

        A streamed dataset ships as its torch Datasets (file paths, typically), never as tensors; one
        that cannot be pickled is a :class:`~rayprune.errors.UserTypeError` naming its class, here
        rather than deep inside Ray (:meth:`~rayprune.data.StreamedDataset.check_shippable`).
        """
        if self.data.streamed:
            self.data.check_shippable(warn_above_mb=self.config.data.max_resident_mb)
        shared = {
            "config": self.config.model_dump(mode="json"),
            "data": self.data.to("cpu"),
            "base_state": {k: v.detach().cpu() for k, v in self.base_model.state_dict().items()},
            "base_info": self.base_info,
            "base_costs": self.base_costs,
            "base_accuracy": self.base_accuracy,
            "unbuildable": [root for root, _ in self.space.unbuildable],  # the same groups in every process
        }
        if is_in_memory(self.config.model.name):
            shared["base_module"] = copy.deepcopy(self.base_model).to("cpu")
        return shared

    @classmethod
    def from_shared(cls, shared: Mapping[str, Any], *, device: Optional[str] = None) -> "PruningProblem":
        """Inverse of :meth:`shareable` (in an evaluator actor)."""
        from .config import parse_config
        from .models import load_model

        cfg = parse_config(shared["config"])
        dev = resolve_device(device or cfg.data.device)
        data = shared["data"]
        if shared.get("base_module") is not None:
            model = shared["base_module"]
        else:
            model = load_model(**architecture_of(cfg, data))
        model.load_state_dict(shared["base_state"])
        return cls.from_parts(cfg, data, model, shared["base_info"], device=dev,
                              base_costs=shared["base_costs"], base_accuracy=shared["base_accuracy"],
                              unbuildable=shared.get("unbuildable"))

    # -- budgets -------------------------------------------------------------------------------
    @property
    def limits(self) -> dict[str, float]:
        """Absolute upper limit of every budgeted cost."""
        return {b.metric: b.limit(self.base_costs[b.metric]) for b in self.budgets}

    def violations(self, costs: Mapping[str, float]) -> dict[str, float]:
        """``cost / limit - 1`` for every budget (positive = over budget)."""
        return {name: costs[name] / limit - 1.0 for name, limit in self.limits.items()}

    def feasible(self, costs: Mapping[str, float]) -> bool:
        """Whether measured ``costs`` meet every budget (the one feasibility rule, :func:`~rayprune.costs.budget.fits`)."""
        return fits(costs, self.limits)

    def analytic_limits(self) -> dict[str, float]:
        """The limits on costs that the analytic model predicts exactly (params, MACs)."""
        if not self.analytic.exact:
            return {}
        return {k: v for k, v in self.limits.items() if k in ANALYTIC_COSTS}

    # -- candidates ----------------------------------------------------------------------------
    @property
    def min_keep_counts(self) -> list[int]:
        """The smallest channel counts the space allows (``pruning.min_keep`` after rounding)."""
        return self.space.keep_counts(self.config.pruning.min_keep)

    def predicted_costs(self, counts: Sequence[int]) -> dict[str, float]:
        """Analytic params/MACs of a candidate (only where the analytic model is exact)."""
        if not self.analytic.exact:
            return {}
        return {name: self.analytic(name, counts) for name in ANALYTIC_COSTS}

    def measure(self, model: nn.Module, names: Optional[Sequence[str]] = None) -> dict[str, float]:
        """The configured costs ``names`` (default: all) of a built model; timed ones paired with the
        base model unless ``costs.latency.paired`` is off (:meth:`measure_with_raw`)."""
        return self.measure_with_raw(model, names)[0]

    def measure_with_raw(self, model: nn.Module, names: Optional[Sequence[str]] = None, *,
                         rounds: int = 1) -> tuple[dict[str, float], dict[str, float]]:
        """``(costs, raw)``: :meth:`measure`, and each paired cost's two raw medians (the candidate's
        and the base's, :func:`~rayprune.costs.paired_columns`; empty when nothing is paired); paired
        timings take ``rounds`` turns with the base (:meth:`PairedTiming.measure`)."""
        chosen = {n: self.costs[n] for n in (self.costs if names is None else names)}
        timing = self._paired_timing()
        paired = {n: f for n, f in chosen.items() if timing is not None and n in timing.costs}
        values = measure_costs(model, {n: f for n, f in chosen.items() if n not in paired}, self.context)
        raw: dict[str, float] = {}
        if paired:
            timed, raw = timing.measure(model, list(paired), rounds=rounds)
            values.update(timed)
        return {n: values[n] for n in chosen}, raw

    @property
    def paired_raw_columns(self) -> list[str]:
        """The raw columns paired timings add to a row (:func:`~rayprune.costs.paired_columns`)."""
        timing = self._paired_timing()
        return [c for name in (timing.costs if timing is not None else ()) for c in paired_columns(name)]

    def _paired_timing(self) -> Optional[PairedTiming]:
        """The paired timer of this problem's timed costs (built on first use; None when off)."""
        if self._timing is None:
            timed = {n: f for n, f in self.costs.items() if n in TIMED_COSTS}
            if not timed or not self.config.costs.latency.paired:
                return None
            self._timing = PairedTiming(self.base_model, timed, self.context, self.base_costs)
        return self._timing

    def unpruned_parameters(self) -> list[tuple[str, str, int]]:
        """``(name, type, parameters)`` of each module with parameters of its own that no prunable group edits (an
        embedding feeding a Conv1d through a transpose, a layer in pruning.ignored_layers, a group left whole), largest
        first: what no pruning.min_keep can remove. A parameter shared by several modules is counted once."""
        touched = {member.target for group in self.space.groups for member in group.members}
        whole, seen = [], set()
        for name, module in self.space.base.named_modules():
            own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
            seen.update(id(p) for p in module.parameters(recurse=False))
            if own and name not in touched:
                whole.append((name or "(the model's own)", type(module).__name__, sum(p.numel() for p in own)))
        return sorted(whole, key=lambda item: -item[2])

    def smallest_model(self) -> nn.Module:
        """The smallest model in the space: every group at ``pruning.min_keep``."""
        return self.space.build([c / g.channels for c, g in zip(self.min_keep_counts, self.space.groups)])

    def reachable(self) -> dict[str, float]:
        """Costs of the smallest model in the space: what each budget can get down to at best. A timed cost takes
        turns with the base as the quiet checks do (one noisy round refused a reachable latency budget: exit 2)."""
        from .costs.registry import QUIET_TIMING_ROUNDS, CostFunctionError

        model = self.smallest_model()
        try:
            return self.measure_with_raw(model, rounds=QUIET_TIMING_ROUNDS)[0]
        except CostFunctionError as err:  # the first pruned model a cost function sees: say which one it was
            from .costs.budget import BUILTIN_COST_NAMES

            builtin = err.cost in BUILTIN_COST_NAMES and err.cost not in self.config.costs.custom
            wrong = ("a layer whose pruning rayprune gets wrong — keep it whole with pruning.ignored_layers, and "
                     "please report it")
            if not builtin:
                blame = "a cost function must handle every model the search may build"
            elif err.cost in ("params", "macs"):
                blame = f"rayprune's own cost could not run this pruned model, so the pruned model itself does not run: {wrong}"
            else:  # latency or memory: the runtime (TorchScript, ONNX Runtime, a GPU's memory) may be what failed
                blame = (f"rayprune's own {err.cost} measurement failed on it: if the error is the model's (a shape or "
                         f"size mismatch), {wrong}; if it is the runtime's (costs.latency.runtime, memory), the "
                         "error says which")

            raise CostFunctionError(
                f"{err} (on the smallest model the search can build, every group at pruning.min_keep="
                f"{self.config.pruning.min_keep}, measured before the search to check that the budgets can be met; "
                f"{blame})", cost=err.cost) from err.__cause__

    def export(self, model: nn.Module, directory, *, plan, summary: Mapping[str, Any], torchscript: bool = True):
        """Write the pruned ``model`` (pruned by ``plan``) to ``directory`` (:func:`rayprune.pruning.save_pruned`)
        with what every export of this problem carries: the architecture, the input shape, ``summary`` (with
        ``metric``: what its accuracies are, ``accuracy``, ``neg_mse`` or the user's) and how the inputs were prepared (``preprocessing``: :func:`rayprune.data.preprocessing_of`)."""
        from .data import preprocessing_of
        from .pruning import save_pruned

        return save_pruned(model, directory, architecture=self.architecture, plan=plan,
                           input_shape=self.data.input_shape, torchscript=torchscript, input_dtype=self.data.input_dtype,
                           onnx_opset=self.config.export.onnx_opset,
                           extra={"summary": {"metric": self.objective.metric_name, **dict(summary)},
                                  "preprocessing": preprocessing_of(self.data)})

    def accuracy(self, model: nn.Module, split: str = "val", max_samples: Optional[int] = None) -> float:
        """The run's metric (top-1 accuracy unless ``search.metric`` or the task says otherwise) on
        ``split`` ('val' or 'test'), on ``max_samples`` of its samples (``search.eval_samples``: the
        first ones of resident data, a fixed subset drawn by the run's seed of streamed data)."""
        key = (split, max_samples)
        s = self._splits.get(key)
        if s is None:  # kept: a streamed subset's DataLoader (and workers) serves every candidate
            s = self._splits[key] = _split_of(self.data, split, self.device, max_samples, seed=self.config.seed)
        return self.objective.score(model, s, self.context)
