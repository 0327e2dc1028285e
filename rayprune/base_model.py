"""The base (unpruned) model of a config: loaded from its checkpoint, or trained once and cached."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import nn

from ._io import atomic_torch_save, atomic_write_text
from .config import Config, default_cache_dir
from .data import Dataset, StreamedDataset
from .data.datasets import input_hint
from .engine import fine_tune
from .engine.objective import DataSplit, resolve_objective
from .errors import UserError
from .models import load_model

__all__ = ["architecture_of", "obtain_base_model", "base_cache_key", "weights_fingerprint"]


def architecture_of(cfg: Config, data: Dataset | StreamedDataset) -> dict[str, Any]:
    """Keyword arguments of :func:`rayprune.models.load_model` that rebuild the unpruned architecture."""
    image = data.kind in ("image", "sequence")
    return {
        "name": cfg.model.name,
        "num_classes": int(data.num_classes),
        # a sequence's model was built from its samples as one-channel images (in_channels 1), before the model
        # was seen to take them as they are: recorded as built, so that load_pruned rebuilds the same network
        "in_channels": int(data.input_shape[0]) if data.kind == "image" else 1,
        "input_size": int(data.input_shape[-1]) if image else None,
        "in_features": None if image else int(data.input_shape[0]),
        "kwargs": dict(cfg.model.kwargs),
    }


def in_channels_hint(cfg: Config, data: Any, model: Optional[nn.Module] = None) -> str:
    """When samples are read as one-channel images (1, A, B), the config's model factory takes ``in_channels`` and
    the model it builds is a Conv1d network: rayprune called it with 1, and it then has one input channel where the
    (channels, length) samples have A; say where its channel count must come from. Empty otherwise (a one-channel
    image model whose load failed for another reason gets no such hint). ``model``: the one built (None: built
    here, without weights, to look at its layers)."""
    shape = tuple(getattr(data, "input_shape", ()))
    spec = cfg.model.name
    if len(shape) != 3 or shape[0] != 1 or getattr(data, "kind", None) != "image" or ":" not in spec:
        return ""
    if model is None:
        try:
            model = load_model(**architecture_of(cfg, data))
        except Exception:  # noqa: BLE001 - no model, no hint: the error itself stands
            return ""
    layers = list(model.modules())
    if not any(isinstance(m, nn.Conv1d) for m in layers) or any(isinstance(m, (nn.Conv2d, nn.Conv3d)) for m in layers):
        return ""
    module_name, _, attr_path = spec.partition(":")
    factory: Any = sys.modules.get(module_name)  # imported by load_model before any check could fail
    for attr in attr_path.split("."):
        factory = getattr(factory, attr, None)
    try:
        takes = factory is not None and "in_channels" in inspect.signature(factory).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes:
        return ""
    return (f" (rayprune reads 2-D samples as one-channel images {shape} and so calls {spec} with in_channels=1; a "
            f"model that reads them as (channels, length), e.g. a Conv1d, is fed them as given, {shape[1:]}, but its "
            f"{shape[1]} input channels must come from elsewhere: a default, or an option of your own in "
            f"model.kwargs, e.g. {{channels: {shape[1]}}}, not in_channels)")


def weights_fingerprint(model: nn.Module) -> str:
    """A digest of a model's parameters and buffers (names, shapes, values): the same network and weights, the same
    digest, on any device.

    >>> a = nn.Linear(2, 2); weights_fingerprint(a) == weights_fingerprint(a), len(weights_fingerprint(a))
    (True, 16)
    """
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items(), key=lambda kv: kv[0]):
        if not isinstance(tensor, torch.Tensor) or tensor.is_meta:  # extra state, a meta tensor: its description
            h.update(f"{name}|{tensor!r}\n".encode())
            continue
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{tuple(tensor.shape)}|{t.dtype}\n".encode())
        if t.numel():
            h.update(memoryview(t.view(torch.uint8).numpy()))
    return h.hexdigest()[:16]


def _input_width_mismatch(message: str, input_shape: tuple) -> bool:
    """Whether a checkpoint's shape mismatches include a first layer whose input width is the data's features (the
    hint about one-hot columns helps there, not at an output layer sized for the classes).

    >>> _input_width_mismatch("0.weight: checkpoint (128, 12) vs model (128, 16).", (16,))
    True
    >>> _input_width_mismatch("3.weight: checkpoint (4, 32) vs model (3, 32).", (16,))
    False
    """
    import re

    if len(input_shape) != 1:
        return False
    pairs = re.findall(r"checkpoint \((\d+), (\d+)\) vs model \((\d+), (\d+)\)", message)
    return any(int(m_in) == input_shape[0] and int(c_in) != int(m_in) for _, c_in, _, m_in in pairs)


#: data settings added after base models were first cached: left out of the key while unset
LATER_DATA_FIELDS = ("scale", "split_column", "classes", "drop")


def base_cache_key(cfg: Config) -> str:
    """A content hash of everything that determines the trained base model."""
    payload = {
        "model": cfg.model.model_dump(mode="json", exclude={"checkpoint"}),
        # how the data is read (where, streamed or resident, by how many workers) gives the same batches
        # settings added later count only when set, so the keys of configs written before them stay (no retraining,
        # and sweeps started before them still resume)
        "data": cfg.data.model_dump(mode="json", exclude={"device", "streaming", "max_resident_mb", "num_workers",
                                                          *(f for f in LATER_DATA_FIELDS if getattr(cfg.data, f) in (None, []))}),
        "train": cfg.base_training.model_dump(mode="json", exclude={"cache_dir"}),
        "loss": cfg.engine.loss,
        "seed": cfg.seed,
        "torch": torch.__version__.split("+")[0],
        **_sources(cfg),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _sources(cfg: Config) -> dict[str, str]:
    """Digests of what the config's names point at — a user factory's source file (``model.name`` or
    ``data.name`` ``package.module:function``) and ``data.path`` / ``data.root`` — so a cached base model is not reused after
    the user edits their model code or replaces their data (a config that names them did not change)."""
    out: dict[str, str] = {}
    for field, name in (("model_source", cfg.model.name), ("data_source", cfg.data.name)):
        origin = None if name.startswith("sklearn:") else _module_file(name)
        if origin is not None:
            out[field] = _digest_sources(local_sources(origin, name.split(":")[0]))
    # a file (npz, csv) or an image folder; not CIFAR's root, which may be a shared parent of the fixed release
    for field in ("path", *(("root",) if cfg.data.name == "imagefolder" else ())):
        value = getattr(cfg.data, field)
        if value is not None and Path(value).exists():
            out[f"data_{field}"] = _digest(Path(value))
    return out


def _module_file(name: str) -> Optional[Path]:
    """The source file of ``package.module`` in a ``package.module:function`` name, if it has one."""
    if not isinstance(name, str) or name.count(":") != 1 or name.startswith("torchvision:"):
        return None
    try:
        spec = importlib.util.find_spec(name.split(":")[0])
    except (ImportError, ValueError, SyntaxError):  # find_spec imports the parent package: its __init__ may not parse
        return None  # the import error is the model's or the data's to report, with its field
    origin = Path(spec.origin) if spec is not None and spec.origin else None
    return origin if origin is not None and origin.is_file() else None


#: at most this many of a user's own source files are followed from a factory's module (then the rest is left out)
_MAX_SOURCES = 300


def local_sources(origin: Path, module: str) -> list[Path]:
    """The source files of ``module`` (at ``origin``) and of every module of the same project it imports, found
    by reading the ``import`` statements (not by running them), so that editing a building block in another file
    of the user's package invalidates the cached base model as editing the factory's own file does. "The same
    project": files under the folder the module's top-level package was imported from; libraries elsewhere
    (torch, site-packages) are not followed."""
    parts = module.split(".")
    is_pkg = origin.name == "__init__.py"
    root = origin.parents[len(parts) - 1 + int(is_pkg)]
    if _installed(root):  # an installed package (or the standard library): its own file only, not all of them
        return [origin]
    found: dict[Path, None] = {}
    queue = [(origin, module, is_pkg)]
    while queue and len(found) < _MAX_SOURCES:
        path, name, pkg = queue.pop(0)
        if path in found:
            continue
        found[path] = None
        try:
            tree = ast.parse(path.read_text(errors="replace"))
        except (OSError, SyntaxError, ValueError):
            continue  # the import itself will report it
        package = name if pkg else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: max(0, len(package.split(".")) - node.level + 1)] if package else []
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [base, *(f"{base}.{a.name}" if base else a.name for a in node.names)]
            for target in filter(None, targets):
                bits = target.split(".")
                for i in range(1, len(bits) + 1):  # a.b.c runs a/__init__, a/b/__init__ and a/b/c
                    stem = root.joinpath(*bits[:i])
                    for candidate, is_package in ((stem / "__init__.py", True), (stem.with_suffix(".py"), False)):
                        if candidate.is_file() and candidate not in found:
                            queue.append((candidate, ".".join(bits[:i]), is_package))
                            break
    return sorted(found)


def _installed(folder: Path) -> bool:
    """Whether ``folder`` is where installed packages or the standard library live (site-packages, the stdlib)."""
    import site
    import sysconfig

    roots = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    roots |= set(getattr(site, "getsitepackages", lambda: [])()) | {getattr(site, "getusersitepackages", lambda: "")()}
    resolved = folder.resolve()
    return any(r and resolved == Path(r).resolve() for r in roots) or "site-packages" in resolved.parts


def _digest_sources(paths: list[Path]) -> str:
    """One digest of several source files (their names and contents)."""
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.name}|{_digest(path)}\n".encode())
    return h.hexdigest()[:16]


#: a file larger than this has its digest remembered (``<cache>/digests.json``) by path, size, mtime and inode, so
#: that a large data file is read whole once, not by every command; the digest is always of the whole contents
_REMEMBER_BYTES = 64 * 2**20
_DIGESTS_FILE, _DIGESTS_KEPT = "digests.json", 256


def _digest(path: Path) -> str:
    """A file's contents (a large one's remembered, :data:`_REMEMBER_BYTES`); a folder's file names and sizes. Never
    a modification time alone: a copy, ``touch`` or Ray's unzip of a submitted job's working dir changes it (a
    resumed sweep was refused as "data changed" after a cluster restart), and the same size hides an edit. (A large
    file edited in place that keeps its size, inode and mtime to the nanosecond is taken as read before.)"""
    h = hashlib.sha256()
    if path.is_dir():
        for root, _, names in sorted(os.walk(path, followlinks=True)):
            for name in sorted(names):
                f = Path(root) / name
                h.update(f"{f.relative_to(path)}|{f.stat().st_size}\n".encode())
        return h.hexdigest()[:16]
    stat = path.stat()
    memo_key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
    memo_path = Path(default_cache_dir()) / _DIGESTS_FILE
    memo: dict[str, str] = {}
    if stat.st_size > _REMEMBER_BYTES:
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        if memo_key in memo:
            return memo[memo_key]
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(8 * 2**20), b""):
            h.update(chunk)
    digest = h.hexdigest()[:16]
    if stat.st_size > _REMEMBER_BYTES:
        memo = {k: v for k, v in memo.items() if k != memo_key}
        memo = dict(list(memo.items())[-(_DIGESTS_KEPT - 1):]) | {memo_key: digest}
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(memo_path, json.dumps(memo))
        except OSError:  # a read-only cache: read whole again next time
            pass
    return digest


def obtain_base_model(
    cfg: Config,
    data: Dataset | StreamedDataset,
    *,
    device: torch.device,
    progress: bool = True,
    log: Callable[[str], None] = print,
    retrain: bool = False,
    save_to: Optional[Path] = None,
    train: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained base model on ``device`` and facts about it (source, accuracies, checkpoint path).

    With ``model.checkpoint`` set, the weights are loaded from it (``weights_only=True``).
    Otherwise the model is trained with ``base_training`` on first use and cached as
    ``<cache>/base/<model>-<data>-<hash>.pt`` (``<cache>`` is ``base_training.cache_dir``, else
    ``$RAYPRUNE_CACHE``, else ``~/.cache/rayprune``; the hash covers the model, data and training
    settings, a user factory's source file, the data file's contents (a large file's digest remembered by path, size and mtime) and an
    image folder's file names and sizes), so later runs reuse it. With ``train=False`` a model that is neither in a checkpoint
    nor in the cache comes back freshly initialised (``source: "untrained"``), not trained: what
    ``rayprune validate`` needs to check budgets, which depend on the architecture only.
    """
    arch = architecture_of(cfg, data)
    if cfg.model.checkpoint is not None and not retrain:
        try:
            model = load_model(**arch, checkpoint=cfg.model.checkpoint).to(device)
        except UserError as err:
            hint = input_hint(data) if _input_width_mismatch(str(err), getattr(data, "input_shape", ())) else ""
            hint = hint or in_channels_hint(cfg, data)
            if not hint:
                raise
            raise UserError(f"{err}{hint}") from err
        return model, {"source": "checkpoint", "checkpoint": str(cfg.model.checkpoint)}
    cache_dir = Path(cfg.base_training.cache_dir or default_cache_dir()) / "base"
    key = base_cache_key(cfg)
    path = Path(save_to) if save_to else cache_dir / f"{cfg.model.name.replace(':', '_')}-{data.name}-{key}.pt"
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file() and not retrain:
        model = load_model(**arch, checkpoint=path).to(device)
        return model, {**json.loads(meta_path.read_text()), "source": "cache", "checkpoint": str(path)}
    torch.manual_seed(cfg.seed)
    model = load_model(**arch).to(device)
    # before any training: a classifier with too few outputs would fail on its first label (a raw IndexError);
    # a model whose nn.Embedding reads the input trains on the token ids as int64, as it is pruned
    from .problem import check_neon_model, fed_as_the_model_reads_it

    try:
        data = fed_as_the_model_reads_it(model, data, cfg)
    except UserError as err:
        hint = in_channels_hint(cfg, data, model)
        if not hint:
            raise
        raise UserError(f"{err}{hint}") from err
    check_neon_model(cfg, model, data)
    if not train:
        return model, {"source": "untrained", "checkpoint": None, "cache_path": str(path)}
    log(f"Training base model {cfg.model.name} on {data.name} ({cfg.base_training.epochs if cfg.base_training.epochs is not None else cfg.base_training.iterations:g}"
        f" {'epochs' if cfg.base_training.epochs is not None else 'iterations'}); cached at {path}")
    objective = resolve_objective(data.task, cfg.search.metric, cfg.engine.loss, cfg.search.metric_mode)
    stats = fine_tune(model, data, cfg.base_training.engine_config(), seed=cfg.seed,
                      progress="train base model" if progress is True else progress,
                      loss_fn=objective.loss)
    meta = {
        "val_accuracy": objective.score(model, DataSplit("val", source=data.source("val"), device=device)),
        "test_accuracy": objective.score(model, DataSplit("test", source=data.source("test"), device=device)),
        "train_seconds": stats.get("seconds"),
        "cache_key": key,
        "architecture": arch,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)
    atomic_write_text(meta_path, json.dumps(meta, indent=1))  # last: the cache counts a model once both exist
    return model, {**meta, "source": "trained", "checkpoint": str(path)}
