"""Quality benchmark: the constrained-RL agent (``crl``) vs the uniform baseline and random search.

On the embedded MNIST subset with a narrow VGG11 (``configs/bench_vgg_mnist.yaml``), for every
params budget x seed x agent this script calls :func:`rayprune.job.run_prune` (search, then the
same final fine-tune for every agent) and records from ``OUT/best/summary.json`` and
``OUT/candidates.parquet``:

* final test / val accuracy of the exported model, its params and MACs relative to the base model,
  feasibility;
* the number of search evaluations: ``n_search`` = search rows of ``candidates.parquet`` (unique
  ``(candidate, fine-tune length)`` pairs: repeats are dropped by the reader) and ``n_proposed`` =
  every search row in the shards (repeats of an already evaluated candidate included);
* the best search accuracy (validation, ``search.eval_samples`` images) and the number of
  evaluations needed to get within 0.5 points of it: the running max of the accuracy of feasible
  ``ok`` search rows, in ``timestamp`` order, first reaching ``best - 0.005``.

Random search gets the same number of evaluations as crl: ``search.evaluations`` is set, per
budget and seed, to the number of candidates the crl run of that budget and seed actually
proposed (``n_proposed``; crl rounds episodes per iteration up to a multiple of ``num_envs``). If
crl is not among ``--agents`` it is ``iterations x ceil(episodes_per_iteration / num_envs) x
num_envs`` from the config.

The base model is trained once and cached by config hash (``seed`` stays the config's value; the run
seed goes to ``run_prune(seed=...)``); the :class:`~rayprune.problem.PruningProblem` is built once
per budget and shared by all runs of that budget.

Run from the repository root::

    python benchmarks/bench_quality.py --quick          # budget 0.25, seed 0, three agents
    python benchmarks/bench_quality.py                  # budgets 0.5 0.25 0.1 x seeds 0 1 2

Raw records go to ``--out`` (CSV); the Markdown table printed at the end is ready for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rayprune.config import Config, load_config, parse_config
from rayprune.search.prune import run_prune
from rayprune.problem import PruningProblem

WITHIN = 0.005  # 0.5 accuracy points, as a fraction


def budget_config(base: Config, budget: float, *, agent: str, evaluations: Optional[int] = None) -> Config:
    """``base`` with its budgets REPLACED by ``params <= budget`` (relative) and the agent set."""
    data = base.model_dump(mode="json")
    data["budgets"] = {"params": {"value": float(budget), "relative": True}}
    search: dict[str, Any] = {"agent": agent}
    if evaluations is not None:
        search["evaluations"] = int(evaluations)
    return parse_config(data, source="bench_quality", overrides={"search": search})


def crl_episodes(cfg: Config) -> int:
    """Candidates crl proposes: episodes per iteration rounded up to a multiple of the envs sampled together."""
    crl = cfg.search.crl
    per_round = crl.num_envs * max(1, crl.env_runners)
    return crl.iterations * int(math.ceil(crl.episodes_per_iteration / per_round) * per_round)


def read_shards(out: Path) -> pd.DataFrame:
    """Every row of ``out/candidates/`` *without* de-duplication (repeats of a candidate included)."""
    files = sorted(str(p) for p in (out / "candidates").glob("*.parquet"))
    if not files:
        return pd.DataFrame()
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    return ds.dataset(files, schema=schema, format="parquet").to_table().to_pandas()


def evals_to_within(search: pd.DataFrame, best: float, within: float = WITHIN) -> Optional[int]:
    """First evaluation count (1-based, rows in time order) at which the running max of feasible ok
    accuracies is >= ``best - within``."""
    if search.empty:
        return None
    order = [c for c in ("timestamp", "episode") if c in search.columns]
    s = search.sort_values(order, kind="stable").reset_index(drop=True)
    good = (s["status"] == "ok") & s["feasible"].fillna(False).astype(bool)
    acc = s["accuracy"].where(good, -np.inf).astype(float)
    running = acc.cummax().to_numpy()
    hit = np.nonzero(running >= best - within - 1e-12)[0]
    return int(hit[0]) + 1 if hit.size else None


def record(out: Path, summary: dict[str, Any], *, budget: float, seed: int, agent: str, seconds: float) -> dict[str, Any]:
    frame = pd.read_parquet(out / "candidates.parquet")
    search = frame[frame["stage"] == "search"]
    raw = read_shards(out)
    raw_search = raw[raw["stage"] == "search"] if not raw.empty else raw
    ok = search[(search["status"] == "ok") & search["feasible"].fillna(False).astype(bool)]
    best_search = float(ok["accuracy"].max()) if not ok.empty else float("nan")
    # The best among rows fine-tuned as long as the run's longest search fine-tune (crl's schedule
    # grows the fine-tune length, so its early rows are not comparable with random's).
    if not ok.empty and ok["finetune_iterations"].notna().any():
        longest = ok["finetune_iterations"].max()
        best_long = float(ok.loc[ok["finetune_iterations"] == longest, "accuracy"].max())
    else:
        best_long = best_search
    base, pruned = summary["base"], summary["pruned"]
    return {
        "budget": budget,
        "seed": seed,
        "agent": agent,
        "accuracy_test": float(pruned["accuracy_test"]),
        "accuracy_val": float(pruned["accuracy_val"]),
        "params": float(pruned["params"]),
        "params_ratio": float(pruned["params"]) / float(base["params"]),
        "macs_ratio": float(pruned["macs"]) / float(base["macs"]) if "macs" in pruned else float("nan"),
        "feasible": bool(summary["feasible"]),
        "n_search": int(len(search)),
        "n_proposed": int(len(raw_search)),
        "n_feasible": int(len(ok)),
        "n_errors": int((search["status"] != "ok").sum()),
        "best_search_accuracy": best_search,
        "best_search_accuracy_longest_ft": best_long,
        "chosen_finetune_iterations": float(ok.sort_values("accuracy", ascending=False).iloc[0]["finetune_iterations"])
        if not ok.empty else float("nan"),
        "evals_to_within": evals_to_within(raw_search, best_search),
        "base_accuracy_test": float(base["accuracy_test"]),
        "base_accuracy_val": float(base["accuracy_val"]),
        "base_params": float(base["params"]),
        "keep_ratios": json.dumps([round(float(r), 4) for r in summary["keep_ratios"]]),
        "seconds": seconds,
    }


def mean_std(values, scale: float = 1.0, fmt: str = "{:.2f}") -> str:
    v = np.asarray([x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))], dtype=float) * scale
    if v.size == 0:
        return "–"
    sd = v.std(ddof=1) if v.size > 1 else 0.0
    return f"{fmt.format(v.mean())} ± {fmt.replace('+', '').format(sd)}"


def paired(df: pd.DataFrame, budget: float, a: str, b: str) -> str:
    x = df[(df.budget == budget) & (df.agent == a)].set_index("seed")["accuracy_test"]
    y = df[(df.budget == budget) & (df.agent == b)].set_index("seed")["accuracy_test"]
    seeds = x.index.intersection(y.index)
    if len(seeds) == 0:
        return "–"
    return mean_std((x[seeds] - y[seeds]).tolist(), 100.0, "{:+.2f}")


def markdown_table(df: pd.DataFrame, agents: list[str]) -> str:
    head = ["params budget", "agent", "test acc. % (final)", "params kept", "search acc. % (val)",
            "evaluations", "evals to within 0.5 pt", "crl − uniform (pt)", "crl − random (pt)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for budget in sorted(df.budget.unique(), reverse=True):
        sub = df[df.budget == budget]
        base = sub["base_accuracy_test"].iloc[0]
        lines.append(f"| {budget:.0%} | *base model* | {100 * base:.2f} | 1.000 | – | – | – | – | – |")
        for agent in agents:
            a = sub[sub.agent == agent]
            if a.empty:
                continue
            d_u = paired(df, budget, "crl", "uniform") if agent == "crl" else "–"
            d_r = paired(df, budget, "crl", "random") if agent == "crl" else "–"
            n_seeds = a.seed.nunique()
            feas = "" if a.feasible.all() else f" ({(~a.feasible).sum()} infeasible!)"
            lines.append(
                f"| {budget:.0%} | {agent} (n={n_seeds}) | {mean_std(a.accuracy_test, 100)}{feas} | "
                f"{mean_std(a.params_ratio, 1, '{:.3f}')} | {mean_std(a.best_search_accuracy, 100)} | "
                f"{mean_std(a.n_proposed, 1, '{:.1f}')} | {mean_std(a.evals_to_within, 1, '{:.1f}')} | {d_u} | {d_r} |"
            )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="configs/bench_vgg_mnist.yaml")
    p.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.25, 0.1])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--agents", nargs="+", default=["crl", "random", "uniform"], choices=["crl", "random", "uniform"])
    p.add_argument("--out", default="benchmarks/results/quality.csv", help="raw records (CSV)")
    p.add_argument("--runs-dir", default=None, help="run folders (default: <out stem>_runs next to --out)")
    p.add_argument("--quick", action="store_true", help="smoke run: budget 0.25, seed 0")
    p.add_argument("--resume", action="store_true",
                   help="keep the records already in --out and skip those (budget, seed, agent) runs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in this process (random/uniform searches and every final fine-tune run here)")
    p.add_argument("--from-csv", nargs="+", default=None, metavar="CSV",
                   help="run nothing: merge these raw CSVs (e.g. from runs split by seed), write --out, print the table")
    args = p.parse_args(argv)
    if args.from_csv:
        df = pd.concat([pd.read_csv(f) for f in args.from_csv], ignore_index=True)
        df = df.sort_values(["budget", "seed", "agent"], ascending=[False, True, True]).reset_index(drop=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, index=False)
        present = [a for a in ["crl", "random", "uniform"] if a in set(df.agent)]
        print(markdown_table(df, present))
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.quick:
        args.budgets, args.seeds = [0.25], [0]
    # crl first: random's evaluation count comes from the crl run of the same budget and seed
    agents = sorted(dict.fromkeys(args.agents), key=["crl", "random", "uniform"].index)

    out_csv = Path(args.out)
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    runs_dir = Path(args.runs_dir) if args.runs_dir else out_csv.with_name(out_csv.stem + "_runs")
    runs_dir.mkdir(parents=True, exist_ok=True)

    import ray

    done_marker = out_csv.with_name(out_csv.name + ".done")
    done_marker.unlink(missing_ok=True)
    # address="local": always a fresh local instance, never a cluster someone started with `ray start`
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log_to_driver=False)
    import rayprune

    @ray.remote(num_cpus=0)
    def _where() -> str:
        import rayprune as rp

        return rp.__file__

    print(f"rayprune in the driver: {rayprune.__file__}; in Ray workers: {ray.get(_where.remote())}", flush=True)
    base_cfg = load_config(args.config)
    default_evals = crl_episodes(base_cfg)
    print(f"bench_quality: {args.config} ({base_cfg.model.name} {base_cfg.model.kwargs} on {base_cfg.data.name}), "
          f"budgets {args.budgets}, seeds {args.seeds}, agents {agents}; crl episodes per run {default_evals}", flush=True)
    records: list[dict[str, Any]] = []
    if args.resume and out_csv.is_file():
        records = pd.read_csv(out_csv).to_dict("records")
        print(f"resuming: {len(records)} records already in {out_csv}", flush=True)
    done = {(float(r["budget"]), int(r["seed"]), str(r["agent"])): r for r in records}
    started = time.time()
    try:
        for budget in args.budgets:
            t0 = time.time()
            cfg0 = budget_config(base_cfg, budget, agent="uniform")
            problem = PruningProblem.from_config(cfg0, progress=False, log=lambda m: print(f"  [problem] {m}", flush=True))
            print(f"budget params<={budget:.0%}: problem built in {time.time() - t0:.1f}s; base params "
                  f"{problem.base_costs['params']:.0f}, base test acc {100 * problem.base_accuracy['test']:.2f}%, "
                  f"{problem.space.num_groups} prunable groups", flush=True)
            for seed in args.seeds:
                crl_done = done.get((float(budget), int(seed), "crl"))
                crl_count: Optional[int] = int(crl_done["n_proposed"]) if crl_done else None
                for agent in agents:
                    if (float(budget), int(seed), agent) in done:
                        print(f"budget {budget:.0%} seed {seed} {agent}: already done, skipped", flush=True)
                        continue
                    evals = (crl_count or default_evals) if agent == "random" else None
                    cfg = budget_config(base_cfg, budget, agent=agent, evaluations=evals)
                    prob = dataclasses.replace(problem, config=cfg)  # same data/model/space; this run's search settings
                    out = runs_dir / f"b{budget:g}_s{seed}_{agent}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    log_file = open(out / "run.log", "w")

                    def log(msg: str, _f=log_file, _agent=agent) -> None:
                        _f.write(msg + "\n")
                        _f.flush()
                        if msg.startswith("crl iter"):
                            print(f"    {msg}", flush=True)

                    t_run = time.time()
                    try:
                        summary = run_prune(cfg, out, agent=agent, seed=seed, progress=False, log=log, problem=prob)
                    finally:
                        log_file.close()
                    rec = record(out, summary, budget=budget, seed=seed, agent=agent, seconds=time.time() - t_run)
                    records.append(rec)
                    if agent == "crl":
                        crl_count = rec["n_proposed"]
                    print(f"[{time.time() - started:7.0f}s] budget {budget:.0%} seed {seed} {agent:8s} "
                          f"test {100 * rec['accuracy_test']:.2f}% val {100 * rec['accuracy_val']:.2f}% "
                          f"params {rec['params_ratio']:.3f} feasible={rec['feasible']} "
                          f"evals {rec['n_proposed']} (unique {rec['n_search']}, feasible {rec['n_feasible']}) "
                          f"best search {100 * rec['best_search_accuracy']:.2f}% within0.5pt@{rec['evals_to_within']} "
                          f"({rec['seconds']:.0f}s)", flush=True)
                    pd.DataFrame(records).to_csv(out_csv, index=False)  # save as we go
    finally:
        ray.shutdown()
    df = pd.DataFrame(records)
    df.to_csv(out_csv, index=False)
    print(f"\nwrote {len(df)} records to {out_csv} in {(time.time() - started) / 60:.1f} min\n", flush=True)
    print(markdown_table(df, agents), flush=True)
    done_marker.write_text(f"{len(df)} records\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
