"""The Ray Tune function trainable: one trial = one budget level x seed.

The trial's placement group holds its own bundle (index 0, ``sweep.trial_cpus``) and one bundle
per evaluator (indices 1..K), so Tune schedules the real needs of a trial and its evaluator
actors never wait for resources the trial did not reserve. Every iteration reports the trial's
metrics together with a checkpoint (policy, optimiser, multipliers, search counters); on a
restart the trial resumes from ``tune.get_checkpoint()`` and drops the rows it had written after
that checkpoint, so no row is lost or duplicated. At the end the best feasible candidate is
fine-tuned for ``search.final_finetune`` on an evaluator and exported under ``OUT/models/``.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

__all__ = ["SweepSetup", "sweep_trial", "trial_config", "trial_name", "placement_bundles"]


@dataclass(frozen=True)
class SweepSetup:
    """What every trial shares (passed with ``tune.with_parameters``)."""

    config: dict[str, Any]  # the validated config, as JSON
    out_dir: str
    sweep_id: str
    base_costs: dict[str, float]
    base_accuracy: dict[str, float]
    relative: dict[str, bool] = field(default_factory=dict)


def trial_name(budget: dict[str, float], seed: int) -> str:
    """``params=0.25,seed=0``: readable, stable, usable as a folder name."""
    return ",".join(f"{k}={v:g}" for k, v in budget.items()) + f",seed={seed}"


def trial_config(setup: SweepSetup, budget: dict[str, float], seed: int):
    """The run config of one trial: the sweep config with this level's budgets and seed."""
    from ..config import parse_config

    budgets = {name: {"value": float(v), "relative": setup.relative.get(name)} for name, v in budget.items()}
    data = {**setup.config, "budgets": budgets}
    return parse_config(data, source=f"trial {trial_name(budget, seed)}")


def placement_bundles(cfg) -> list[dict[str, float]]:
    """Bundle 0 for the trial itself, then one per evaluator actor."""
    crl = cfg.search.crl
    evaluator = {"CPU": float(crl.evaluator_cpus)}
    if crl.evaluator_gpus:
        evaluator["GPU"] = float(crl.evaluator_gpus)
    return [{"CPU": float(cfg.sweep.trial_cpus)}] + [dict(evaluator) for _ in range(crl.evaluators)]


def sweep_trial(config: dict[str, Any], setup: SweepSetup) -> None:
    """Tune function trainable (``config = {"budget": {...}, "seed": n}``)."""
    import ray
    from ray import tune

    from ..agents.crl import CRLSearch
    from ..problem import PruningProblem
    from ..results import CandidateWriter, drop_rows_after

    budget, seed = dict(config["budget"]), int(config["seed"])
    name = trial_name(budget, seed)
    cfg = trial_config(setup, budget, seed)
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None,
                                         base_costs=setup.base_costs, base_accuracy=setup.base_accuracy)
    trial_id = tune.get_context().get_trial_id() or name
    constants: dict[str, Any] = {"sweep_id": setup.sweep_id, "trial_id": trial_id, "trial_name": name,
                                 "agent": "crl", "seed": seed, "stage": "search"}
    for b in problem.budgets:
        constants[f"budget_{b.metric}"] = b.value
        constants[f"limit_{b.metric}"] = problem.limits[b.metric]
    search = CRLSearch(problem, out_dir=setup.out_dir, constants=constants, seed=seed,
                       placement_group=ray.util.get_current_placement_group(), bundle_offset=1)
    total = cfg.search.crl.iterations
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                search.restore(directory)
        metrics: dict[str, Any] = {}
        while search.iteration < total:
            metrics = search.step()
            with tempfile.TemporaryDirectory() as directory:
                search.save(directory)
                tune.report({**metrics, "trial_name": name, "done": False},
                            checkpoint=tune.Checkpoint.from_directory(directory))
        # final: a finished-but-not-recorded trial may come back here; drop its earlier final row
        drop_rows_after(setup.out_dir, trial_id, total)
        rows = search.rows()
        ok = rows[(rows["status"] == "ok") & rows["feasible"].astype(bool)] if not rows.empty else rows
        final: dict[str, Any] = {"final_accuracy": None, "export_path": None}
        if not ok.empty:
            best = ok.sort_values(["accuracy", "params"] if "params" in ok.columns else ["accuracy"],
                                  ascending=[False, True] if "params" in ok.columns else [False]).iloc[0]
            export_dir = str(Path(setup.out_dir) / "models" / name)
            summary = search.pool.finalize([float(r) for r in best["keep_ratios"]], seed=seed, export_dir=export_dir,
                                           extra={"trial_name": name, "budgets": budget})
            writer = CandidateWriter(setup.out_dir, constants=constants, name=f"{trial_id}-final")
            row = {**best.to_dict(), "stage": "final", "iteration": total + 1, "cached": False,
                   "finetune_iterations": summary["finetune_iterations"], "accuracy": summary["accuracy_val"],
                   "accuracy_final": summary["accuracy_test"], "feasible": summary["feasible"],
                   "export_path": export_dir, "t_finetune_s": summary["finetune_seconds"],
                   **{c: summary[c] for c in problem.costs}}
            row.pop("row_id", None)
            row.pop("timestamp", None)
            writer.add(row)
            writer.flush()
            final = {"final_accuracy": summary["accuracy_val"], "final_test_accuracy": summary["accuracy_test"],
                     "export_path": export_dir, **{f"final_{c}": summary[c] for c in problem.costs}}
        tune.report({**metrics, **final, "trial_name": name, "done": True})
    finally:
        search.close()
