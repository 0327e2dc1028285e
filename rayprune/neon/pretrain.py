"""``rayprune pretrain``: train the NEON agent offline across random networks of the dataset suite.

In the order it runs:

1. connect to Ray with :func:`rayprune.ray_session.connect`: ``--address``, else the cluster of
   ``RAY_ADDRESS`` (as inside a submitted Ray job), else a fresh local instance;
2. pick the suite datasets (``neon.pretrain.suite``: names, groups, held-out groups);
3. draw ``networks.per_dataset`` random MLPs per dataset and train the missing ones as Ray tasks
   (one CPU each), cached on disk; networks that learnt nothing (validation accuracy no better
   than always answering the majority class) are left out of the pool;
4. PPO on RLlib's new API stack over :class:`~rayprune.neon.env.NeonVectorEnv`: ``num_envs``
   episodes per env runner in lockstep, their prune-and-retrain steps as parallel Ray tasks,
   ``env_runners`` remote runners on top (0: sample in the driver);
5. after every iteration, one row of training curves (``curves.csv``) from the episodes that
   finished in it: mean episode reward (scaled as the agent sees it, and raw), parameter-reduction
   factor, accuracy change, share within tolerance, plus the learner's entropy and losses;
6. at the end: ``policy/`` (the actor, for inference without Ray; what ``--agent-checkpoint``
   takes), ``rllib_checkpoint/`` (the whole algorithm, to resume or inspect), ``curves.png``,
   ``report.json`` and ``report.md``.

Example::

    cfg = load_config("configs/neon_pretrain.yaml")
    report = run_pretrain(cfg, "out/neon-agent")
    policy = load_policy("out/neon-agent")
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import torch

from rayprune.neon.env import EpisodeSource
from rayprune.neon.networks import (
    NetworkCache,
    NetworkRecord,
    NetworkSettings,
    default_network_cache,
    ensure_networks,
    sample_network_specs,
)
from rayprune.neon.reward import reward_scale
from rayprune.neon.settings import EpisodeSettings
from rayprune.neon.suite import SuiteSplit, resolve_datasets
from rayprune.ray_session import connect

__all__ = ["CURVE_COLUMNS", "build_network_pool", "learnt", "run_pretrain"]

Log = Callable[[str], None]

#: Columns of ``curves.csv`` (one row per PPO iteration), shared with the report and the plot.
CURVE_COLUMNS = (
    "iteration", "seconds", "env_steps", "episodes", "return_mean", "return_raw_mean", "reduction_mean",
    "accuracy_change_mean", "within_tolerance_share", "rllib_episode_return_mean", "entropy", "policy_loss",
    "vf_loss",
)


def learnt(record: NetworkRecord, split: SuiteSplit) -> bool:
    """Whether a trained network beats always answering the validation split's majority class."""
    y = split.load(record.spec.dataset).y_val
    majority = float(torch.bincount(y).max()) / max(len(y), 1)
    return float(record.meta["val_accuracy"]) > majority + 1e-9


def build_network_pool(cfg, *, log: Log = print, parallel: bool = True) -> tuple[list[NetworkRecord], dict[str, Any]]:
    """Steps 2–3: the trained networks of ``cfg.neon.pretrain`` and facts about them."""
    pre = cfg.neon.pretrain
    datasets = resolve_datasets(pre.suite.datasets, pre.suite.groups, pre.suite.exclude_groups)
    settings = NetworkSettings.from_config(pre.networks)
    split = SuiteSplit.from_config(pre.suite, cfg.seed)
    specs = sample_network_specs(datasets, pre.networks.per_dataset, settings, seed=cfg.seed)
    cache = NetworkCache(pre.networks.cache_dir or default_network_cache())
    started = time.time()
    records = ensure_networks(specs, cache, settings, split, parallel=parallel, log=log)
    pool = [r for r in records if learnt(r, split)]
    dropped = [f"{r.spec.dataset}:{r.key}" for r in records if r not in pool]
    if dropped:
        log(f"Left out {len(dropped)} network(s) that learnt nothing: {', '.join(dropped)}")
    if not pool:
        raise RuntimeError("None of the random networks learnt anything; train them longer (neon.pretrain.networks.train).")
    facts = {
        "datasets": datasets, "networks": len(records), "networks_used": len(pool), "networks_dropped": dropped,
        "network_seconds": time.time() - started, "cache_dir": str(cache.directory),
        "mean_val_accuracy": float(np.mean([r.meta["val_accuracy"] for r in pool])),
        "mean_params": float(np.mean([r.meta["params"] for r in pool])),
        "depths": {int(d): int(c) for d, c in zip(*np.unique([len(r.spec.hidden_sizes) for r in pool], return_counts=True))},
    }
    return pool, facts


def _learner_metric(result: dict, key: str) -> Optional[float]:
    learners = result.get("learners", {})
    value = learners.get("default_policy", {}).get(key)
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _curve_row(iteration: int, seconds: float, result: dict, finished: list[dict], scale: float) -> dict[str, Any]:
    def mean(key: str) -> float:
        return float(np.mean([f[key] for f in finished])) if finished else math.nan

    env = result.get("env_runners", {})
    return {
        "iteration": iteration, "seconds": seconds,
        "env_steps": int(env.get("num_env_steps_sampled_lifetime", 0) or 0), "episodes": len(finished),
        "return_mean": mean("return") * scale, "return_raw_mean": mean("return"), "reduction_mean": mean("reduction"),
        "accuracy_change_mean": mean("accuracy_change"),
        "within_tolerance_share": float(np.mean([f["within_tolerance"] for f in finished])) if finished else math.nan,
        "rllib_episode_return_mean": float(env.get("episode_return_mean", math.nan) or math.nan),
        "entropy": _learner_metric(result, "entropy"), "policy_loss": _learner_metric(result, "policy_loss"),
        "vf_loss": _learner_metric(result, "vf_loss"),
    }


def plot_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Four panels over iterations: episode reward, reduction factor, accuracy change, entropy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    panels = [("return_mean", "mean episode reward (scaled)"), ("reduction_mean", "parameter reduction (x)"),
              ("accuracy_change_mean", "accuracy change (points, val)"), ("entropy", "policy entropy")]
    for ax, (column, title) in zip(axes, panels):
        values = pd.to_numeric(curves[column], errors="coerce")
        ax.plot(curves["iteration"], values, marker="o", ms=3)
        if column == "return_mean" and len(values.dropna()) >= 3:
            smooth = values.rolling(3, min_periods=1).mean()
            ax.plot(curves["iteration"], smooth, lw=2, alpha=0.6, label="3-iteration mean")
            ax.legend(fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("PPO iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _report_md(report: dict[str, Any], curves: pd.DataFrame) -> str:
    head = ["iteration", "episodes", "return_mean", "reduction_mean", "accuracy_change_mean",
            "within_tolerance_share", "entropy"]
    lines = [
        "# NEON pretraining report", "",
        f"- config: `{report['config_name']}`, seed {report['seed']} (networks and splits), agent seed "
        f"{report.get('agent_seed', report['seed'])} (PPO and the episodes' draws), rayprune {report['rayprune']}, "
        f"torch {report['torch']}, ray {report['ray']}",
        f"- datasets ({len(report['datasets'])}): {', '.join(report['datasets'])}",
        f"- networks: {report['networks_used']} used of {report['networks']} trained "
        f"(depth counts {report['depths']}), mean validation accuracy {report['mean_val_accuracy']:.3f}",
        f"- PPO: {report['iterations']} iterations x {report['steps_per_iteration']} steps, "
        f"{report['episodes']} episodes, tolerances {report['tolerances']}, {report['seconds']:.0f} s",
        *([f"- episodes: up to {e['passes']} passes, rollback {'on' if e['rollback'] else 'off'}, stop after an idle pass "
           f"{'on' if e['stop_when_idle'] else 'off'}, reward s in {e['reward_units']}"]
          if (e := report.get("episode")) else []),
        f"- mean episode reward (scaled), first vs last {report['window']} iterations: "
        f"{report['first_return_mean']:.4f} -> {report['last_return_mean']:.4f}", "",
        "| " + " | ".join(head) + " |", "|" + "---:|" * len(head),
    ]
    for _, row in curves.iterrows():
        cells = []
        for column in head:
            v = row[column]
            if v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("-")
            elif column in ("iteration", "episodes"):
                cells.append(str(int(v)))
            else:
                cells.append(f"{float(v):.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "![training curves](curves.png)", ""]
    return "\n".join(lines)


def run_pretrain(cfg, out_dir: str | Path, *, address: Optional[str] = None, log: Log = print) -> dict[str, Any]:
    """Pretrain the NEON agent per ``cfg.neon`` and write everything to ``out_dir``; returns the report."""
    import ray

    from rayprune import __version__
    from rayprune.neon.agent import build_algorithm, export_policy

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    neon, pre = cfg.neon, cfg.neon.pretrain
    started = time.time()
    connect(address, log=log, metadata={"rayprune": "pretrain", "config": cfg.name}, include_dashboard=False)
    pool, facts = build_network_pool(cfg, log=log)
    settings = EpisodeSettings.from_config(neon)
    source = EpisodeSource(tuple(pool), SuiteSplit.from_config(pre.suite, cfg.seed), settings, tuple(pre.tolerances))
    scale = reward_scale(settings.actions, settings.reward_units)
    log(f"Pretraining on {len(facts['datasets'])} datasets, {len(pool)} networks: {pre.iterations} PPO iterations x "
        f"{pre.steps_per_iteration} steps, {pre.num_envs} lockstep episodes x {max(pre.env_runners, 1)} runner(s), "
        f"parallel steps {pre.parallel_steps}, tolerances {list(pre.tolerances)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the policy is tiny; the prune-and-retrain tasks get the cores
    agent_seed = cfg.seed if pre.seed is None else pre.seed  # PPO's seed and the episodes' draws
    algo = build_algorithm(source, pre, seed=agent_seed)
    rows: list[dict[str, Any]] = []
    episodes = 0
    try:
        for it in range(1, pre.iterations + 1):
            result = algo.train()
            finished = [f for batch in algo.env_runner_group.foreach_env_runner(
                lambda runner: runner.env.unwrapped.drain_finished() if getattr(runner, "env", None) else [])
                for f in batch]
            episodes += len(finished)
            row = _curve_row(it, time.time() - started, result, finished, scale)
            rows.append(row)
            pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).to_csv(out / "curves.csv", index=False)
            log(f"neon pretrain iter {it}/{pre.iterations}: {row['episodes']} episodes, reward {row['return_mean']:.4f} "
                f"(raw {row['return_raw_mean']:.4g}), reduction x{row['reduction_mean']:.2f}, accuracy "
                f"{row['accuracy_change_mean']:+.2f} pt, within tolerance {row['within_tolerance_share']:.2f}, "
                f"entropy {row['entropy'] if row['entropy'] is not None else float('nan'):.3f}, {row['seconds']:.0f} s")
        curves = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
        window = max(1, min(3, len(curves) // 3))
        report = {
            "config_name": cfg.name, "seed": cfg.seed, "agent_seed": agent_seed, "rayprune": __version__, "torch": torch.__version__,
            "ray": ray.__version__, "python": platform.python_version(), **facts,
            "iterations": pre.iterations, "steps_per_iteration": pre.steps_per_iteration, "episodes": episodes,
            "tolerances": list(pre.tolerances), "seconds": time.time() - started, "window": window,
            "first_return_mean": float(curves["return_mean"].head(window).mean()),
            "last_return_mean": float(curves["return_mean"].tail(window).mean()),
            "neon": cfg.neon.model_dump(mode="json"), "episode": settings.to_meta(),
        }
        training = {k: report[k] for k in ("datasets", "networks_used", "iterations", "steps_per_iteration", "episodes",
                                            "tolerances", "seconds", "seed", "agent_seed", "first_return_mean", "last_return_mean")}
        export_policy(algo, out / "policy", settings=settings, pretrain=pre,
                      meta={"training": training, "rayprune": __version__})
        algo.save_to_path(str((out / "rllib_checkpoint").resolve()))
        plot_curves(curves, out / "curves.png")
        (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (out / "report.md").write_text(_report_md(report, curves))
    finally:
        torch.set_num_threads(threads)
        algo.stop()
    log(f"Wrote {out / 'policy'}, {out / 'rllib_checkpoint'}, {out / 'curves.png'} and {out / 'report.md'}")
    return report
