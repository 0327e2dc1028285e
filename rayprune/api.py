"""The Python API: prune or sweep a model you hold in memory, from a notebook or a script.

``rayprune.prune`` and ``rayprune.sweep`` take a trained ``nn.Module`` (or a model name, as in a
config), the data (a :class:`rayprune.data.Dataset`, ``(x, y)`` splits, torch Datasets, or a data
name), budgets as a dict, and any config section as a keyword argument. They build the same
validated :class:`rayprune.config.Config` as a YAML file would — the same checks, the same errors —
and run the same code as ``rayprune prune`` / ``rayprune sweep``
(:func:`rayprune.search.prune.run_prune`, :func:`rayprune.sweeps.driver.run_sweep`); the command
line is the YAML front end of the same two functions.

A model handed over as an object is used as the trained base model (never retrained) and travels
to the evaluator actors through Ray's object store; a model named by string is built, and trained
and cached when it has no checkpoint, exactly as from a config.

Example (the embedded data; about a minute on 2 CPU cores)::

    import rayprune
    from rayprune.data import load_dataset
    from rayprune.models import load_model

    data = load_dataset("digits")
    net = load_model("small_cnn", num_classes=10, in_channels=1)
    ...                                                   # train net on data.x_train / data.y_train
    result = rayprune.prune(net, data, budgets={"params": 0.5}, agent="evolution",
                            search={"evaluations": 64}, out="runs/nb")
    result.model                # the pruned, fine-tuned nn.Module
    result.summary["pruned"]    # its costs and accuracies
    result.candidates           # every scored candidate (pandas)

    front = rayprune.sweep(net, data, levels={"params": [0.5, 0.25]}, out="runs/nb-sweep")
    front.front                 # the Pareto front (pandas); front.models["params=0.25"] is a model
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Optional, Union

from .errors import UserError, UserTypeError
from .names import in_memory_name, is_in_memory

if TYPE_CHECKING:  # imported lazily: `import rayprune` stays light
    import pandas as pd
    from torch import nn

    from .config import Config
    from .problem import PruningProblem

__all__ = ["prune", "sweep", "PruneResult", "SweepResult", "build_config"]

Log = Callable[[str], None]
ConfigLike = Union[str, Path, Mapping[str, Any], "Config", None]


@dataclass
class PruneResult:
    """What :func:`prune` returns: the pruned model, its summary, every candidate, and where it all is."""

    model: "nn.Module"
    summary: dict[str, Any]
    candidates: "pd.DataFrame"
    out: Path

    @property
    def feasible(self) -> bool:
        """Whether the exported model meets every budget (measured)."""
        return bool(self.summary.get("feasible"))

    def __repr__(self) -> str:
        from .search.prune import summary_table

        return f"PruneResult(out={str(self.out)!r}, candidates={len(self.candidates)})\n{summary_table(self.summary)}"


@dataclass
class SweepResult:
    """What :func:`sweep` returns: the Pareto front, one model per level, every candidate."""

    front: "pd.DataFrame"
    models: dict[str, "nn.Module"]
    candidates: "pd.DataFrame"
    summary: dict[str, Any]
    out: Path
    levels: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        head = (f"SweepResult(out={str(self.out)!r}, levels={list(self.models)}, front={len(self.front)} model(s), "
                f"candidates={len(self.candidates)})")
        try:  # the front as `rayprune report` prints it (a prune result prints its table too)
            from .report import summary_text

            return f"{head}\n{summary_text(self.out)}"
        except (OSError, ValueError, KeyError):  # the directory moved or was removed since: the counts alone
            return head


# -- config ------------------------------------------------------------------------------------------
def _budget_entry(name: str, value: Any) -> Any:
    """A budgets value as the config takes it: a number, ``{"value", "relative"}``, or a string as on
    the command line (``"25%"``, ``"abs:2e8"``, ``"rel:0.5"``)."""
    if isinstance(value, str):
        from .costs.budget import parse_budget

        b = parse_budget(f"{name}={value}")
        return {"value": b.value, "relative": b.relative}
    return value


def _base_dict(config: ConfigLike) -> dict[str, Any]:
    from .config import Config, load_config

    if config is None:
        return {}
    if isinstance(config, Config):
        return config.model_dump(mode="json")
    if isinstance(config, (str, Path)):
        return load_config(config).model_dump(mode="json")
    if isinstance(config, Mapping):
        return dict(config)
    raise UserTypeError(f"config= must be a YAML path, a dict or a rayprune.config.Config; got {type(config).__name__}.")


def _argument_names() -> list[str]:
    """The keyword arguments of :func:`build_config` that are not config sections (for did-you-mean hints)."""
    import inspect

    return [a for a in inspect.signature(build_config).parameters if a not in ("config", "sections")]


def _check_section_name(key: str, value: Any) -> None:
    """A keyword that is neither an argument nor a config section is a typo (``evaluatoins=8``): name it, with
    the argument or section it resembles and, for a search setting, where it belongs."""
    import difflib

    from .config import Config
    from .config.search import SearchConfig

    sections = list(Config.model_fields)
    if key in sections:
        return
    arguments = _argument_names()
    close = list(dict.fromkeys(difflib.get_close_matches(key, [*arguments, *sections], n=2)))  # budgets is both
    search = difflib.get_close_matches(key, list(SearchConfig.model_fields), n=1, cutoff=0.75)
    raise UserError(f"{key}= is neither an argument of this function nor a config section"
                    + (f" (did you mean {' or '.join(c + '=' for c in close)}?)" if close else "")
                    + f"; the sections are {', '.join(sections)}"
                    + (f"; a setting of the search goes in search={{...}}, e.g. search={{{search[0]!r}: {value!r}}}"
                       if search else "") + ".")


def _model_and_data(model: Any, data: Any, sections: dict[str, Any]) -> tuple[Any, Any, dict[str, Any]]:
    """``model`` and ``data`` as :func:`prune` and :func:`sweep` take them: positionally, or as keywords (which
    arrive in ``sections``). A keyword ``model=`` dict, or a ``data=`` dict of data settings, is that config
    section (``model={"kwargs": {...}}`` beside a positional ``"pkg:fn"``; a misspelt setting is then named by the
    config's own check); anything else given as a keyword (a ``{"train": ..., "val": ...}`` dict included) is the
    argument itself."""
    sections = dict(sections)
    given = {"model": model, "data": data}

    def is_section(key: str) -> bool:  # data= may also be a {"train", "val", "test"} dict: the data itself
        value = sections[key]
        return isinstance(value, Mapping) and (key == "model" or "train" not in value)  # a typo is the section's

    for key in ("model", "data"):
        if key not in sections or is_section(key):
            continue
        value = sections.pop(key)
        if given[key] is not None and value is not None:
            raise UserTypeError(f"{key} given twice: positionally ({_short(given[key])}) and as {key}="
                                f"{_short(value)}; pass it once (a dict as {key}= is the config's {key} section, e.g. "
                                + ('model={"kwargs": {"width": 64}}' if key == "model" else 'data={"val_fraction": 0.2}')
                                + ").")
        given[key] = value
    for key in ("model", "data"):
        section, value = sections.get(key), given[key]
        if isinstance(section, Mapping) and isinstance(value, str) and section.get("name") not in (None, value):
            raise UserError(f"{key} names two things: {value!r} (the argument) and {key}={{'name': "
                            f"{section['name']!r}, ...}}; give the name once.")
    return given["model"], given["data"], sections


def _short(value: Any) -> str:
    return repr(value) if isinstance(value, (str, int, float)) else f"a {type(value).__name__}"


def build_config(
    config: ConfigLike = None,
    *,
    model: Any = None,
    data: Any = None,
    budgets: Optional[Mapping[str, Any]] = None,
    levels: Optional[Mapping[str, Any]] = None,
    agent: Optional[str] = None,
    agents: Optional[list[str]] = None,
    evaluations: Optional[int] = None,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    task: Optional[str] = None,
    sections: Optional[Mapping[str, Any]] = None,
) -> "Config":
    """The validated config the keyword arguments of :func:`prune` / :func:`sweep` describe.

    ``config`` (a YAML path, dict or Config) is the starting point; ``sections`` are config sections
    merged into it (``search={"evaluations": 64}``); ``budgets`` and ``levels`` replace the config's
    ``budgets`` and ``sweep.budgets``. A model or dataset object is recorded under an
    ``<in-memory>`` name. Errors are the YAML path's (:class:`rayprune.config.ConfigError`).

    >>> cfg = build_config(model="small_cnn", data="digits", budgets={"params": "30%"},
    ...                    sections={"search": {"evaluations": 64}})
    >>> cfg.budget_list()[0].value, cfg.search.evaluations, cfg.search.agent
    (0.3, 64, 'random')
    """
    from .config import parse_config

    base = _base_dict(config)
    if budgets is not None:  # replace, not merge: the budgets given are the budgets
        base["budgets"] = {k: _budget_entry(k, v) for k, v in budgets.items()}
    if levels is not None:
        base["sweep"] = {**base.get("sweep", {}), "budgets": {
            k: [v] if isinstance(v, (int, float)) else list(v) for k, v in levels.items()}}
    over: dict[str, Any] = {}
    for key, value in (sections or {}).items():
        _check_section_name(key, value)
        if not isinstance(value, Mapping) and key not in ("name", "seed", "budgets"):
            import difflib

            close = difflib.get_close_matches(key, [a for a in _argument_names() if a != key], n=1, cutoff=0.8)
            raise UserTypeError(f"{key}= must be a dict of that config section's settings (e.g. "
                                f"{key}={{...}}); got {type(value).__name__}"
                                + (f" (did you mean {close[0]}={value!r}?)" if close else "") + ".")
        over[key] = value
    if model is not None:
        over["model"] = {**over.get("model", {}), "name": model if isinstance(model, str) else
                         in_memory_name(type(model).__name__)}
    task = getattr(data, "task", None) if task is None else task  # a rayprune Dataset knows its task
    data_over = {k: v for k, v in (
        ("name", None if data is None else data if isinstance(data, str) else
         in_memory_name(getattr(data, "name", "") or "")),
        ("device", device), ("task", task)) if v is not None}
    if data_over:
        over["data"] = {**over.get("data", {}), **data_over}
    if seed is not None:
        over["seed"] = seed
    search = {**over.get("search", {}), **{k: v for k, v in (("agent", agent), ("evaluations", evaluations))
                                           if v is not None}}
    if search:
        over["search"] = search
    if agents is not None:
        over["sweep"] = {**over.get("sweep", {}), "agents": list(agents)}
    return parse_config(base, source="rayprune API arguments", overrides=over)


# -- problem -----------------------------------------------------------------------------------------
def _as_dataset(data: Any, cfg: "Config", carved: Optional[list[str]] = None):
    """A :class:`rayprune.data.Dataset` (or, for torch Datasets that stream by ``data.streaming``, a
    :class:`rayprune.data.StreamedDataset`) from what the caller passed (None when the config names the data).
    ``carved``, if given, receives the splits (``val``, ``test``) that were split off the caller's train samples."""
    from .data import Dataset, StreamedDataset

    if data is None or isinstance(data, str):
        return None
    if isinstance(data, (Dataset, StreamedDataset)):
        return data
    from .data import dataset_from_splits
    from .data.factory import split_objects

    splits, options = split_objects(data, source="data= must be a rayprune.data.Dataset, a dataset name (e.g. 'digits'), or")
    if carved is not None:
        carved.extend(s for s in ("val", "test") if splits.get(s) is None)
    d = cfg.data
    options.setdefault("task", d.task)
    if options["task"] == "regression":  # class names and counts mean nothing for real-valued targets
        options = {k: v for k, v in options.items() if k in ("task", "target_names")}
    return dataset_from_splits(splits["train"], splits.get("val"), splits.get("test"), **options,
                               val_fraction=d.val_fraction, test_fraction=d.test_fraction, seed=cfg.seed,
                               streaming=d.streaming, max_resident_mb=d.max_resident_mb, num_workers=d.num_workers)


def _problem(model: Any, data: Any, cfg: "Config", out: Path, *, progress: bool, log: Log,
             reuse: bool = False) -> Optional["PruningProblem"]:
    """The pruning problem for objects in memory (None when the config names both model and data:
    then the run builds it from the config, the cache included, as the command line does). ``reuse``: a named
    model's base trained on in-memory data is loaded from ``out`` (a resumed sweep's) instead of trained again."""
    from torch import nn

    from .base_model import obtain_base_model
    from .problem import (
        PruningProblem,
        check_export_opset,
        configured_dataset,
        resolve_device,
        warn_if_base_at_chance,
        warn_if_carved,
        warn_if_groups_skipped,
        warn_if_unaligned_for_runtime,
    )

    if model is not None and not isinstance(model, (nn.Module, str)):
        raise UserTypeError(f"model= must be a torch.nn.Module or a model name (a zoo name or "
                            f"'package.module:factory'); got {type(model).__name__}.")
    carved: list[str] = []
    dataset = _as_dataset(data, cfg, carved)
    if not isinstance(model, nn.Module) and dataset is None:
        return None
    if isinstance(model, nn.Module) and carved:
        log(f"warning: data= has no {' or '.join(carved)} split, so rayprune split {'them' if len(carved) > 1 else 'it'} "
            f"off the samples you passed (data.val_fraction, data.test_fraction). If your model was trained on those "
            "samples, its scores (and every candidate's) are measured on training data: pass "
            '{"train": ..., "val": ..., "test": ...} with held-out samples.')
    device = resolve_device(cfg.data.device)
    if dataset is None:
        dataset = configured_dataset(cfg)
        if isinstance(model, nn.Module):  # a trained module scored on rows split off the file it may have learnt from
            warn_if_carved(cfg, dataset, log, trained_elsewhere=True)
    dataset = dataset.to(device)
    if isinstance(model, nn.Module):
        base = copy.deepcopy(model).to(device).eval()  # the caller's model is never modified
        info = {"source": "in-memory", "class": f"{type(model).__module__}.{type(model).__qualname__}"}
    else:  # a named model on in-memory data: trained (or loaded from its checkpoint) here, kept in the run
        base, info = obtain_base_model(cfg, dataset, device=device, progress=progress, log=log,
                                       save_to=None if cfg.model.checkpoint else out / "base_model.pt",
                                       retrain=cfg.model.checkpoint is None and not reuse)
    problem = PruningProblem.from_parts(cfg, dataset, base, info, device=device)
    warn_if_groups_skipped(problem, log)
    warn_if_unaligned_for_runtime(cfg, log)
    check_export_opset(problem)  # (rayprune.prune(..., export={"onnx_opset": 99}) ran the whole search)
    warn_if_base_at_chance(problem, log)
    return problem


def _unpruned_factory(model: Any) -> Optional[Callable[[], "nn.Module"]]:
    """Rebuilds the unpruned architecture of a model handed over in memory (to load its pruned export)."""
    from torch import nn

    if not isinstance(model, nn.Module):
        return None
    template = copy.deepcopy(model).to("cpu")
    return lambda: copy.deepcopy(template)


@contextlib.contextmanager
def _base_staging(out_dir: Path, *, keep_if: Optional[str] = None) -> Iterator[Path]:
    """A scratch folder for a base model trained here (a named model on in-memory data); moved into
    ``out_dir`` when the run succeeds (the run refuses a non-empty ``out_dir`` when it starts). With ``keep_if``
    (a sweep's ``sweep.json``), also when the run fails or is interrupted after it wrote that file into ``out_dir``:
    a resumed sweep then loads its base from there instead of training it again."""
    staging = Path(tempfile.mkdtemp(prefix="rayprune-base-"))

    def keep() -> None:  # all of it or none: a base_model.pt from one training with another's .json would mislead
        staged = list(staging.iterdir())
        if not any((out_dir / trained.name).exists() for trained in staged):
            for trained in staged:
                shutil.move(str(trained), out_dir / trained.name)

    try:
        yield staging
        keep()
    except BaseException:
        if keep_if is not None and (out_dir / keep_if).is_file():
            keep()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _default_out(kind: str) -> Path:
    return Path("rayprune-runs") / f"{kind}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"


# -- entry points ------------------------------------------------------------------------------------
def prune(
    model: Any = None,
    data: Any = None,
    /,
    *,
    budgets: Optional[Mapping[str, Any]] = None,
    agent: Optional[str] = None,
    evaluations: Optional[int] = None,
    config: ConfigLike = None,
    out: Optional[str | Path] = None,
    address: Optional[str] = None,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    task: Optional[str] = None,
    progress: bool = True,
    log: Optional[Log] = print,
    **sections: Any,
) -> PruneResult:
    """Prune ``model`` to ``budgets``: search, re-rank, fine-tune and export one model.

    Args:
        model: a trained ``nn.Module`` (used as it is: never retrained, never modified), or a model
            name as in a config (zoo name, ``package.module:factory``); None: the config's.
        data: a :class:`rayprune.data.Dataset`; ``(x, y)`` tensors or arrays; a torch Dataset of
            ``(x, y)`` samples; a ``(train, val[, test])`` tuple or ``{"train", "val", "test"}`` dict
            of those (missing splits are split off train); or a dataset name (``"digits"``). Objects
            are used as given (no normalisation): the model was trained on your preprocessing.
            Torch Datasets larger than ``data.max_resident_mb`` (or any, with ``data.streaming:
            true``: ``config={"data": {"streaming": True}}``) stream through a DataLoader instead of
            being read into tensors; a dict may then say ``"num_classes"`` (docs/configuration.md).
        budgets: cost name -> limit, e.g. ``{"params": 0.25, "latency_ms": 4.0}``; numbers as in a
            config (a fraction for params/MACs/peak memory, absolute otherwise) or command-line
            strings (``"25%"``, ``"abs:2e8"``).
        agent: ``random`` (default), ``crl``, ``evolution``, ``tpe``, ``uniform``, ``global``, ``neon``.
        evaluations: candidates the search scores.
        config: a starting config (YAML path, dict, or Config) the other arguments override.
        out: the run's directory (must be new or empty); default ``rayprune-runs/prune-<time>``.
        address: a Ray cluster to run on (``ray://...``, ``auto``); default a local Ray started for
            the call (or the one already running in this process).
        device: where candidates are fine-tuned and scored (``data.device``: ``auto``, ``cpu``, ``cuda``).
        task: ``classification`` (class labels; default) or ``regression`` (real-valued targets: minus
            the MSE is the default metric, MSE the loss); a rayprune Dataset brings its own.
        progress, log: progress bars, and where progress lines go (None: silent).
        **sections: config sections, e.g. ``search={"batch_size": 16, "metric": "my.mod:score"}``,
            ``evaluation={"evaluators": 2}``, ``costs={"measure": ["params", "latency_ms"]}``,
            ``pruning={"min_keep": 0.2}``, ``engine={"loss": "my.mod:loss"}``; ``model=`` and ``data=``
            given as dicts are those sections too (``prune("pkg.mod:make", data, model={"kwargs":
            {"width": 64}})``), and as anything else the arguments above.

    Returns:
        :class:`PruneResult` with ``model`` (pruned and fine-tuned, eval mode, on CPU), ``summary``
        (as ``best/summary.json``), ``candidates`` (every scored row, a DataFrame) and ``out``.

    Raises:
        rayprune.config.ConfigError: a setting is invalid (the message names its path).
        rayprune.errors.NoModelError: no scored candidate meets the budgets (every candidate is
            kept in ``out/candidates.parquet``).

    Example::

        result = rayprune.prune(net, (x, y), budgets={"params": 0.3}, search={"evaluations": 128})
        torch.save(result.model.state_dict(), "small.pt")
    """
    from .pruning import load_pruned
    from .results import read_candidates
    from .search.prune import check_out_dir, given_back_if_empty, run_prune

    model, data, sections = _model_and_data(model, data, sections)
    log_fn: Log = log if log is not None else (lambda m: None)
    cfg = build_config(config, model=model, data=data, budgets=budgets, agent=agent, evaluations=evaluations,
                       seed=seed, device=device, task=task, sections=sections)
    out_dir = Path(out) if out is not None else _default_out("prune")
    with given_back_if_empty(out_dir), _base_staging(out_dir) as staging:
        check_out_dir(out_dir)  # before the base model or the data cost anything
        problem = _problem(model, data, cfg, staging, progress=progress, log=log_fn)
        summary = run_prune(cfg, out_dir, progress=progress, log=log_fn, problem=problem, address=address)
    factory = _unpruned_factory(model) if problem is not None and is_in_memory(cfg.model.name) else None
    pruned = load_pruned(out_dir / "best", factory=factory)
    return PruneResult(model=pruned, summary=summary, candidates=read_candidates(out_dir), out=out_dir)


def sweep(
    model: Any = None,
    data: Any = None,
    /,
    *,
    levels: Optional[Mapping[str, Any]] = None,
    agents: Optional[list[str]] = None,
    seeds: Optional[int] = None,
    evaluations: Optional[int] = None,
    budgets: Optional[Mapping[str, Any]] = None,
    config: ConfigLike = None,
    out: Optional[str | Path] = None,
    address: Optional[str] = None,
    resume: bool = False,
    seed: Optional[int] = None,
    device: Optional[str] = None,
    task: Optional[str] = None,
    log: Optional[Log] = print,
    verbose: int = 0,
    **sections: Any,
) -> SweepResult:
    """Sweep budget ``levels`` with Ray Tune (agents x seeds as trials) and export one model per level.

    Args:
        model, data, config, address, seed, device, task, log, **sections: as in :func:`prune`.
        levels: cost name -> list of levels, e.g. ``{"params": [0.5, 0.25, 0.1]}``; several costs
            give their product (as ``sweep.budgets``).
        agents: searches run side by side (``["evolution", "crl"]``); default ``search.agent``.
        seeds: seeds per agent.
        budgets: the config's ``budgets`` (what :func:`prune` meets; the levels do not carry them, and the sweep
            warns about a cost they lack: a cap every level meets is a one-value list in ``levels``,
            e.g. ``{"params": [0.5, 0.25], "macs": [0.3]}``).
        out: the sweep's directory (new or empty; with ``resume=True`` an earlier sweep's).
        resume: continue the sweep in ``out`` (pass the same model and data again).
        verbose: Ray Tune's progress table (0 silent, 1 a table per status update).

    Returns:
        :class:`SweepResult` with ``front`` (the non-dominated exported models, a DataFrame),
        ``models`` (level name -> pruned nn.Module), ``candidates`` (every row) and ``out``.

    Raises:
        rayprune.errors.Interrupted: (a ``KeyboardInterrupt``) when Ctrl-C stops the trials before they finish:
            nothing is selected, every scored candidate is kept, and ``resume=True`` continues the sweep.

    Example::

        res = rayprune.sweep(net, data, levels={"params": [0.5, 0.25]}, agents=["evolution", "random"])
        res.front[["level", "accuracy", "accuracy_final", "params"]]   # validation, test accuracy
    """
    import json

    import pandas as pd

    from .config import parse_config
    from .pruning import load_pruned
    from .results import exported_rows, read_candidates, with_current_paths
    from .search.prune import check_out_dir, given_back_if_empty
    from .sweeps.driver import SWEEP_FILE, load_state, run_sweep, sweep_agents, without_unswept_neon

    model, data, sections = _model_and_data(model, data, sections)
    log_fn: Log = log if log is not None else (lambda m: None)
    out_dir = Path(out) if out is not None else _default_out("sweep")
    if resume:
        state = load_state(out_dir, what="resume")
        cfg = parse_config(state["config"], source=str(out_dir / SWEEP_FILE))
        if is_in_memory(cfg.model.name) and model is None:
            raise UserError(f"resume: the sweep in {out_dir} pruned a model handed over in memory; pass it again "
                            "(rayprune.sweep(model, data, out=..., resume=True)).")
    else:
        over = dict(sections)
        if seeds is not None:
            over["sweep"] = {**over.get("sweep", {}), "seeds": seeds}
        cfg = build_config(config, model=model, data=data, budgets=budgets, levels=levels, agents=agents,
                           evaluations=evaluations, seed=seed, device=device, task=task, sections=over)
        cfg = without_unswept_neon(cfg, sweep_agents(cfg), log_fn)  # neon's checks are prune's, not the sweep's
    # a resumed sweep of a named model on in-memory data: its base was kept in out when the sweep stopped
    kept = resume and all((out_dir / f"base_model.{ext}").is_file() for ext in ("pt", "json"))
    # a new sweep that fails before it starts (bad data, no cluster) gives back the folders it created
    with contextlib.nullcontext() if resume else given_back_if_empty(out_dir), \
            _base_staging(out_dir, keep_if=SWEEP_FILE) as staging:
        if not resume:
            check_out_dir(out_dir, what="sweep")  # before the base model or the data cost anything
        problem = _problem(model, data, cfg, out_dir if kept else staging, progress=False, log=log_fn, reuse=kept)
        summary = run_sweep(None if resume else cfg, out_dir, address=address, resume=resume, log=log_fn,
                            verbose=verbose, problem=problem, from_python=True)
    rows = with_current_paths(read_candidates(out_dir), out_dir)  # a finished sweep moved, then resumed
    finals = exported_rows(rows) if not rows.empty else rows
    factory = _unpruned_factory(model) if is_in_memory(cfg.model.name) else None
    models = {}
    for _, row in finals.iterrows():
        path = row.get("export_path")
        if isinstance(path, str) and Path(path).is_dir():
            models[str(row["level"])] = load_pruned(path, factory=factory)
    front_path = out_dir / "pareto.parquet"
    front = with_current_paths(pd.read_parquet(front_path) if front_path.is_file() else pd.DataFrame(), out_dir)
    state = json.loads((out_dir / SWEEP_FILE).read_text())
    return SweepResult(front=front, models=models, candidates=rows, summary=summary, out=out_dir,
                       levels=state.get("levels", []))
