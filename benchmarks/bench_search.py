"""Search benchmark: every agent gets the same candidates, the same re-rank and the same final fine-tune.

For each config x budget-level set x candidate count x seed x agent this script runs the product's
own search and selection code (:class:`rayprune.search.loop.SearchRun` over all levels at once,
then :func:`rayprune.search.selection.select_and_finalize`) with the evaluator pool's in-process
twin (:class:`rayprune.evaluation.local.LocalPool`, one thread), so what is compared is the
search, not Ray scheduling. Per (run, level) it records:

* ``n_level``: candidates proposed for the level (agents share the batch round robin; crl draws
  levels round robin too), ``best_search``: the best cheap (adaptive-BN) score among *all* the
  run's candidates that fit the level (the store semantics of a sweep);
* ``rerank``: the re-ranked winner's short-fine-tune accuracy; ``final_val`` / ``final_test``:
  accuracy of the exported model after ``search.final_finetune`` (selection on validation only);
* ``curve``: the best-so-far search score after every batch (for "candidates to within 0.5 pt");
* seconds: scoring, agent (ask + tell), writing, selection.

Run from the repository root (``--jobs 2`` runs two processes with one thread each)::

    python benchmarks/bench_search.py --configs configs/bench/small_cnn_digits.yaml \\
        --agents random,evolution,tpe,crl --seeds 0 1 2 3 4 --evaluations 512 --jobs 2 \\
        --out benchmarks/results/search/small_cnn_digits.jsonl
    python benchmarks/bench_search.py --summarise benchmarks/results/search/small_cnn_digits.jsonl

Batches run in step (ask, score, tell) unless ``--overlap`` is given: then agents that allow it
(``pipelined``: random, evolution, TPE, and crl with ``search.crl.pipeline``) are asked for batch
k+1 before batch k is told, the order the product's loop uses on the Ray pool (``search.pipeline``).

``--levels macs=0.3`` or ``--levels latency_ms=rel:0.5`` replace the config's sweep levels
(several comma-separated values make several levels of one constraint).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # user_models (the user-style CNN) is importable by name
WITHIN = 0.005  # 0.5 accuracy points
BASELINES = ("random", "evolution", "tpe")


def _levels_override(text: Optional[str]) -> dict:
    if not text:
        return {}
    name, _, raw = text.partition("=")
    relative = None
    if raw.startswith(("rel:", "abs:")):
        relative, raw = raw.startswith("rel:"), raw[4:]
    values = [float(v) for v in raw.split(",")]
    out: dict = {"sweep": {"budgets": {name: values}}, "budgets": {name: {"value": values[0]}}}
    if relative is not None:
        out["budgets"][name]["relative"] = relative
    return out


_PROBLEMS: dict[str, Any] = {}


def _problem(config: str, levels: Optional[str]):
    from rayprune.config import load_config, parse_config
    from rayprune.problem import PruningProblem

    key = f"{config}|{levels}"
    if key not in _PROBLEMS:
        cfg = load_config(config)
        over = _levels_override(levels)
        if over:
            data = cfg.model_dump(mode="json")
            data["budgets"] = {}
            data["sweep"]["budgets"] = {}  # the override replaces the config's levels
            cfg = parse_config(data, overrides=over)
            if "latency_ms" in json.dumps(over) and "latency_ms" not in cfg.costs.measure:
                cfg = parse_config(cfg.model_dump(mode="json"),
                                   overrides={"costs": {"measure": [*cfg.costs.measure, "latency_ms"]}})
        _PROBLEMS[key] = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")
    return _PROBLEMS[key]


def run_search(job: dict[str, Any], out: Path) -> dict[str, Any]:
    """The search part of one run (no selection): its problem, config, levels, search rows (also
    written under ``out``), best-so-far curves per level and timings. bench_selection.py uses it too."""
    import torch

    torch.set_num_threads(1)
    from rayprune.agents import SearchSpace, make_agent
    from rayprune.config import parse_config
    from rayprune.costs.levels import levels_from_config
    from rayprune.evaluation.local import LocalPool
    from rayprune.evaluation.score import score_specs
    from rayprune.results import CandidateWriter, read_candidates
    from rayprune.search.loop import SearchRun

    base = _problem(job["config"], job.get("levels"))
    cfg = parse_config(base.config.model_dump(mode="json"), overrides={
        "search": {"evaluations": job["evaluations"], **job.get("search", {})}})
    problem = dataclasses.replace(base, config=cfg)  # the job's config everywhere, the final fine-tune's too
    levels = levels_from_config(cfg, problem.base_costs, sweep=True)
    space = SearchSpace.from_problem(problem, levels)
    if job["agent"] == "crl":
        from rayprune.ray_session import connect

        connect(num_cpus=1, include_dashboard=False, object_store_memory=100 * 1024**2, log=lambda m: None)
    pool = LocalPool(problem)
    spec, rerank = score_specs(cfg)
    agent = make_agent(job["agent"], space, seed=job["seed"], search=cfg.search, log=lambda m: None)
    writer = CandidateWriter(out, constants={"agent": job["label"], "seed": job["seed"], "stage": "search",
                                             "trial_id": "bench"}, name="bench")
    submit = pool.submit_batch if job.get("overlap") and cfg.search.pipeline else None  # the product's order
    run = SearchRun(agent, space, pool.score_batch, submit=submit, spec=spec, writer=writer,
                    evaluations=cfg.search.evaluations, seed=job["seed"])
    t0 = time.perf_counter()
    curves: list[list[Optional[float]]] = [[] for _ in levels]
    while not run.done:
        run.step()
        for i, b in enumerate(run.best):
            curves[i].append(b)
    search_s = time.perf_counter() - t0
    agent.close()
    rows = read_candidates(out)
    if job.get("keep_rows"):
        Path(job["keep_rows"]).parent.mkdir(parents=True, exist_ok=True)
        rows.to_parquet(job["keep_rows"])
    return dict(problem=problem, cfg=cfg, levels=levels, pool=pool, rerank=rerank, rows=rows, curves=curves,
                search_s=search_s, seconds=run.seconds, overlap=run.pipelined, space=space)


def run_one(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One search + selection; returns one record per level."""
    from rayprune.results import CandidateWriter
    from rayprune.search.score_signal import chance_and_base
    from rayprune.search.selection import candidates_for, select_and_finalize, weak_level_priors

    out = Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        s = run_search(job, out)
        problem, cfg, levels, pool, rerank, rows = (s[k] for k in ("problem", "cfg", "levels", "pool", "rerank", "rows"))
        curves, search_s, seconds = s["curves"], s["search_s"], s["seconds"]
        t1 = time.perf_counter()
        results = []
        if job.get("final", True):
            sel = CandidateWriter(out, constants={"stage": "select", "trial_id": "selection"}, name="selection")
            results = select_and_finalize(rows, levels, pool=pool, out_dir=out, rerank_spec=rerank,
                                          top_k=cfg.search.rerank.top_k, writer=sel, seed=job["seed"],
                                          cost_names=list(problem.costs), log=lambda m: None,
                                          reference=chance_and_base(problem), weak_finals=cfg.search.rerank.weak_finals,
                                          priors=weak_level_priors(cfg.search.rerank, lambda: s["space"]))
        select_s = time.perf_counter() - t1
        records = []
        for i, level in enumerate(levels):
            fit = candidates_for(rows, level)
            res = results[i] if results else None
            records.append({
                "config": Path(job["config"]).stem, "agent": job["label"], "seed": job["seed"],
                "evaluations": job["evaluations"], "level": level.name, "n_level": int((rows["level"] == level.name).sum()),
                "n_fit": int(len(fit)), "errors": int((rows["status"] != "ok").sum()),
                "best_search": float(fit["accuracy"].max()) if not fit.empty else None,
                "rerank": None if res is None else res.rerank_accuracy,
                "final_val": None if res is None else res.accuracy_val,
                "final_test": None if res is None else res.accuracy_test,
                "found_for": None if res is None else res.found_for,
                "found_by": None if res is None else res.found_by,
                "retained": None if res is None or res.search_signal is None else res.search_signal.retained,
                "weak": None if res is None or res.search_signal is None else res.search_signal.weak,
                **({f"final_{c}_rel": res.costs.get(c, math.nan) / problem.base_costs[c] for c in level.limits}
                   if res is not None and res.costs else {}),
                **{f"limit_{c}": v for c, v in level.limits.items()},
                **{f"base_{c}": problem.base_costs[c] for c in level.limits},
                "costs_share": _costs_share(rows),
                "batch_size": cfg.search.batch_size, "overlap": s["overlap"], "curve": json.dumps(curves[i]),
                "search_s": search_s, "score_s": seconds["score"],
                "agent_s": seconds["ask"] + seconds["tell"], "write_s": seconds["write"],
                "select_s": select_s, "base_val": problem.base_accuracy["val"], "base_test": problem.base_accuracy["test"],
                "test_samples": len(problem.data.y_test), **environment(),
            })
        return records
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _costs_share(rows) -> Optional[float]:
    """The share of the scored (not cached) candidates' time spent measuring costs."""
    scored = rows[(rows["status"] == "ok") & ~rows["cached"].fillna(False).astype(bool)]
    total = scored["t_total_s"].sum() if "t_total_s" in scored else 0.0
    return float(scored["t_costs_s"].sum() / total) if total > 0 else None


def _worker_init() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def _run_job(job):
    try:
        return run_one(job)
    except Exception as exc:  # noqa: BLE001 - record and go on with the other runs
        import traceback

        return [{"config": Path(job["config"]).stem, "agent": job["label"], "seed": job["seed"],
                 "evaluations": job["evaluations"], "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}]


# -- summary --------------------------------------------------------------------------------------
def environment() -> dict[str, str]:
    """The versions a row's numbers depend on, beyond the code's commit: the same seeds on the same pinned base give
    the same rows only where these match (a rerun of session 17's random-search rows reproduced 13 of 40 final
    test scores exactly in a later environment, the rest within noise). Recorded with every row.

    >>> sorted(environment())
    ['numpy', 'python', 'ray', 'torch', 'torch_pruning']
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "missing"

    return {"python": platform.python_version(), "torch": of("torch"), "torch_pruning": of("torch-pruning"),
            "ray": of("ray"), "numpy": of("numpy")}


def search_overrides(items: list[str]) -> dict:
    """``--set`` items (``key.sub=JSON``) as a nested ``search`` override; a value that is not JSON
    is taken as a string (a shell eats the quotes of ``crl.action="direction"``).

    >>> search_overrides(['crl.action="direction"', "rerank.top_k=4", "crl.action=direction"])
    {'crl': {'action': 'direction'}, 'rerank': {'top_k': 4}}
    """
    search: dict = {}
    for item in items:
        key, _, value = item.partition("=")
        node = search
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        try:
            node[leaf] = json.loads(value)
        except json.JSONDecodeError:
            node[leaf] = value
    return search


def _ci95(diffs: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95 % t-interval of paired differences; no interval (NaN bounds) below 3 pairs.

    Accuracies on a test split are discrete (one image is 0.1-0.3 point here), so two seeds often
    give the same difference, and a t-interval from two equal differences has zero width: a
    "resolved" difference that is a coincidence of rounding (t(1) = 12.7 would otherwise be the
    honest width). With three or more pairs the interval is reported as computed."""
    from scipy import stats

    n = len(diffs)
    mean = float(np.mean(diffs))
    if n < 3:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, n - 1) * np.std(diffs, ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half


def read_rows(spec: str) -> pd.DataFrame:
    """The records of a JSON-lines file, ``FILE`` or ``FILE:agent,agent`` (only those agents' rows:
    to combine agents kept from one file with agents re-run into another)."""
    path, sep, agents = spec.rpartition(":")
    if not sep or "/" in agents or agents.endswith(".jsonl"):  # no agent list: the whole file
        path, agents = spec, ""
    frame = pd.read_json(path, lines=True)
    return frame[frame["agent"].isin(agents.split(","))] if agents else frame


def seeds_needed(sd: float, effect: float = 0.3, *, power: float = 0.8, most: int = 100_000) -> Optional[int]:
    """Seeds a paired comparison needs for a true difference of ``effect`` points to come out with
    its two-sided 95 % t-interval above 0 with probability ``power``, when the paired differences
    have standard deviation ``sd`` points: the least n with ``(t(0.975, n-1) + t(power, n-1)) · sd / √n
    ≤ effect`` (3 at least, as :func:`_ci95` gives no interval below 3 pairs); None above ``most``.

    >>> seeds_needed(0.0), seeds_needed(0.44), seeds_needed(3.5)
    (3, 19, 1071)
    """
    from scipy import stats

    if not sd > 0:
        return 3
    # start from the normal answer (t quantiles exceed z, so the least n is never below it) and count up
    n = max(3, int(((1.96 + stats.norm.ppf(power)) * sd / effect) ** 2))
    while n <= most:
        if (stats.t.ppf(0.975, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n) <= effect:
            return n
        n += 1
    return None


def power_table(frame: pd.DataFrame, effect: float = 0.3) -> str:
    """How many seeds each (model, level) would need to resolve a paired difference of ``effect``
    points between two agents (95 % interval above 0, 80 % power), from the spread of the paired
    final-test differences of every pair of agents measured on the same seeds (median over the pairs);
    with the test split's granularity (one image, in points) next to it."""
    frame = frame[frame["error"].isna()] if "error" in frame.columns else frame
    lines = [f"\n**Seeds needed to resolve a {effect:g}-point paired difference in final test accuracy** "
             "(sd of same-seed differences between two agents, median over every pair of agents; 95 % interval, "
             "80 % power)\n",
             "| config | candidates | level | agent pairs | seeds per pair | sd of paired diffs, pt (median; range) | "
             "seeds needed | one test image, pt |", "|---|---|---|---|---|---|---|---|"]
    for (config, evaluations, level), g in frame.groupby(["config", "evaluations", "level"], sort=False):
        t = g.pivot_table(index="seed", columns="agent", values="final_test")
        sds, seeds = [], []
        agents = list(t.columns)
        for i, a in enumerate(agents):
            for b in agents[i + 1:]:
                pair = t[[a, b]].dropna()
                if len(pair) >= 3:
                    sds.append(float(np.std(100 * (pair[a] - pair[b]), ddof=1)))
                    seeds.append(len(pair))
        if not sds:
            continue
        sd = float(np.median(sds))
        needed = seeds_needed(sd, effect)
        image = "-"
        if "test_samples" in g and g["test_samples"].notna().any():
            image = f"{100 / float(g['test_samples'].dropna().iloc[0]):.2f}"
        lines.append(f"| {config} | {evaluations} | {level} | {len(sds)} | {int(np.median(seeds))} | {sd:.2f} "
                     f"({min(sds):.2f}-{max(sds):.2f}) | {needed if needed is not None else '> 100,000'} | {image} |")
    return "\n".join(lines)


def _to_within(curve: list, target: float, batch: int) -> Optional[int]:
    for i, b in enumerate(curve):
        if b is not None and b >= target - WITHIN:
            return (i + 1) * batch
    return None


def summarise(frame: pd.DataFrame) -> str:
    """Markdown tables: final test accuracy mean ± sd per agent, paired difference of each agent to the
    best baseline (by mean) with a 95 % interval, best search score, candidates to within 0.5 pt."""
    frame = frame[frame.get("error").isna()] if "error" in frame.columns else frame
    lines = []
    for (config, evaluations, level), g in frame.groupby(["config", "evaluations", "level"], sort=False):
        # candidates to within 0.5 pt of the best search score any agent reached with this seed
        best_by_seed = g.groupby("seed")["best_search"].max()
        g = g.assign(to_within=[_to_within(json.loads(r.curve), best_by_seed[r.seed], r.batch_size)
                                for r in g.itertuples()])
        stats_ = g.groupby("agent").agg(test=("final_test", "mean"), test_sd=("final_test", "std"),
                                        val=("final_val", "mean"), search=("best_search", "mean"),
                                        search_sd=("best_search", "std"), to_within=("to_within", "median"),
                                        seeds=("seed", "nunique"), minutes=("search_s", "mean"))
        baselines = [a for a in BASELINES if a in stats_.index]
        finals = stats_["test"].notna().any()
        key, column = ("test", "final_test") if finals else ("search", "best_search")  # search only: compare scores
        scored = stats_.loc[baselines, key].dropna()  # a baseline whose every run ended without a model has no mean
        best_base = scored.idxmax() if len(scored) else None
        stats_["no_model"] = g.groupby("agent")[column].apply(lambda c: int(c.isna().sum()))
        lines.append(f"\n**{config}, {level}, {evaluations} candidates** (best baseline by mean "
                     f"{'final test' if finals else 'search score'}: {best_base})\n")
        lines.append(f"| agent | final test % (mean ± sd) | paired diff to best baseline, {'test' if finals else 'search'} "
                     "(95 % CI), pt | best search % | "
                     "candidates to within 0.5 pt (median) | seeds | runs without a model | search s |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for agent, r in stats_.iterrows():
            diff = "-"
            if best_base is not None and agent != best_base:
                a = g[g.agent == agent].set_index("seed")[column]
                b = g[g.agent == best_base].set_index("seed")[column]
                common = a.index.intersection(b.index)
                pairs = (a[common] - b[common]).dropna().to_numpy()  # pairs where both have a model
                m, lo, hi = _ci95(100 * pairs) if len(pairs) else (math.nan,) * 3
                diff = f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]" if len(pairs) else "no shared seed"
            lines.append(f"| {agent} | {_pct(r.test, r.test_sd)} | {diff} | {_pct(r.search, r.search_sd)}"
                         f" | {'-' if r.to_within != r.to_within else int(r.to_within)} | {int(r.seeds)} | "
                         f"{int(r.no_model)} | {r.minutes:.0f} |")
    lines.append(overview(frame))
    for agent in sorted(a for a in set(frame["agent"]) if str(a).startswith("crl")):  # crl and its --label variants
        lines.append(versus(frame, agent))
    return "\n".join(lines)


def _pct(mean: float, sd: Optional[float] = None) -> str:
    """A fraction as a percentage (``-`` where no run had one), with its sd (0 from a single run).

    >>> _pct(0.9812, 0.004), _pct(float("nan"), float("nan")), _pct(0.5)
    ('98.12 ± 0.40', '-', '50.00')
    """
    if mean != mean:
        return "-"
    return f"{100 * mean:.2f}" + ("" if sd is None else f" ± {100 * (sd if sd == sd else 0):.2f}")


def versus(frame: pd.DataFrame, agent: str) -> str:
    """Paired differences (same seed) of ``agent`` to each other agent, per level: final test and
    best search score, mean and 95 % interval, in points."""
    lines = []
    for (config, evaluations), g in frame.groupby(["config", "evaluations"], sort=False):
        others = [a for a in BASELINES if a in set(g["agent"])]
        lines.append(f"\n**{config}, {evaluations} candidates: {agent} minus each baseline, same seed "
                     "(final test | best search score), pt, mean [95 % CI]**\n")
        lines.append("| level | seeds | " + " | ".join(others) + " |")
        lines.append("|---|---|" + "---|" * len(others))
        for level, gl in g.groupby("level", sort=False):
            cells, seeds = [], 0
            for other in others:
                parts = []
                for column in ("final_test", "best_search"):
                    t = gl.pivot_table(index="seed", columns="agent", values=column)
                    if agent not in t or other not in t:
                        parts.append("-")
                        continue
                    pair = t[[agent, other]].dropna()
                    if pair.empty:  # no seed where both ended with a model
                        parts.append("no shared seed")
                        continue
                    seeds = max(seeds, len(pair))
                    m, lo, hi = _ci95(100 * (pair[agent] - pair[other]).to_numpy())
                    parts.append(f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]")
                cells.append(" \\| ".join(parts))
            lines.append(f"| {level} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _best_per_level(means: pd.Series) -> pd.Series:
    """The agent with the highest mean per level, over levels where any agent has one (a level where every
    run ended without a model has no best)."""
    means = means.dropna()
    if means.empty:
        return pd.Series(dtype=object)
    return means.groupby(level="level").idxmax().map(lambda i: i[1])


def overview(frame: pd.DataFrame) -> str:
    """One row per agent and config over all levels: mean final test and search score (each level
    weighted equally), and at how many levels the agent has the best mean final test / search score.
    This is the ranking the README's default agent follows."""
    lines = []
    for (config, evaluations), g in frame.groupby(["config", "evaluations"], sort=False):
        per = g.groupby(["level", "agent"]).agg(test=("final_test", "mean"), search=("best_search", "mean"))
        levels = per.index.get_level_values("level").unique()
        best_test, best_search = (_best_per_level(per[c]) for c in ("test", "search"))
        lines.append(f"\n**{config}, {evaluations} candidates, over {len(levels)} levels**\n")
        lines.append("| agent | mean final test % | levels best by final test | mean best search % | "
                     "levels best by search score |")
        lines.append("|---|---|---|---|---|")
        by_agent = per.groupby(level="agent").mean()
        for agent, r in by_agent.sort_values("test", ascending=False).iterrows():
            wins_t, wins_s = int((best_test == agent).sum()), int((best_search == agent).sum())
            lines.append(f"| {agent} | {_pct(r.test)} | {wins_t} of {len(levels)} | {_pct(r.search)} | "
                         f"{wins_s} of {len(levels)} |")
    return "\n".join(lines)


def plot(frame: pd.DataFrame, path: str) -> None:
    """Best search score so far against candidates scored, per agent (mean over seeds), one panel per
    (config, level): where a better search shows, before the final fine-tune evens things out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = frame[frame["error"].isna()] if "error" in frame.columns else frame
    panels = list(frame.groupby(["config", "evaluations", "level"], sort=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, ((config, evaluations, level), g) in zip(axes[0], panels):
        for agent, ga in g.groupby("agent", sort=True):
            curves = [json.loads(c) for c in ga["curve"]]
            n = min(len(c) for c in curves)
            values = np.array([[np.nan if v is None else v for v in c[:n]] for c in curves], dtype=float)
            x = (np.arange(n) + 1) * int(ga["batch_size"].iloc[0])
            ax.plot(x, 100 * np.nanmean(values, axis=0), label=f"{agent} ({len(curves)} seeds)")
        ax.set_title(f"{config}, {level}", fontsize=9)
        ax.set_xlabel("candidates scored (all levels)")
        ax.set_ylabel("best search score so far (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["configs/bench/small_cnn_digits.yaml"])
    ap.add_argument("--agents", default="random,evolution,tpe,crl")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--evaluations", nargs="+", type=int, default=[512])
    ap.add_argument("--levels", help="replace the configs' sweep levels, e.g. macs=0.3 or latency_ms=rel:0.5")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="search.* override for every run, e.g. crl.budget_conditioned=false")
    ap.add_argument("--label", help="record the (one) agent under this name, e.g. crl_direction for a --set variant")
    ap.add_argument("--no-final", action="store_true", help="search only (no re-rank or final fine-tune)")
    ap.add_argument("--overlap", action="store_true",
                    help="overlap batches as the product does (search.pipeline) for agents that allow it: batch k+1 "
                         "is asked for before batch k is told (scored in order, in one process)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--rows", help="folder to keep each run's search rows (Parquet)")
    ap.add_argument("--out", help="JSON-lines file of records (appended)")
    ap.add_argument("--summarise", nargs="+", metavar="FILE[:AGENTS]",
                    help="only print the tables of these JSON-lines files; FILE:random,crl takes only those agents' rows")
    ap.add_argument("--plot", help="with --summarise: also draw the best-so-far curves to this PNG")
    ap.add_argument("--power", type=float, metavar="POINTS",
                    help="with --summarise: only the table of seeds needed to resolve a paired difference of POINTS")
    args = ap.parse_args()
    if args.summarise:
        frame = pd.concat([read_rows(p) for p in args.summarise], ignore_index=True)
        print(power_table(frame, args.power) if args.power else summarise(frame))
        if args.plot:
            plot(frame, args.plot)
        return
    search = search_overrides(args.set)
    if args.label and len(args.agents.split(",")) != 1:
        ap.error("--label names one agent: give --agents a single name")
    jobs = [dict(config=c, agent=a, label=args.label or a, seed=s, evaluations=n, levels=args.levels,
                 final=not args.no_final, search=search, overlap=args.overlap,
                 keep_rows=(f"{args.rows}/{Path(c).stem}-{args.label or a}-{s}-{n}.parquet" if args.rows else None))
            for c in args.configs for n in args.evaluations for s in args.seeds for a in args.agents.split(",")]
    for c in args.configs:  # train and cache base models once, before the workers start
        _problem(c, args.levels)
    records: list[dict] = []
    started = time.time()
    if args.jobs > 1:
        ctx = mp.get_context("spawn")
        with ctx.Pool(args.jobs, initializer=_worker_init, maxtasksperchild=1) as pool:
            for recs in pool.imap_unordered(_run_job, jobs):
                records += recs
                _report(recs, args.out, started)
    else:
        for job in jobs:
            recs = _run_job(job)
            records += recs
            _report(recs, args.out, started)
    print(summarise(pd.DataFrame(records)))


def _report(recs: list[dict], out: Optional[str], started: float) -> None:
    for r in recs:
        if r.get("error"):
            print(f"[{time.time() - started:6.0f}s] {r['config']} {r['agent']} seed {r['seed']}: ERROR {r['error']}",
                  flush=True)
        else:
            print(f"[{time.time() - started:6.0f}s] {r['config']} {r['agent']} seed {r['seed']} {r['level']}: "
                  f"search {r['best_search']}, final val {r['final_val']}, test {r['final_test']} "
                  f"({r['search_s']:.0f}s search)", flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            for r in recs:
                fh.write(json.dumps(r, default=float) + "\n")


if __name__ == "__main__":
    main()
