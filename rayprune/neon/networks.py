"""NEON's random base networks: sampled per the method, trained as Ray tasks, cached on disk.

A :class:`NetworkSpec` is one random MLP for one suite dataset (METHODS.md §2): 1–6 hidden layers,
widths drawn from a configurable set (default {16, 32, 64, 128} so the suite trains on 2 CPUs in
minutes; the paper's {100, 200, …, 1000} is one setting away), Dropout / BatchNorm / nothing before
every Linear (⅓ each) and ReLU / Tanh / Sigmoid after every hidden Linear (90 / 5 / 5 %). It is
built with the zoo's ``mlp`` and trained with Adam and early stopping
(:func:`~rayprune.neon.training.train_early_stopping`).

Trained networks are cached under a content hash of everything that decides their weights (spec,
training settings, data split, torch version): ``<cache>/<dataset>-<key>.pt`` (a state dict, loaded
with ``weights_only=True``) and ``<dataset>-<key>.json`` (spec + training metadata: validation and
test accuracy, parameters, epochs, seconds). Writes are atomic, so a task that Ray retries, or two
runs sharing a cache, cannot leave a torn file.

Example::

    specs = sample_network_specs(["iris", "wine"], per_dataset=2, settings=NetworkSettings(), seed=0)
    records = ensure_networks(specs, NetworkCache("~/.cache/rayprune/neon-networks"),
                              NetworkSettings(), SuiteSplit(seed=0))     # Ray tasks if Ray is up
    model = records[0].load()
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rayprune._io import atomic_torch_save, atomic_write_text
from rayprune.engine import evaluate
from rayprune.models import build_model
from rayprune.neon.suite import SuiteSplit
from rayprune.neon.training import RetrainSettings, train_early_stopping

__all__ = [
    "NetworkCache",
    "NetworkRecord",
    "NetworkSettings",
    "NetworkSpec",
    "default_network_cache",
    "ensure_networks",
    "sample_network_spec",
    "sample_network_specs",
    "train_network",
]


@dataclass(frozen=True)
class NetworkSettings:
    """How random networks are drawn and trained (plain mirror of ``NeonNetworksConfig``)."""

    widths: tuple[int, ...] = (16, 32, 64, 128)
    min_layers: int = 1
    max_layers: int = 6
    pre_layer_probs: tuple[tuple[str, float], ...] = (("dropout", 1 / 3), ("batchnorm", 1 / 3), ("none", 1 / 3))
    activation_probs: tuple[tuple[str, float], ...] = (("relu", 0.9), ("tanh", 0.05), ("sigmoid", 0.05))
    dropout: float = 0.2
    train: RetrainSettings = field(default_factory=lambda: RetrainSettings(max_epochs=60, patience=8, max_samples=None))

    @classmethod
    def from_config(cls, section) -> "NetworkSettings":
        """From a :class:`rayprune.config.NeonNetworksConfig`."""
        return cls(
            widths=tuple(section.widths), min_layers=section.min_layers, max_layers=section.max_layers,
            pre_layer_probs=tuple(section.pre_layer_probs.items()),
            activation_probs=tuple(section.activation_probs.items()), dropout=section.dropout,
            train=RetrainSettings.from_config(section.train),
        )


@dataclass(frozen=True)
class NetworkSpec:
    """One random MLP for one suite dataset; ``seed`` decides its initial weights and batches."""

    dataset: str
    hidden_sizes: tuple[int, ...]
    pre_layer: tuple[str, ...]  # one per Linear, output layer included
    activations: tuple[str, ...]  # one per hidden layer
    dropout: float = 0.2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.hidden_sizes:
            raise ValueError("'hidden_sizes' must hold at least one hidden layer; got none.")
        if len(self.pre_layer) != len(self.hidden_sizes) + 1 or len(self.activations) != len(self.hidden_sizes):
            raise ValueError(
                f"'pre_layer' needs {len(self.hidden_sizes) + 1} entries and 'activations' "
                f"{len(self.hidden_sizes)}; got {len(self.pre_layer)} and {len(self.activations)}."
            )

    def model_kwargs(self) -> dict[str, Any]:
        """Options of the zoo's ``mlp`` (``build_model("mlp", **kwargs)``)."""
        return {"hidden_sizes": list(self.hidden_sizes), "pre_layer": list(self.pre_layer),
                "activations": list(self.activations), "dropout": self.dropout}

    def build(self, in_features: int, num_classes: int) -> nn.Module:
        """The untrained network, initialised from ``seed`` (the global RNG is left as it was)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return build_model("mlp", num_classes=num_classes, in_features=in_features, **self.model_kwargs())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "NetworkSpec":
        return cls(dataset=d["dataset"], hidden_sizes=tuple(d["hidden_sizes"]), pre_layer=tuple(d["pre_layer"]),
                   activations=tuple(d["activations"]), dropout=float(d["dropout"]), seed=int(d["seed"]))


def _choice(rng: np.random.Generator, probs: Sequence[tuple[str, float]], size: int) -> list[str]:
    names = [n for n, _ in probs]
    p = np.array([v for _, v in probs], dtype=np.float64)
    return [str(c) for c in rng.choice(names, size=size, p=p / p.sum())]


def sample_network_spec(rng: np.random.Generator, dataset: str, settings: NetworkSettings) -> NetworkSpec:
    """Draw one random network for ``dataset`` from ``rng`` (see the module docstring).

    Example:
        >>> spec = sample_network_spec(np.random.default_rng(0), "iris", NetworkSettings(widths=(8,)))
        >>> set(spec.hidden_sizes), 1 <= len(spec.hidden_sizes) <= 6
        ({8}, True)
    """
    depth = int(rng.integers(settings.min_layers, settings.max_layers + 1))
    widths = [int(w) for w in rng.choice(settings.widths, size=depth)]
    return NetworkSpec(
        dataset=dataset, hidden_sizes=tuple(widths),
        pre_layer=tuple(_choice(rng, settings.pre_layer_probs, depth + 1)),
        activations=tuple(_choice(rng, settings.activation_probs, depth)),
        dropout=settings.dropout, seed=int(rng.integers(2**31)),
    )


def sample_network_specs(
    datasets: Iterable[str], per_dataset: int, settings: NetworkSettings, seed: int
) -> list[NetworkSpec]:
    """``per_dataset`` random networks for each dataset; the same arguments give the same specs.

    Each dataset draws from its own generator (seeded by ``seed`` and the dataset's name), so a
    dataset gets the same networks whichever other datasets are chosen — leave-one-group-out folds
    share their cached networks with a pretraining on the whole suite.
    """
    specs = []
    for d in datasets:
        rng = np.random.default_rng([int(seed), zlib.crc32(d.encode())])
        specs += [sample_network_spec(rng, d, settings) for _ in range(per_dataset)]
    return specs


CACHE_VERSION = 2
"""Bumped when the network code (zoo ``mlp``, training) changes what a spec trains into."""


@functools.lru_cache(maxsize=256)
def data_fingerprint(dataset: str, split: SuiteSplit) -> str:
    """Hash of a suite dataset's split tensors: a change in the suite's generators, scaling or the
    libraries shipping the data gives new keys instead of silently reusing stale networks."""
    data = split.load(dataset)
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_val, data.y_val, data.x_test, data.y_test):
        digest.update(np.ascontiguousarray(t.numpy()).tobytes())
    return digest.hexdigest()[:16]


def network_key(spec: NetworkSpec, train: RetrainSettings, split: SuiteSplit) -> str:
    """Content hash of everything that decides a trained network's weights (spec, training, the
    data itself, torch version, :data:`CACHE_VERSION`)."""
    split_fields = asdict(split)
    if split_fields["scale"] == 1:  # the suite as it was before `scale`: existing caches keep their keys
        del split_fields["scale"]
    payload = {"spec": spec.to_dict(), "train": train.to_dict(), "split": split_fields,
               "torch": torch.__version__.split("+")[0], "data": data_fingerprint(spec.dataset, split),
               "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def train_network(spec: NetworkSpec, split: SuiteSplit, train: RetrainSettings) -> tuple[dict, dict[str, Any]]:
    """Train ``spec`` on its dataset; returns ``(state_dict, metadata)``."""
    data = split.load(spec.dataset)
    model = spec.build(int(data.input_shape[0]), int(data.num_classes))
    stats = train_early_stopping(model, data, train, seed=spec.seed)
    model.eval()
    meta = {
        "spec": spec.to_dict(), "train": train.to_dict(), "split": asdict(split),
        "in_features": int(data.input_shape[0]), "num_classes": int(data.num_classes),
        "val_accuracy": float(evaluate(model, data.x_val, data.y_val)),
        "test_accuracy": float(evaluate(model, data.x_test, data.y_test)),
        "params": int(sum(p.numel() for p in model.parameters())),
        "epochs": stats["epochs"], "seconds": stats["seconds"],
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, meta


def default_network_cache() -> Path:
    """``$RAYPRUNE_CACHE/neon-networks`` (default ``~/.cache/rayprune/neon-networks``)."""
    from rayprune.config import default_cache_dir

    return default_cache_dir() / "neon-networks"


@dataclass(frozen=True)
class NetworkRecord:
    """A trained, cached network: its spec, cache key, file and training metadata."""

    spec: NetworkSpec
    key: str
    path: str
    meta: dict

    def load(self) -> nn.Module:
        """The trained network in eval mode (weights loaded with ``weights_only=True``)."""
        model = self.spec.build(int(self.meta["in_features"]), int(self.meta["num_classes"]))
        model.load_state_dict(torch.load(self.path, map_location="cpu", weights_only=True))
        return model.eval()


class NetworkCache:
    """Trained networks on disk, keyed by :func:`network_key`."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory).expanduser()

    def paths(self, spec: NetworkSpec, key: str) -> tuple[Path, Path]:
        stem = self.directory / f"{spec.dataset}-{key}"
        return stem.with_suffix(".pt"), stem.with_suffix(".json")

    def get(self, spec: NetworkSpec, train: RetrainSettings, split: SuiteSplit) -> NetworkRecord | None:
        key = network_key(spec, train, split)
        weights, meta = self.paths(spec, key)
        if not (weights.is_file() and meta.is_file()):
            return None
        return NetworkRecord(spec, key, str(weights), json.loads(meta.read_text()))

    def put(self, spec: NetworkSpec, train: RetrainSettings, split: SuiteSplit, state: dict, meta: dict) -> NetworkRecord:
        key = network_key(spec, train, split)
        weights, meta_path = self.paths(spec, key)
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_torch_save(state, weights)  # weights first: a record counts once its .json exists
        atomic_write_text(meta_path, json.dumps({**meta, "key": key}, indent=1))
        return NetworkRecord(spec, key, str(weights), {**meta, "key": key})


def _train_task(spec_dict: dict, split: SuiteSplit, train: RetrainSettings) -> tuple[dict, dict[str, Any]]:
    """A Ray task: train one network and hand back its weights and metadata (the driver caches
    them, so the cache lives where the driver runs, whichever node trained the network)."""
    torch.set_num_threads(1)  # one CPU per task: many small trainings side by side beat threads
    return train_network(NetworkSpec.from_dict(spec_dict), split, train)


def ensure_networks(
    specs: Sequence[NetworkSpec],
    cache: NetworkCache,
    settings: NetworkSettings,
    split: SuiteSplit,
    *,
    parallel: bool = True,
    log: Callable[[str], None] = lambda message: None,
) -> list[NetworkRecord]:
    """Every spec trained and cached, in order; missing ones are trained as Ray tasks (one CPU
    each) when ``parallel`` and Ray is initialised, else one after the other in this process."""
    records: list[NetworkRecord | None] = [cache.get(s, settings.train, split) for s in specs]
    missing = [i for i, r in enumerate(records) if r is None]
    if missing:
        log(f"Training {len(missing)} of {len(specs)} random networks ({len(specs) - len(missing)} cached) "
            f"in {cache.directory}")
        import importlib.util

        use_ray = parallel and importlib.util.find_spec("ray") is not None
        if use_ray:
            import ray

            use_ray = ray.is_initialized()
        if use_ray:
            task = ray.remote(num_cpus=1, max_retries=2)(_train_task)
            pending = {task.remote(specs[i].to_dict(), split, settings.train): i for i in missing}
            done = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                state, meta = ray.get(ready[0])
                i = pending[ready[0]]
                records[i] = cache.put(specs[i], settings.train, split, state, meta)
                done += 1
                if done % 10 == 0 or done == len(missing):
                    log(f"  {done}/{len(missing)} networks trained")
                pending.pop(ready[0])
        else:
            for n, i in enumerate(missing, 1):
                state, meta = train_network(specs[i], split, settings.train)
                records[i] = cache.put(specs[i], settings.train, split, state, meta)
                if n % 10 == 0 or n == len(missing):
                    log(f"  {n}/{len(missing)} networks trained")
    return records
