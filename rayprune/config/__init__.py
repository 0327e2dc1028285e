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
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence, Union

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..costs.budget import BUILTIN_COST_NAMES, RELATIVE_BY_DEFAULT, Budget, parse_level_spec

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
    "SweepConfig",
    "CRLConfig",
    "EvolutionConfig",
    "TPEConfig",
    "AdaptiveBNConfig",
    "RerankConfig",
    "EvaluationConfig",
    "NeonConfig",
    "NeonNetworksConfig",
    "NeonPretrainConfig",
    "NeonRetrainConfig",
    "NeonSuiteConfig",
    "load_config",
    "parse_config",
    "resolve_paths",
    "default_cache_dir",
]


from .base import ConfigError, default_cache_dir  # noqa: E402
from .base import Section as _Section
from .neon import (  # noqa: E402
    NeonConfig,
    NeonNetworksConfig,
    NeonPretrainConfig,
    NeonRetrainConfig,
    NeonSuiteConfig,
)
from .search import (  # noqa: E402
    AdaptiveBNConfig,
    CRLConfig,
    EvaluationConfig,
    EvolutionConfig,
    RerankConfig,
    SearchConfig,
    SweepConfig,
    TPEConfig,
)
from .train import TrainConfig  # noqa: E402


class ModelConfig(_Section):
    """The model to prune: a zoo name, ``package.module:factory`` or ``torchvision:<name>``."""

    name: str = "small_cnn"
    kwargs: dict[str, Any] = Field(default_factory=dict)
    #: trained weights (a state_dict); if absent the base model is trained on first use and cached
    checkpoint: Optional[Path] = None


#: torch device strings a config may name (``torch.device`` would accept a few more exotic ones)
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|hpu|mtia|privateuseone)(:\d+)?")


def _number_like(value: Any) -> bool:
    """A number, or text that reads as one ("0.5"); not a bool."""
    if isinstance(value, bool):
        return False
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _device(value: str, *, auto: bool) -> str:
    """``value`` if it names a torch device (or ``auto``, where allowed); else an error saying what is expected."""
    text = str(value).strip().lower()
    if (auto and text == "auto") or _DEVICE.fullmatch(text):
        return text
    expected = "'auto', " if auto else ""
    raise ValueError(f"expected a torch device: {expected}'cpu', 'cuda', 'cuda:1', 'mps', ...")


class DataConfig(_Section):
    """The dataset: ``mnist5k`` (embedded), ``digits``, ``cifar10``/``cifar100`` (``root``),
    ``tabular`` (``path`` + ``label``), ``sklearn:<name>``, ``imagefolder`` (``root``, optionally
    ``image_size``), ``npz`` (``path``) or a data factory ``package.module:function``."""

    name: str = "mnist5k"
    root: Optional[Path] = None
    path: Optional[Path] = None
    #: ``tabular``: the column holding the class, or the real-valued target (data.task: regression); a list of
    #: columns for a regression with several targets
    label: Optional[Union[str, list[str]]] = None
    #: ``imagefolder``: the side every image is resized to (needed when their sizes differ)
    image_size: Optional[int] = Field(None, gt=0)
    #: ``tabular`` and ``sklearn:*``: ``minmax`` (unset: the default) scales each column to the train split's
    #: range; ``none`` keeps the columns as the file holds them (a checkpoint trained on your own preprocessing)
    scale: Optional[Literal["minmax", "none"]] = None
    #: ``tabular``: a column of ``train``/``val``/``test`` naming each row's split (your own held-out rows; a split
    #: it lacks is split off the train rows by val_fraction/test_fraction); not a feature
    split_column: Optional[str] = None
    #: ``tabular``: the labels in the order the model was trained with (class i is classes[i]); default: numbers
    #: in numeric order, text in alphabetical order
    classes: Optional[list[Union[str, int, float, bool]]] = None
    #: ``tabular``: columns left out of the features (an id, a timestamp, another target); every other column
    #: but the label and split columns is a feature
    drop: list[str] = Field(default_factory=list)
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    test_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    max_samples: Optional[int] = Field(None, gt=0)
    #: "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    device: str = "auto"
    #: classification (integer class labels) or regression (real-valued targets: a table's label column, a data
    #: factory or data handed over in memory); sets the default metric and loss (rayprune.engine.objective)
    task: Literal["classification", "regression"] = "classification"
    #: torch Datasets (a data factory's, or handed to the Python API) stream through a DataLoader
    #: instead of being read into device-resident tensors: auto (when larger than max_resident_mb),
    #: true (always; other sources are then an error) or false (never) (rayprune.data.streaming)
    streaming: Union[Literal["auto"], bool] = "auto"
    #: the estimated size (one sample x length, as float32) above which `auto` streams, in MiB
    max_resident_mb: float = Field(1024.0, gt=0.0)
    #: DataLoader worker processes per process that reads streamed data (0: read in that process)
    num_workers: int = Field(0, ge=0)

    @field_validator("classes", mode="after")
    @classmethod
    def _class_texts(cls, classes: Optional[list]) -> Optional[list[str]]:
        """Labels as text, as a table's label column is matched: 2 -> '2', 2.0 -> '2'; YAML's unquoted yes/no are
        booleans, refused with the fix (the file's labels are the words)."""
        if classes is None:
            return None
        if any(isinstance(c, bool) for c in classes):
            raise ValueError("YAML reads unquoted yes/no/true/false as booleans; quote the labels as the file writes "
                             "them, e.g. classes: ['no', 'yes']")
        return [str(int(c)) if isinstance(c, float) and c.is_integer() else str(c) for c in classes]

    @model_validator(mode="after")
    def _fractions(self) -> "DataConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must be < 1; got {self.val_fraction} + {self.test_fraction}."
            )
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return _device(value, auto=True)


class BaseTrainingConfig(TrainConfig):
    """How the base model is trained when no checkpoint is given (cached by content hash)."""

    epochs: Optional[float] = Field(8.0, ge=0.0)
    lr: float = Field(0.05, gt=0.0)
    cache_dir: Optional[Path] = None

    @model_validator(mode="before")
    @classmethod
    def _iterations_replace_the_default_epochs(cls, data: Any) -> Any:
        """``base_training: {iterations: N}`` trains N iterations (it was refused: the default 8 epochs stayed)."""
        if isinstance(data, Mapping) and data.get("iterations") is not None and "epochs" not in data:
            return {**data, "epochs": None}
        return data


class PruningConfig(_Section):
    """The pruning space: channel importance, rounding, lower bound of keep ratios."""

    importance: Literal["l1", "l2", "bn_scale", "random"] = "l2"
    round_to: int = Field(1, ge=1)
    min_keep: float = Field(0.1, gt=0.0, le=1.0)
    ignored_layers: list[str] = Field(default_factory=list)
    #: re-estimate BatchNorm statistics of every candidate before its search-time evaluation
    recalibrate_bn: bool = True


class LatencyConfig(_Section):
    """How ``latency_ms`` is measured: the median of ``repeats`` timed forward passes after
    ``warmup`` untimed ones, run by ``runtime`` (the names of ``rayprune.costs.context.LATENCY_RUNTIMES``:
    eager ``torch``, a ``torchscript`` trace, or ``onnxruntime`` on CPU with the ``onnx`` extra).

    ``paired`` (default): every candidate's latency is timed next to the base model's, in the same
    process, and reported as that ratio times the run's base latency, so the speed of a process or a
    moment cancels (:mod:`rayprune.costs.paired`); ``false``: the candidate's own median, as measured."""

    device: str = "cpu"
    batch_size: int = Field(1, gt=0)
    threads: Optional[int] = Field(1, gt=0)
    warmup: int = Field(5, ge=0)
    repeats: int = Field(20, gt=0)
    runtime: Literal["torch", "torchscript", "onnxruntime"] = "torch"
    paired: bool = True

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        return _device(value, auto=False)

    @model_validator(mode="after")
    def _onnxruntime_on_cpu(self) -> "LatencyConfig":
        if self.runtime == "onnxruntime" and self.device.strip().lower() != "cpu":
            raise ValueError(
                f"runtime 'onnxruntime' measures on CPU; got device {self.device!r} "
                "(use device 'cpu', or runtime 'torch' or 'torchscript' on an accelerator)."
            )
        return self


class CostsConfig(_Section):
    """Which costs every candidate records, and how latency/memory are measured."""

    measure: list[str] = Field(default_factory=lambda: ["params", "macs"])
    latency: LatencyConfig = Field(default_factory=LatencyConfig)
    memory_batch_size: int = Field(1, gt=0)
    #: user costs: name -> "package.module:function" with signature f(model, context) -> float
    custom: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("custom", mode="before")
    @classmethod
    def _named_functions(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for name, fn in v.items():
                refuse_function_object(fn, f"costs.custom.{name}")
        return v


class BudgetConfig(_Section):
    """``value`` is a fraction of the base model's cost if ``relative`` (default for params, MACs and
    peak memory), else an absolute value in the cost's unit."""

    value: float
    relative: Optional[bool] = None


def refuse_function_object(value: Any, field: str) -> None:
    """A function object where a config wants a function's name: say what to write and why (the evaluators
    run in other processes and import the function by name; a config is also stored as JSON).

    >>> def mine(model, context): return 1.0
    >>> mine.__module__ = "__main__"  # defined in a notebook
    >>> refuse_function_object(mine, "costs.custom.size")
    Traceback (most recent call last):
    ...
    ValueError: costs.custom.size takes the function's name, 'package.module:function', not the function object (got mine): the evaluators run in other processes and import it by that name, and the config is stored as JSON. Put the function in a .py file on the Python path (a module next to your notebook works) and write 'that_module:mine'.
    >>> from rayprune.engine.objective import neg_mse_metric  # defined in a module: its name is known
    >>> refuse_function_object(neg_mse_metric, "search.metric")
    Traceback (most recent call last):
    ...
    ValueError: search.metric takes the function's name, 'package.module:function', not the function object (got neg_mse_metric): the evaluators run in other processes and import it by that name, and the config is stored as JSON. Write 'rayprune.engine.objective:neg_mse_metric'.
    >>> refuse_function_object("__main__:mine", "search.metric")
    Traceback (most recent call last):
    ...
    ValueError: search.metric names a function of __main__ ('__main__:mine'): the evaluators run in other processes, whose __main__ is not your script or notebook, so they cannot import it. Put the function in a .py file on the Python path (a module next to your notebook works) and write 'that_module:mine'.
    """
    if isinstance(value, str) and value.startswith("__main__:"):
        raise ValueError(
            f"{field} names a function of __main__ ({value!r}): the evaluators run in other processes, whose __main__ is "
            f"not your script or notebook, so they cannot import it. Put the function in a .py file on the Python path "
            f"(a module next to your notebook works) and write 'that_module:{value.split(':', 1)[1]}'.")
    if callable(value) and not isinstance(value, str):
        label = getattr(value, "__qualname__", None) or repr(value)
        module, name = getattr(value, "__module__", None), getattr(value, "__name__", "function")
        where = (f"Write '{module}:{name}'" if module and module != "__main__" and name == label and name.isidentifier()
                 else
                 f"Put the function in a .py file on the Python path (a module next to your notebook works) and write "
                 f"'that_module:{name}'")
        raise ValueError(
            f"{field} takes the function's name, 'package.module:function', not the function object (got {label}): "
            f"the evaluators run in other processes and import it by that name, and the config is stored as JSON. "
            f"{where}.")


def _check_function_name(v: Optional[str]) -> Optional[str]:
    if v is not None and (v.count(":") != 1 or not all(v.split(":"))):
        raise ValueError("must be written 'package.module:function'")
    return v


class ExportConfig(_Section):
    """How the exported models are written."""

    #: the ONNX opset of model.onnx (and of the model timed by costs.latency.runtime: onnxruntime): None, the
    #: exporter's default (20 with PyTorch 2.13's TorchScript-based exporter); an older runtime on a device may need
    #: e.g. 13-17 (an opset the base model cannot be written in is refused before the search: validate says so)
    onnx_opset: Optional[int] = Field(None, ge=7)


class EngineConfig(_Section):
    """How models are trained (every fine-tune, and the base model's training)."""

    #: "package.module:function" with f(outputs, targets) -> scalar tensor, minimised; None: cross-entropy
    #: for classification, MSE for regression
    loss: Optional[str] = None

    @field_validator("loss", mode="before")
    @classmethod
    def _named(cls, v: Any) -> Any:
        refuse_function_object(v, "engine.loss")
        return v

    @field_validator("loss")
    @classmethod
    def _dotted(cls, v: Optional[str]) -> Optional[str]:
        return _check_function_name(v)


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
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    sweep: SweepConfig = Field(default_factory=SweepConfig)
    neon: NeonConfig = Field(default_factory=NeonConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @model_validator(mode="before")
    @classmethod
    def _marked_sweep_levels(cls, data: Any) -> Any:
        """``sweep.budgets`` levels written as ``budgets`` takes them (``'abs:48'``, ``'90%'``, ``'rel:0.8'``): numbers,
        and a rel:/%/abs: mark sets ``sweep.relative.<cost>`` (the sweep's levels of that cost, whatever
        ``budgets.<cost>``, the single budget of ``rayprune prune``, says)."""
        sweep = data.get("sweep") if isinstance(data, Mapping) else None
        levels = sweep.get("budgets") if isinstance(sweep, Mapping) else None
        if not isinstance(levels, Mapping) or not any(
                isinstance(v, str) for vs in levels.values() if isinstance(vs, (list, tuple)) for v in vs):
            return data
        levels, marks = dict(levels), dict(sweep.get("relative") or {})
        for name, values in levels.items():
            if not isinstance(values, (list, tuple)) or not any(isinstance(v, str) for v in values):
                continue
            try:
                _, numbers, relative = parse_level_spec(f"{name}={','.join(str(v) for v in values)}")
            except ValueError as exc:  # a UserError
                raise ValueError(f"sweep.budgets.{name}: {str(exc).removeprefix('--budgets ')}") from None
            levels[name] = numbers
            if relative is None:
                continue
            if name in marks and bool(marks[name]) != relative:
                raise ValueError(f"sweep.budgets.{name}: the levels {list(values)} are "
                                 f"{'relative' if relative else 'absolute'} but sweep.relative.{name} is {marks[name]}")
            marks[name] = relative
        return {**data, "sweep": {**sweep, "budgets": levels, **({"relative": marks} if marks else {})}}

    @field_validator("budgets", mode="before")
    @classmethod
    def _budget_shapes(cls, budgets: Any) -> Any:
        """One clear message per malformed entry, instead of one per branch of the union it failed."""
        if not isinstance(budgets, Mapping):
            return budgets
        budgets = dict(budgets)
        for name, b in budgets.items():
            if isinstance(b, str) and not _number_like(b) and b.strip().startswith(("rel:", "abs:")) \
                    or isinstance(b, str) and b.strip().endswith("%"):  # as --budget and Python take them
                from ..costs.budget import parse_budget

                try:
                    parsed = parse_budget(f"{name}={b.strip()}")
                except ValueError as exc:
                    raise ValueError(f"budgets.{name}: {exc}") from None
                budgets[name] = b = {"value": parsed.value, "relative": parsed.relative}
            if isinstance(b, BudgetConfig):
                continue
            if isinstance(b, Mapping):
                unknown = sorted(set(b) - {"value", "relative"})
                if unknown or "value" not in b:
                    raise ValueError(f"budgets.{name}: expected a number or {{value: <number>, relative: <true|false>}}; "
                                     f"got keys {sorted(b)}" + (f" ({unknown} unknown)" if unknown else ""))
            elif not _number_like(b):
                raise ValueError(f"budgets.{name}: expected a number (for params, MACs and peak memory a fraction "
                                 f"of the base model's, e.g. 0.5; else a value in the cost's unit) or "
                                 f"{{value: ..., relative: ...}}; got {b!r}")
        return budgets

    @field_validator("budgets", mode="after")
    @classmethod
    def _check_budgets(cls, budgets: dict) -> dict:
        for name, b in budgets.items():
            value, relative = (b.value, b.relative) if isinstance(b, BudgetConfig) else (b, None)
            Budget(name, float(value), name in RELATIVE_BY_DEFAULT if relative is None else relative)
        return budgets

    @model_validator(mode="after")
    def _known_costs(self) -> "Config":
        known = set(BUILTIN_COST_NAMES) | set(self.costs.custom)
        for where, names in (("budgets", list(self.budgets)), ("costs.measure", self.costs.measure),
                             ("sweep.budgets", list(self.sweep.budgets))):
            unknown = [n for n in names if n not in known]
            if unknown:
                import difflib

                close = sorted({c for n in unknown for c in difflib.get_close_matches(n, sorted(known), n=1, cutoff=0.5)})
                mine = (f"this config's own costs (costs.custom) are {sorted(self.costs.custom)}" if self.costs.custom
                        else "user costs must be defined under costs.custom as name: 'package.module:function'")
                raise ValueError(
                    f"{where} names unknown costs {unknown}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
                    + f"; built-in costs are {sorted(BUILTIN_COST_NAMES)}, {mine}."
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
        """Every cost recorded per candidate: the measured ones, then any budgeted or swept ones."""
        return list(dict.fromkeys([*self.costs.measure, *self.budgets, *self.sweep.budgets]))

    def level_relative(self, name: str) -> bool:
        """Whether the sweep's levels of cost ``name`` are relative: ``sweep.relative``, else as :meth:`is_relative`."""
        return self.sweep.relative.get(name, self.is_relative(name))

    def is_relative(self, name: str) -> bool:
        """Whether a budget on cost ``name`` is relative (the ``budgets`` entry decides, else the default)."""
        b = self.budgets.get(name)
        if isinstance(b, BudgetConfig) and b.relative is not None:
            return b.relative
        return name in RELATIVE_BY_DEFAULT


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


#: keys written as another of rayprune's front ends names them (the Python API's ``levels=`` is ``sweep.budgets``)
_OTHER_NAMES = {("sweep", "levels"): "budgets", ("sweep", "budget"): "budgets"}


def _close_keys(loc: Sequence[Any]) -> list[str]:
    """The known keys of the section at ``loc[:-1]`` that look like the unknown key ``loc[-1]``, or that the key
    names elsewhere (:data:`_OTHER_NAMES`).

    >>> _close_keys(("search", "evaluatoins")), _close_keys(("search", "finetune", "iteration"))
    (['evaluations'], ['iterations'])
    >>> _close_keys(("sweep", "levels"))
    ['budgets']
    >>> _close_keys(("no_such_section", "x"))
    []
    """
    import difflib
    import typing

    from pydantic import BaseModel

    if tuple(map(str, loc)) in _OTHER_NAMES:
        return [_OTHER_NAMES[tuple(map(str, loc))]]
    cls: Any = Config
    for part in loc[:-1]:
        field = cls.model_fields.get(str(part)) if isinstance(cls, type) and issubclass(cls, BaseModel) else None
        if field is None:
            return []
        options = [field.annotation, *typing.get_args(field.annotation)]  # Optional[Section] too
        cls = next((o for o in options if isinstance(o, type) and issubclass(o, BaseModel)), None)
        if cls is None:
            return []
    return difflib.get_close_matches(str(loc[-1]), list(cls.model_fields), n=1)


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} problem(s) in the configuration:"]
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")  # pydantic's prefix for a validator's ValueError
        if err["type"] == "extra_forbidden":
            close = _close_keys(err["loc"])
            msg = f"unknown key (did you mean {' or '.join(close)}?)" if close else "unknown key (check its spelling)"
        received = err.get("input")
        detail = "" if err["type"] == "extra_forbidden" or isinstance(received, dict) else f"; got {received!r}"
        # a check across sections (a model validator) has no field path: its message names the fields itself
        # (and one that names a deeper field itself, "budgets.params: ...", is not prefixed with "budgets: " again)
        named = not path or msg.startswith(f"{path}.")
        lines.append(f"  - {msg}{detail}" if named else f"  - {path}: {msg}{detail}")
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
    return resolve_paths(cfg, path.parent)


def resolve_paths(cfg: Config, folder: str | os.PathLike) -> Config:
    """A copy of ``cfg`` whose relative paths (checkpoint, data, caches, NEON agent) are taken from
    ``folder`` (the config file's), absolute; ``cfg`` itself is left as it is."""
    folder = Path(folder)

    def fix(p: Optional[Path]) -> Optional[Path]:
        return p if p is None or p.is_absolute() else (folder / p).resolve()

    out = cfg.model_copy(deep=True)
    out.model.checkpoint = fix(out.model.checkpoint)
    out.data.root = fix(out.data.root)
    out.data.path = fix(out.data.path)
    out.base_training.cache_dir = fix(out.base_training.cache_dir)
    out.neon.checkpoint = fix(out.neon.checkpoint)
    out.neon.pretrain.networks.cache_dir = fix(out.neon.pretrain.networks.cache_dir)
    return out
