"""The YAML configuration, validated by pydantic before anything heavy starts.

Every section forbids unknown keys, so a misspelt key is an error that names its path
(``search.finetune.iteratons``). Numbers written as strings (YAML reads ``1e-3`` as one) are
converted and checked; duplicate keys in a YAML mapping are an error instead of silently keeping
the last one.

Example::

    cfg = load_config("configs/quickstart.yaml", overrides={"search": {"agent": "random"}})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .costs.budget import RELATIVE_BY_DEFAULT, Budget

__all__ = [
    "ConfigError",
    "Config",
    "ModelConfig",
    "DataConfig",
    "TrainConfig",
    "BaseTrainingConfig",
    "PruningConfig",
    "CostsConfig",
    "LatencyConfig",
    "BudgetConfig",
    "SearchConfig",
    "CRLConfig",
    "load_config",
    "parse_config",
    "default_cache_dir",
]


class ConfigError(ValueError):
    """A configuration that does not validate; the message lists every problem with its key path."""


def default_cache_dir() -> Path:
    """``$RAYPRUNE_CACHE`` or ``~/.cache/rayprune``: where trained base models are cached."""
    return Path(os.environ.get("RAYPRUNE_CACHE", Path.home() / ".cache" / "rayprune"))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class ModelConfig(_Section):
    """The model to prune: a zoo name, ``package.module:factory`` or ``torchvision:<name>``."""

    name: str = "small_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: trained weights (a state_dict); if absent the base model is trained on first use and cached
    checkpoint: Optional[Path] = None


class DataConfig(_Section):
    """The dataset: ``mnist5k`` (embedded), ``digits``, ``cifar10``/``cifar100`` (``root``),
    ``tabular`` (``path`` + ``label``) or ``sklearn:<name>``."""

    name: str = "mnist5k"
    root: Optional[Path] = None
    path: Optional[Path] = None
    label: Optional[str] = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    max_samples: Optional[int] = Field(None, gt=0)
    #: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"

    @model_validator(mode="after")
    def _fractions(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1; got {self.val_fraction} + {self.test_fraction}."
            )
        return self


class TrainConfig(_Section):
    """An optimisation run (fine-tune): exactly one of ``iterations`` and ``epochs``."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    iterations: Optional[int] = Field(None, ge=0)
    epochs: Optional[float] = Field(None, ge=0.0)
    batch_size: int = Field(128, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_length(self) -> "TrainConfig":
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError(
                "exactly one of 'iterations' and 'epochs' must be set; "
                f"got iterations={self.iterations}, epochs={self.epochs}."
            )
        return self

    def engine_config(self):
        """The :class:`rayprune.engine.FineTuneConfig` for this section."""
        from .engine import FineTuneConfig

        return FineTuneConfig(**self.model_dump(include=set(TrainConfig.model_fields)))


class BaseTrainingConfig(TrainConfig):
    """How the base model is trained when no checkpoint is given (cached by content hash)."""

    epochs: Optional[float] = Field(8.0, ge=0.0)
    lr: float = Field(0.05, gt=0.0)
    cache_dir: Optional[Path] = None


class PruningConfig(_Section):
    """The pruning space: channel importance, rounding, lower bound of keep ratios."""

    importance: Literal["l1", "l2", "bn_scale", "random"] = "l2"
    round_to: int = Field(1, ge=1)
    min_keep: float = Field(0.1, gt=0.0, le=1.0)
    ignored_layers: list[str] = Field(default_factory=list)
    #: re-estimate BatchNorm statistics of every candidate before its search-time evaluation
    recalibrate_bn: bool = True


class LatencyConfig(_Section):
    device: str = "cpu"
    batch_size: int = Field(1, gt=0)
    threads: Optional[int] = Field(1, gt=0)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, gt=0)


class CostsConfig(_Section):
    """Which costs every candidate records, and how latency/memory are measured."""

    measure: list[str] = Field(default_factory=lambda: ["params", "macs"])
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    memory_batch_size: int = Field(1, gt=0)
    #: user costs: name -> "package.module:function" with signature f(model, context) -> float
    custom: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)


class BudgetConfig(_Section):
    """``value`` is a fraction of the base model's cost if ``relative`` (default for params, MACs and
    peak memory), else an absolute value in the cost's unit."""

    value: float
    relative: Optional[bool] = None


class CRLConfig(_Section):
    """The constrained-RL agent (PPO-Lagrangian, METHODS.md section 1) and its evaluator pool."""

    #: PPO training iterations (one rollout + update each)
    iterations: int = Field(12, gt=0)
    #: episodes (= candidates) per iteration; the train batch is episodes x prunable groups steps
    episodes_per_iteration: int = Field(8, gt=0)
    #: K episodes stepped in lockstep per env runner (K candidates in flight at once)
    num_envs: int = Field(4, gt=0)
    #: remote env runners (0: sample in the driver; a second axis of parallelism on big clusters)
    env_runners: int = Field(0, ge=0)
    evaluators: int = Field(2, gt=0)
    evaluator_cpus: float = Field(1.0, gt=0)
    evaluator_gpus: float = Field(0.0, ge=0)
    evaluator_max_restarts: int = Field(3, ge=-1)
    evaluator_max_task_retries: int = Field(3, ge=-1)
    #: [[episodes_done, finetune_iterations], ...]: search fine-tune length grows over training
    finetune_schedule: list[tuple[int, int]] = Field(default_factory=lambda: [(0, 0), (32, 20), (64, 50)])
    #: AMC-style cap on each action so analytic budgets stay reachable
    action_wall: bool = True
    lr: float = Field(3e-4, gt=0)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    cost_gae_lambda: float = Field(1.0, ge=0, le=1)
    clip_param: float = Field(0.2, gt=0)
    num_epochs: int = Field(10, gt=0)
    minibatch_size: int = Field(64, gt=0)
    entropy_coeff: float = Field(0.0, ge=0)
    hidden: list[int] = Field(default_factory=lambda: [32, 32])
    lagrange_init: float = Field(1.0, gt=0)
    lagrange_lr: float = Field(1.0, gt=0)


class SearchConfig(_Section):
    """How candidates are searched and how long each is fine-tuned."""

    agent: Literal["uniform", "random", "crl", "neon"] = "crl"
    #: candidates evaluated by the random agent
    evaluations: int = Field(16, gt=0)
    #: short fine-tune of each candidate before its search-time accuracy
    finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(iterations=50))
    #: long fine-tune of the chosen candidate before export
    final_finetune: TrainConfig = Field(default_factory=lambda: TrainConfig(iterations=600))
    #: validation samples used for search-time accuracy (None: all)
    eval_samples: Optional[int] = Field(1000, gt=0)
    crl: CRLConfig = Field(default_factory=CRLConfig)


class Config(_Section):
    """A whole rayprune run."""

    name: str = "rayprune"
    seed: int = 0
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    base_training: BaseTrainingConfig = Field(default_factory=BaseTrainingConfig)
    pruning: PruningConfig = Field(default_factory=PruningConfig)
    costs: CostsConfig = Field(default_factory=CostsConfig)
    budgets: dict[str, Union[float, BudgetConfig]] = Field(default_factory=dict)
    search: SearchConfig = Field(default_factory=SearchConfig)

    @field_validator("budgets", mode="after")
    @classmethod
    def _check_budgets(cls, budgets: dict) -> dict:
        for name, b in budgets.items():
            value, relative = (b.value, b.relative) if isinstance(b, BudgetConfig) else (b, None)
            Budget(name, float(value), name in RELATIVE_BY_DEFAULT if relative is None else relative)
        return budgets

    @model_validator(mode="after")
    def _known_costs(self) -> "Config":
        from .costs.registry import BUILTIN_COSTS

        known = set(BUILTIN_COSTS) | set(self.costs.custom)
        for where, names in (("budgets", list(self.budgets)), ("costs.measure", self.costs.measure)):
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(
                    f"{where} names unknown costs {unknown}; built-in costs are {sorted(BUILTIN_COSTS)}, "
                    "user costs must be defined under costs.custom as name: 'package.module:function'."
                )
        return self

    def budget_list(self) -> list[Budget]:
        """The budgets as :class:`~rayprune.costs.Budget` objects, relative/absolute resolved."""
        out = []
        for name, b in self.budgets.items():
            value, relative = (b.value, b.relative) if isinstance(b, BudgetConfig) else (b, None)
            out.append(Budget(name, float(value), name in RELATIVE_BY_DEFAULT if relative is None else relative))
        return out

    def cost_names(self) -> list[str]:
        """Every cost recorded per candidate: the measured ones, then any budgeted ones."""
        return list(dict.fromkeys([*self.costs.measure, *self.budgets]))


class _NoDuplicatesLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that rejects duplicate keys instead of keeping the last one."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_NoDuplicatesLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling)"
        received = err.get("input")
        detail = "" if err["type"] == "extra_forbidden" or isinstance(received, dict) else f"; got {received!r}"
        lines.append(f"  - {path}: {msg}{detail}")
    return "\n".join(lines)


def _deep_merge(base: dict, overrides: Mapping) -> dict:
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def parse_config(data: Mapping[str, Any] | None, *, source: str = "<config>", overrides: Mapping | None = None) -> Config:
    """Validate a mapping (already parsed YAML) into a :class:`Config`."""
    data = _deep_merge(dict(data or {}), overrides or {})
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | os.PathLike, *, overrides: Mapping | None = None) -> Config:
    """Read and validate a YAML config file; relative paths inside it are taken from its folder."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} not found.")
    try:
        data = yaml.load(path.read_text(), Loader=_NoDuplicatesLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level; got {type(data).__name__}.")
    cfg = parse_config(data, source=str(path), overrides=overrides)
    return _resolve_paths(cfg, path.parent)


def _resolve_paths(cfg: Config, folder: Path) -> Config:
    def fix(p: Optional[Path]) -> Optional[Path]:
        return p if p is None or p.is_absolute() else (folder / p).resolve()

    cfg.model.checkpoint = fix(cfg.model.checkpoint)
    cfg.data.root = fix(cfg.data.root)
    cfg.data.path = fix(cfg.data.path)
    return cfg
