"""The Ray Tune function trainable: one trial = one agent x seed, searching every budget level.

The trial's placement group holds its own bundle (index 0, ``sweep.trial_cpus``) and one bundle
per evaluator (indices 1..K), so Tune schedules the real needs of a trial and its evaluator
actors never wait for resources the trial did not reserve. The trial runs the search loop
(:class:`rayprune.search.loop.SearchRun`) over all levels of the sweep, reports after every batch
and checkpoints every ``sweep.checkpoint_seconds`` (and at the end). On a (re)start it drops the
rows it wrote after the checkpoint it resumes from — all of its rows when there is none — so a
restarted trial neither loses nor repeats a row. Selection, re-rank, final fine-tunes and export
happen once for the whole sweep, after every trial is done (:mod:`rayprune.sweeps.driver`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SweepSetup", "sweep_trial", "trial_name", "placement_bundles"]


@dataclass(frozen=True)
class SweepSetup:
    """What every trial shares (passed with ``tune.with_parameters``)."""

    config: dict[str, Any]  # the validated config, as JSON
    out_dir: str
    sweep_id: str
    base_costs: dict[str, float]
    base_accuracy: dict[str, float]
    relative: dict[str, bool] = field(default_factory=dict)
    levels: list[dict[str, Any]] = field(default_factory=list)  # Level.to_json() of every level


def trial_name(agent: str, seed: int) -> str:
    """``crl,seed=0``: readable, stable, usable as a folder name."""
    return f"{agent},seed={seed}"


def placement_bundles(cfg) -> list[dict[str, float]]:
    """Bundle 0 for the trial itself, then one per evaluator actor."""
    ev = cfg.evaluation
    return [{"CPU": float(cfg.sweep.trial_cpus)}] + [ev.bundle(ev.cpus_each) for _ in range(ev.evaluators)]


def sweep_trial(config: dict[str, Any], setup: SweepSetup, shared_box: list) -> None:
    """Tune function trainable (``config = {"agent": name, "seed": n}``).

    ``shared_box``: ``[ref]`` to the driver's :meth:`~rayprune.problem.PruningProblem.shareable` in the
    object store. The trial builds its problem from it (no data loading, no base model from a cache
    that another node may not have) and its evaluators read the same object."""
    import ray
    from ray import tune

    from ..agents import SearchSpace, make_agent
    from ..config import parse_config
    from ..costs.levels import Level
    from ..evaluation.pool import EvaluatorPool
    from ..evaluation.score import score_specs
    from ..names import STAGE_SEARCH
    from ..problem import PruningProblem
    from ..results import CandidateWriter, drop_rows_after
    from ..search.loop import SearchRun

    agent, seed = str(config["agent"]), int(config["seed"])
    name = trial_name(agent, seed)
    cfg = parse_config(setup.config, source=f"trial {name}")
    problem = PruningProblem.from_shared(ray.get(shared_box[0]))
    levels = [Level.from_json(lvl) for lvl in setup.levels]
    trial_id = tune.get_context().get_trial_id() or name
    constants: dict[str, Any] = {"sweep_id": setup.sweep_id, "trial_id": trial_id, "trial_name": name,
                                 "agent": agent, "seed": seed, "stage": STAGE_SEARCH}
    tags = {"sweep": setup.sweep_id, "trial": name, "budget": ";".join(lvl.name for lvl in levels)}
    pool = EvaluatorPool.from_config(problem, cfg.evaluation, placement_group=ray.util.get_current_placement_group(),
                                     bundle_offset=1, name=name, tags=tags, shared_ref=shared_box[0])
    searcher = None
    try:
        pool.wait_ready()
        space = SearchSpace.from_problem(problem, levels)
        searcher = make_agent(agent, space, seed=seed, search=cfg.search, log=lambda m: None)
        spec, _ = score_specs(cfg)
        writer = CandidateWriter(setup.out_dir, constants=constants, name=trial_id)
        run = SearchRun(searcher, space, pool.score_batch, submit=pool.submit_batch if cfg.search.pipeline else None, spec=spec, writer=writer,
                        evaluations=cfg.search.evaluations, seed=seed)
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                run.restore(directory)
        drop_rows_after(setup.out_dir, trial_id, run.batch)  # rows past the checkpoint (or all, on a fresh start)
        from ..telemetry import Telemetry

        telemetry = Telemetry(tags)
        last_save, metrics = time.monotonic(), {}
        while not run.done:
            metrics = {**run.step(), "trial_name": name, "done": run.done}
            run.publish(telemetry, metrics)
            if run.done or time.monotonic() - last_save >= cfg.sweep.checkpoint_seconds:
                drained = run.drain()  # a checkpoint holds no batch in flight (its metrics replace this one's)
                if drained is not None:
                    metrics = {**drained, "trial_name": name, "done": run.done}
                    run.publish(telemetry, metrics)
                with tempfile.TemporaryDirectory() as directory:
                    run.save(directory)
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
                last_save = time.monotonic()
            else:
                tune.report(metrics)
        if not metrics.get("done"):  # restored after the last batch: report once, with a checkpoint
            with tempfile.TemporaryDirectory() as directory:
                run.save(directory)
                tune.report({**run.progress(), "trial_name": name, "done": True},
                            checkpoint=tune.Checkpoint.from_directory(directory))
    finally:
        if searcher is not None:
            searcher.close()
        pool.shutdown()
