"""``rayprune sweep``: a Ray Tune Tuner over budget levels x seeds, then fronts, models and a report.

Layout of ``OUT/``::

    sweep.json            the sweep's config, id, levels and base model facts (read by --resume and report)
    tune/                 Tune's experiment directory (trial checkpoints, result.json, tuner.pkl)
    candidates/           Parquet shards, one per flush, written atomically by the trials
    candidates.parquet    every row, merged and deduplicated on row_id
    pareto.parquet        the non-dominated final models across trials (max accuracy, min every cost)
    front_history.parquet per trial, the front of its search rows after each iteration
    models/<trial>/       the exported model of every trial (load with rayprune.load_pruned)
    report.png, report.html
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import pandas as pd
import pyarrow as pa

from ..config import Config, parse_config
from ..results import merge_candidates, read_candidates, write_parquet_atomic
from .pareto import front_history, pareto_front
from .trainable import SweepSetup, placement_bundles, sweep_trial, trial_config, trial_name

__all__ = ["run_sweep", "budget_levels", "finish_sweep", "parse_levels", "TUNE_DIR"]

TUNE_DIR = "tune"
Log = Callable[[str], None]


def parse_levels(text: str) -> tuple[str, list[float]]:
    """``params=0.5,0.25,0.1`` -> ``("params", [0.5, 0.25, 0.1])``."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise ValueError(f"--budgets must look like NAME=V1,V2,... (e.g. params=0.5,0.25,0.1); got {text!r}.")
    try:
        values = [float(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--budgets {name.strip()!r}: every level must be a number; got {raw!r}.") from None
    if not values:
        raise ValueError(f"--budgets {name.strip()!r} has no levels.")
    return name.strip(), values


def budget_levels(cfg: Config) -> list[dict[str, float]]:
    """Every budget level of the sweep: the product of ``sweep.budgets``, or the single ``budgets``."""
    if cfg.sweep.budgets:
        names = list(cfg.sweep.budgets)
        return [dict(zip(names, combo)) for combo in itertools.product(*(cfg.sweep.budgets[n] for n in names))]
    if not cfg.budgets:
        raise ValueError("Nothing to sweep: set sweep.budgets (e.g. {params: [0.5, 0.25, 0.1]}) or pass "
                         "--budgets params=0.5,0.25,0.1.")
    return [{b.metric: b.value for b in cfg.budget_list()}]


def _check_levels(cfg: Config, levels: list[dict[str, float]]) -> None:
    """Validate every level (range, relative/absolute) before anything starts."""
    for level in levels:
        budgets = {n: {"value": v, "relative": cfg.is_relative(n)} for n, v in level.items()}
        parse_config(cfg.model_dump(mode="json"), source=f"budget level {level}", overrides={"budgets": budgets})


def _check_resources(cfg: Config, log: Log) -> None:
    import ray

    need: dict[str, float] = {}
    for bundle in placement_bundles(cfg):
        for k, v in bundle.items():
            need[k] = need.get(k, 0.0) + v
    have = ray.cluster_resources()
    short = {k: (v, have.get(k, 0.0)) for k, v in need.items() if have.get(k, 0.0) + 1e-9 < v}
    if short:
        parts = ", ".join(f"{k}: needs {v:g}, cluster has {h:g}" for k, (v, h) in short.items())
        if cfg.sweep.wait_for_resources:
            log(f"No trial fits on the cluster yet ({parts}); waiting for the autoscaler (sweep.wait_for_resources).")
            return
        raise ValueError(
            f"One trial's placement group (trial + {cfg.search.crl.evaluators} evaluators) cannot fit on this "
            f"cluster ({parts}). Lower search.crl.evaluators / evaluator_cpus / evaluator_gpus or sweep.trial_cpus, "
            "or set sweep.wait_for_resources: true on an autoscaling cluster."
        )
    per_trial = need.get("CPU", 0.0)
    log(f"Each trial reserves {need} (trial + {cfg.search.crl.evaluators} evaluators); "
        f"the cluster has {have.get('CPU', 0):g} CPUs / {have.get('GPU', 0):g} GPUs "
        f"-> up to {int(have.get('CPU', 0) // per_trial) if per_trial else '?'} trials at once.")


def _trainable(setup: SweepSetup, cfg: Config):
    from ray import tune

    return tune.with_resources(tune.with_parameters(sweep_trial, setup=setup),
                               tune.PlacementGroupFactory(placement_bundles(cfg)))


def run_sweep(
    cfg: Config,
    out_dir: str | Path,
    *,
    address: Optional[str] = None,
    resume: bool = False,
    log: Log = print,
    verbose: int = 1,
) -> dict[str, Any]:
    """Run (or resume) a sweep and post-process it; returns the summary also written to sweep.json."""
    from ray import tune

    from ..agents.crl import ensure_ray
    from ..job import check_reachable
    from ..problem import PruningProblem

    out = Path(out_dir).resolve()
    state_path = out / "sweep.json"
    meta = {"rayprune": "sweep", "out": str(out)}
    if cfg is not None:
        meta.update(config=cfg.name, budgets=";".join(f"{k}={','.join(f'{v:g}' for v in vs)}"
                                                      for k, vs in (cfg.sweep.budgets or {}).items()))
    ensure_ray(address, log=log, metadata=meta)
    if resume:
        if not state_path.is_file():
            raise FileNotFoundError(f"--resume: {state_path} not found; is {out} the output of a sweep?")
        state = json.loads(state_path.read_text())
        cfg = parse_config(state["config"], source=str(state_path))
        setup = SweepSetup(**state["setup"])
        tune_path = out / TUNE_DIR
        if not tune.Tuner.can_restore(str(tune_path)):
            raise FileNotFoundError(f"--resume: no restorable Tune experiment in {tune_path}.")
        log(f"Resuming sweep {setup.sweep_id} from {tune_path}")
        tuner = tune.Tuner.restore(str(tune_path), trainable=_trainable(setup, cfg),
                                   resume_unfinished=True, resume_errored=True)
    else:
        if state_path.exists():
            raise FileExistsError(f"{out} already holds a sweep; pass --resume to continue it or choose another --out.")
        levels = budget_levels(cfg)
        _check_levels(cfg, levels)
        _check_resources(cfg, log)
        out.mkdir(parents=True, exist_ok=True)
        first = parse_config(cfg.model_dump(mode="json"), overrides={"budgets": {
            n: {"value": v, "relative": cfg.is_relative(n)} for n, v in levels[0].items()}})
        problem = PruningProblem.from_config(first, log=log)  # trains and caches the base model once
        smallest = problem.reachable()
        for level in levels:
            lvl_cfg = trial_config(SweepSetup(cfg.model_dump(mode="json"), str(out), "", problem.base_costs,
                                              problem.base_accuracy, {n: cfg.is_relative(n) for n in level}), level, 0)
            for b in lvl_cfg.budget_list():
                limit = b.limit(problem.base_costs[b.metric])
                if smallest[b.metric] > limit * (1 + 1e-9):
                    raise ValueError(f"Budget level {level} cannot be met: {b.metric} <= {limit:.4g} but the smallest "
                                     f"model in the space has {smallest[b.metric]:.4g}. Drop that level or lower "
                                     "pruning.min_keep.")
        setup = SweepSetup(
            config=cfg.model_dump(mode="json"), out_dir=str(out), sweep_id=uuid.uuid4().hex[:12],
            base_costs=dict(problem.base_costs), base_accuracy=dict(problem.base_accuracy),
            relative={n: cfg.is_relative(n) for n in levels[0]},
        )
        del problem
        state = {"config": setup.config, "setup": setup.__dict__, "levels": levels, "seeds": cfg.sweep.seeds,
                 "started": time.time()}
        state_path.write_text(json.dumps(state, indent=1))
        log(f"Sweep {setup.sweep_id}: {len(levels)} budget level(s) x {cfg.sweep.seeds} seed(s) = "
            f"{len(levels) * cfg.sweep.seeds} trials -> {out}")
        tuner = tune.Tuner(
            _trainable(setup, cfg),
            param_space={"budget": tune.grid_search(levels), "seed": tune.grid_search(list(range(cfg.sweep.seeds)))},
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.sweep.max_concurrent_trials,
                                        trial_dirname_creator=lambda t: trial_name(t.config["budget"], t.config["seed"])),
            run_config=tune.RunConfig(
                name=TUNE_DIR, storage_path=str(out),
                failure_config=tune.FailureConfig(max_failures=cfg.sweep.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                verbose=verbose,
            ),
        )
    results = tuner.fit()
    errors = [str(r.error) for r in results if r.error is not None]
    summary = finish_sweep(out, log=log)
    summary["trial_errors"] = errors
    if errors:
        log(f"{len(errors)} trial(s) failed: " + "; ".join(e.splitlines()[0] for e in errors))
    return summary


def finish_sweep(out_dir: str | Path, *, log: Log = print) -> dict[str, Any]:
    """Merge rows, compute fronts, write the report; safe to run again on a finished sweep."""
    from ..report import make_report, summary_text

    out = Path(out_dir)
    state = json.loads((out / "sweep.json").read_text())
    merge_candidates(out)
    rows = read_candidates(out)
    cfg = parse_config(state["config"])
    costs = [c for c in cfg.cost_names() if c in rows.columns] if not rows.empty else []
    front = pd.DataFrame()
    if not rows.empty:
        final = rows[rows["stage"] == "final"]
        front = pareto_front(final, costs)
        write_parquet_atomic(pa.Table.from_pandas(front, preserve_index=False), out / "pareto.parquet")
        search = rows[rows["stage"] == "search"]
        history = front_history(search, costs)
        if not history.empty:
            write_parquet_atomic(pa.Table.from_pandas(history, preserve_index=False), out / "front_history.parquet")
    report = make_report(out)
    summary = {"rows": int(len(rows)), "front_size": int(len(front)), "report": str(report)}
    state["finished"] = time.time()
    state["summary"] = summary
    (out / "sweep.json").write_text(json.dumps(state, indent=1))
    log(summary_text(out))
    return summary
