"""NEON benchmark: leave-one-group-out over the dataset suite (not a test; results in BENCHMARKS.md).

For every fold ``g`` of the suite's groups (A–D):

1. pretrain an agent on the other groups' datasets (``configs/neon_pretrain.yaml`` with
   ``neon.pretrain.suite.exclude_groups = [g]`` and ``--iterations``);
2. on every dataset of group ``g`` (never seen in that pretraining), take ``--networks`` of its
   random base networks (trained and cached exactly as pretraining trains them) and prune each with

   * ``neon``: the fold's agent, greedy, at τ = 1 and τ = 5, with rayprune's dynamics (a step
     beyond τ on validation is undone, passes until one changes nothing, at most as many as the
     agent was trained with); the result is the episode's last network;
   * ``neon (published)``: the same agent under the method as published — no rollback, every one of
     (at most 4) passes made, the episode's final network whatever its accuracy;
   * ``random`` / ``random (published)``: the same two dynamics with uniformly random keep fractions
     (the paper's random agent);
   * ``max_cut``: the same dynamics, always the largest cut (keep 0.6): iterative layer-wise
     magnitude pruning with rollback, no learning — the bar a learnt policy has to clear;
   * ``magnitude_same_size``: one uniform keep ratio over the hidden layers (L2 group magnitude)
     giving the size NEON reached at that τ, then the whole network retrained with early stopping;
   * ``magnitude_at_tol``: uniform magnitude pruning at keep ratios 0.9, 0.8, …, 0.1, each retrained;
     the smallest whose validation accuracy is within τ;
   * ``neon_x4`` / ``random_x4`` (``--rollouts``): the greedy episode plus 3 sampled from the
     policy (rayprune's ``neon.rollouts``), against 4 random episodes; the smallest network wins;
   * ``crl`` (first ``--crl-networks`` networks of each dataset): the constrained-RL agent
     (PPO-Lagrangian, METHODS.md §1) trained on that model alone with a params budget equal to
     NEON's size at τ = 1, ``--crl-iterations`` iterations, then its final fine-tune.

Every method is scored on the test split (never used for any choice): parameter-reduction factor
``base params / pruned params`` and accuracy change in points.

Run from the repository root (Ray starts locally)::

    python benchmarks/bench_neon.py --out benchmarks/results/neon            # the BENCHMARKS.md run
    python benchmarks/bench_neon.py --folds A --iterations 2 --networks 1 --crl-networks 0 --out /tmp/nb

Rows go to ``OUT/rows.csv`` (appended as they come; a rerun skips rows already there), the fold
agents to ``OUT/fold-<g>/``, the summary tables to ``OUT/summary.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from rayprune.config import load_config, parse_config
from rayprune.engine import evaluate
from rayprune.neon.env import EpisodeSettings
from rayprune.neon.networks import (
    NetworkCache,
    NetworkSettings,
    default_network_cache,
    ensure_networks,
    sample_network_specs,
)
from rayprune.neon.policy import load_policy
from rayprune.neon.pretrain import run_pretrain
from rayprune.neon.suite import GROUPS, SuiteSplit
from rayprune.neon.training import RetrainSettings, train_early_stopping
from rayprune.pruning import PruningSpace
from rayprune.ray_session import connect

ROOT = Path(__file__).resolve().parent.parent
TOLERANCES = (1.0, 5.0)
MAGNITUDE_RETRAIN = RetrainSettings(max_epochs=20, patience=3, max_samples=512)
GRID = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)


def n_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def scores(model, data) -> dict[str, float]:
    return {"acc_val": float(evaluate(model, data.x_val, data.y_val)), "acc_test": float(evaluate(model, data.x_test, data.y_test))}


# -- the methods -------------------------------------------------------------------------------------
def neon_episode(policy, settings: EpisodeSettings, model, data, tolerance: float, seed: int, *, act=None,
                 greedy: bool = True):
    """Run one episode (``policy``, greedy or sampled, or ``act(rng)``); returns the states
    (model, params, validation Δ) of the unpruned network and after each step."""
    episode = settings.episode(model, data, tolerance=tolerance, seed=seed)
    states = [(copy.deepcopy(episode.model), episode.params, 0.0)]
    rng = np.random.default_rng(seed)
    while not episode.done:
        action = act(rng) if act is not None else policy.act(episode.observe(), greedy=greedy, rng=rng)
        episode.step(action)
        states.append((copy.deepcopy(episode.model), episode.params, episode.accuracy_change))
    return states


def best_of(rollouts, tolerance: float):
    """Per rollout the last state within τ; overall the smallest of those (as ``neon.rollouts``)."""
    chosen = [select(states, tolerance, "within_tolerance") for states in rollouts]
    within = [c for c in chosen if c[2] >= -tolerance]
    return min(within, key=lambda c: c[1]) if within else chosen[0]


def select(states, tolerance: float, rule: str):
    if rule == "final":
        return states[-1]
    within = [s for s in states if s[2] >= -tolerance]
    return within[-1] if within else states[0]


def uniform_prune(model, data, ratio: float) -> torch.nn.Module:
    space = PruningSpace(model, torch.zeros(1, *data.input_shape), importance="l2")
    return space.build([ratio] * space.num_groups)


def ratio_for_params(model, data, target: int) -> float:
    """The uniform keep ratio whose pruned size is closest to ``target`` parameters (bisection)."""
    space = PruningSpace(model, torch.zeros(1, *data.input_shape), importance="l2")
    lo, hi = 1e-3, 1.0
    for _ in range(18):
        mid = 0.5 * (lo + hi)
        if n_params(space.build([mid] * space.num_groups)) > target:
            hi = mid
        else:
            lo = mid
    candidates = [lo, hi]
    return min(candidates, key=lambda r: abs(n_params(space.build([r] * space.num_groups)) - target))


def magnitude(model, data, ratio: float, seed: int) -> torch.nn.Module:
    pruned = uniform_prune(model, data, ratio)
    train_early_stopping(pruned, data, MAGNITUDE_RETRAIN, seed=seed)
    return pruned.eval()


def crl_same_size(record, model, data, fraction: float, iterations: int, out: Path, seed: int) -> torch.nn.Module | None:
    """The constrained-RL agent (PPO-Lagrangian) trained on this model with a params budget."""
    from rayprune.problem import PruningProblem
    from rayprune.pruning import load_pruned
    from rayprune.search.prune import run_prune

    cfg = parse_config({
        "name": "neon-bench-crl", "seed": seed,
        "model": {"name": "mlp", "kwargs": record.spec.model_kwargs()},
        "data": {"name": "tabular", "device": "cpu"},
        "pruning": {"min_keep": 0.05},
        "costs": {"measure": ["params"]},
        "budgets": {"params": max(min(fraction, 1.0), 1e-3)},
        "search": {"agent": "crl", "eval_samples": None,
                   "finetune": {"optimizer": "adam", "lr": 1e-3, "iterations": 40, "batch_size": 64},
                   "final_finetune": {"optimizer": "adam", "lr": 1e-3, "iterations": 300, "batch_size": 64},
                   "crl": {"iterations": iterations, "episodes_per_iteration": 8, "num_envs": 4, "evaluators": 2,
                           "finetune_schedule": [[0, 20], [16, 40]]}},
    })
    problem = PruningProblem.from_parts(cfg, data, model, {"source": "neon-bench"}, device=torch.device("cpu"))
    try:
        run_prune(cfg, out, agent="crl", problem=problem, progress=False, log=lambda m: None)
    except Exception as exc:  # an infeasible or failed run is a result too
        print(f"    crl failed: {type(exc).__name__}: {exc}", flush=True)
        return None
    return load_pruned(out / "best").eval()


# -- the driver ----------------------------------------------------------------------------------------
def fold_agent(base_cfg, group: str, iterations: int, out: Path, log: Callable[[str], None],
               reward_units: str | None = None, agent_seed: int | None = None) -> Path:
    agent_dir = out / f"fold-{group}"
    if (agent_dir / "policy" / "policy.json").is_file():
        return agent_dir
    cfg = parse_config(base_cfg.model_dump(mode="json"), overrides={
        "name": f"neon-logo-{group}",
        "neon": {"pretrain": {"iterations": iterations, "suite": {"exclude_groups": [group], "groups": [], "datasets": []},
                              **({"reward_units": reward_units} if reward_units else {}),
                              **({"seed": agent_seed} if agent_seed is not None else {})}}})
    run_pretrain(cfg, agent_dir, log=log)
    return agent_dir


def held_out_networks(base_cfg, group: str, count: int, log):
    pre = base_cfg.neon.pretrain
    settings = NetworkSettings.from_config(pre.networks)
    split = SuiteSplit.from_config(pre.suite, base_cfg.seed)
    specs = sample_network_specs(GROUPS[group], pre.networks.per_dataset, settings, seed=base_cfg.seed)
    records = ensure_networks(specs, NetworkCache(pre.networks.cache_dir or default_network_cache()), settings, split, log=log)
    chosen = []
    for dataset in GROUPS[group]:
        chosen += [r for r in records if r.spec.dataset == dataset][:count]
    return chosen, split


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "neon_pretrain.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "neon"))
    parser.add_argument("--folds", default=",".join(GROUPS))
    parser.add_argument("--iterations", type=int, default=12, help="PPO iterations per fold agent")
    parser.add_argument("--networks", type=int, default=2, help="networks per held-out dataset")
    parser.add_argument("--crl-networks", type=int, default=1, help="networks per held-out dataset also pruned by crl")
    parser.add_argument("--crl-iterations", type=int, default=3)
    parser.add_argument("--reward-units", choices=["percent", "fraction"], default=None,
                        help="train the fold agents with s in NEON's reward in these units (default: the config's, percent)")
    parser.add_argument("--summarise-seeds", nargs="+", default=None, metavar="ROWS_CSV",
                        help="run nothing: one table over these rows.csv files (runs with different --agent-seed)")
    parser.add_argument("--agent-seed", type=int, default=None,
                        help="seed of the fold agents' PPO (the networks and splits keep the config's seed)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods to score (default: all), e.g. neon,neon_x4 for another agent")
    parser.add_argument("--rollouts", type=int, default=4,
                        help="also score neon with this many rollouts (greedy + sampled) against as many random episodes")
    args = parser.parse_args(argv)
    if args.summarise_seeds:
        print(summarise_seeds([pd.read_csv(path) for path in args.summarise_seeds]))
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config(args.config)
    methods = set(args.methods.split(",")) if args.methods else None
    torch.set_num_threads(1)
    connect(include_dashboard=False)
    rows_path = out / "rows.csv"
    rows: list[dict[str, Any]] = []
    done = set()
    if rows_path.is_file():
        old = pd.read_csv(rows_path)
        rows = old.to_dict("records")
        done = set(zip(old["network"], old["method"], old["tolerance"].astype(float), old["select"].fillna("")))
    started = time.time()

    def emit(row: dict[str, Any]) -> None:  # rows differ in columns: rewrite the file (temp + rename)
        rows.append(row)
        tmp = rows_path.with_name(f".{rows_path.name}.tmp")
        pd.DataFrame(rows).to_csv(tmp, index=False)
        tmp.replace(rows_path)

    for group in args.folds.split(","):
        log = lambda m: print(f"[fold {group}] {m}", flush=True)  # noqa: E731
        agent_dir = fold_agent(base_cfg, group, args.iterations, out, log, reward_units=args.reward_units,
                               agent_seed=args.agent_seed)
        policy = load_policy(agent_dir)
        trained = policy.meta["episode"]
        settings = EpisodeSettings.from_meta(policy.actions, trained)
        # the method as published: no rollback, every pass made (at most 4), the episode's final network
        published = dataclasses.replace(settings, rollback=False, stop_when_idle=False, passes=min(settings.passes, 4))
        n_actions = len(settings.actions)
        random_act = lambda rng: int(rng.integers(n_actions))  # noqa: E731
        max_cut = lambda rng: int(np.argmin(settings.actions))  # noqa: E731
        records, split = held_out_networks(base_cfg, group, args.networks, log)
        crl_budget: dict[str, int] = {}
        for record in records:
            data = split.load(record.spec.dataset)
            model = record.load()
            base_params, base = n_params(model), scores(model, data)
            common = {"fold": group, "dataset": record.spec.dataset, "network": record.key,
                      "depth": len(record.spec.hidden_sizes), "widths": "x".join(map(str, record.spec.hidden_sizes)),
                      "base_params": base_params, "base_acc_val": base["acc_val"], "base_acc_test": base["acc_test"]}

            def todo(method: str, tolerance: float, rule: str = "") -> bool:
                wanted = methods is None or method in methods
                return wanted and (record.key, method, float(tolerance), rule) not in done

            def record_row(method: str, tolerance: float, rule: str, pruned, seconds: float, **extra) -> None:
                s = scores(pruned, data)
                p = n_params(pruned)
                emit({**common, "method": method, "tolerance": tolerance, "select": rule, "params": p,
                      "reduction": base_params / p, "acc_val": s["acc_val"], "acc_test": s["acc_test"],
                      "delta_val": 100 * (s["acc_val"] - base["acc_val"]), "delta_test": 100 * (s["acc_test"] - base["acc_test"]),
                      "seconds": seconds, **extra})
                done.add((record.key, method, float(tolerance), rule))

            def episode_row(method: str, tau: float, episode_settings, rule: str, seed: int, **kw) -> tuple | None:
                if not todo(method, tau, rule) and not (method == "neon" and rule == "within_tolerance"):
                    return None
                t0 = time.time()
                states = neon_episode(policy, episode_settings, model, data, tau, seed=seed, **kw)
                chosen = select(states, tau, rule)
                if todo(method, tau, rule):
                    record_row(method, tau, rule, chosen[0], time.time() - t0)
                return chosen

            log(f"{record.spec.dataset} {common['widths']} ({base_params} params, test {100 * base['acc_test']:.1f}%)")
            neon_size: dict[float, int] = {}
            for tau in TOLERANCES:
                neon_size[tau] = episode_row("neon", tau, settings, "within_tolerance", 0)[1]
                episode_row("neon", tau, published, "final", 0)
                episode_row("random", tau, settings, "within_tolerance", 1, act=random_act)
                episode_row("random", tau, published, "final", 1, act=random_act)
                episode_row("max_cut", tau, settings, "within_tolerance", 0, act=max_cut)
                if todo("magnitude_same_size", tau):
                    t0 = time.time()
                    ratio = ratio_for_params(model, data, neon_size[tau])
                    record_row("magnitude_same_size", tau, "", magnitude(model, data, ratio, seed=0), time.time() - t0,
                               keep_ratio=ratio)
            missing = [tau for tau in TOLERANCES if todo("magnitude_at_tol", tau)]
            if missing:
                t0 = time.time()
                grid = [(r, magnitude(model, data, r, seed=0)) for r in GRID]
                seconds = time.time() - t0
                for tau in missing:
                    ok = [(r, m) for r, m in grid if 100 * (scores(m, data)["acc_val"] - base["acc_val"]) >= -tau]
                    r, m = ok[-1] if ok else (1.0, model)
                    record_row("magnitude_at_tol", tau, "", m, seconds, keep_ratio=r)
            if args.rollouts > 1:  # rayprune's neon.rollouts: greedy + sampled episodes vs as many random ones
                for tau in TOLERANCES:
                    label = f"neon_x{args.rollouts}"
                    if todo(label, tau):
                        t0 = time.time()
                        rollouts = [neon_episode(policy, settings, model, data, tau, seed=10 + r, greedy=(r == 0))
                                    for r in range(args.rollouts)]
                        record_row(label, tau, "", best_of(rollouts, tau)[0], time.time() - t0)
                    label = f"random_x{args.rollouts}"
                    if todo(label, tau):
                        t0 = time.time()
                        rollouts = [neon_episode(None, settings, model, data, tau, seed=20 + r, act=random_act)
                                    for r in range(args.rollouts)]
                        record_row(label, tau, "", best_of(rollouts, tau)[0], time.time() - t0)
            crl_count = crl_budget.get(record.spec.dataset, 0)
            if crl_count < args.crl_networks and todo("crl", 1.0):
                crl_budget[record.spec.dataset] = crl_count + 1
                t0 = time.time()
                fraction = neon_size[1.0] / base_params
                pruned = crl_same_size(record, model, data, fraction, args.crl_iterations,
                                       out / f"fold-{group}" / "crl" / record.key, seed=0)
                if pruned is not None:
                    record_row("crl", 1.0, "", pruned, time.time() - t0, budget_fraction=fraction)
            log(f"  done ({time.time() - started:.0f} s)")
    summary = summarise(pd.read_csv(rows_path))
    (out / "summary.md").write_text(summary)
    print(summary)
    return 0


def summarise_seeds(frames: list[pd.DataFrame]) -> str:
    """One table over several runs (agent seeds): per method and τ, the mean over networks in each
    run, then mean ± std over runs, with the per-run values listed."""
    per_run = []
    for k, rows in enumerate(frames):
        rows = rows.copy()
        rows["select"] = rows["select"].fillna("")
        rows["label"] = rows["method"] + rows["select"].map(lambda s: " (published)" if s == "final" else "")
        rows["within"] = rows["delta_test"] >= -rows["tolerance"]
        g = rows.groupby(["tolerance", "label"])
        per_run.append(pd.DataFrame({"run": k, "n": g.size(), "reduction": g["reduction"].mean(),
                                     "median": g["reduction"].median(), "delta": g["delta_test"].mean(),
                                     "within": g["within"].mean()}).reset_index())
    runs = pd.concat(per_run)
    lines = ["| τ | method | runs | networks per run | mean reduction (± std over runs) | per run | median reduction | "
             "mean Δacc test, pt (± std) | per run | within τ on test |", "|" + "---|" * 10]
    for (tau, label), g in runs.groupby(["tolerance", "label"]):
        lines.append(
            f"| {tau:g} | {label} | {len(g)} | {int(g['n'].median())} | ×{g['reduction'].mean():.1f} ± {g['reduction'].std(ddof=1) if len(g) > 1 else 0:.1f} | "
            + ", ".join(f"×{v:.1f}" for v in g["reduction"]) + f" | ×{g['median'].mean():.1f} | "
            f"{g['delta'].mean():+.2f} ± {g['delta'].std(ddof=1) if len(g) > 1 else 0:.2f} | "
            + ", ".join(f"{v:+.2f}" for v in g["delta"]) + f" | {g['within'].mean():.0%} |")
    return "\n".join(lines) + "\n"


def summarise(rows: pd.DataFrame) -> str:
    """Markdown tables: per method and τ, overall and per fold."""
    rows = rows.copy()
    rows["select"] = rows["select"].fillna("")
    rows["within_tol_test"] = rows["delta_test"] >= -rows["tolerance"]
    label = rows["method"] + rows["select"].map(lambda s: " (published)" if s == "final" else "")
    rows["label"] = label

    def table(frame: pd.DataFrame, keys: list[str]) -> str:
        g = frame.groupby(keys)
        t = pd.DataFrame({
            "n": g.size(),
            "mean reduction": g["reduction"].mean().map("x{:.2f}".format),
            "median reduction": g["reduction"].median().map("x{:.2f}".format),
            "reduction IQR": g["reduction"].quantile(0.25).map("{:.2f}".format) + "–" + g["reduction"].quantile(0.75).map("{:.2f}".format),
            "mean Δacc test (pt)": g["delta_test"].mean().map("{:+.2f}".format),
            "Δacc std": g["delta_test"].std().map("{:.2f}".format),
            "worst Δacc": g["delta_test"].min().map("{:+.2f}".format),
            "within τ on test": g["within_tol_test"].mean().map("{:.0%}".format),
        }).reset_index()
        head = "| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns) + "\n"
        return head + "\n".join("| " + " | ".join(str(v) for v in r) + " |" for r in t.itertuples(index=False))

    parts = ["### All held-out networks\n", table(rows, ["tolerance", "label"]), "\n\n### Per fold (held-out group)\n",
             table(rows[rows["select"] != "final"], ["fold", "tolerance", "label"])]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    sys.exit(main())
