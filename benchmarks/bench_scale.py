"""Scale, simulated: candidates/s the driver keeps dispatching as evaluators grow from 1 to 64.

Issue #12 item 4. A loopback ``ray.cluster_utils.Cluster`` (default 8 nodes x 8 logical CPUs x 8
logical GPUs) holds up to 64 evaluator actors of 1 CPU + 1 GPU each. The scoring is a SIMULATION:
every candidate's score is a calibrated sleep of 0.05, 0.5 or 5 s (``benchmarks/_scale_actor.py``;
never a product path), so what is measured is the real driver machinery around it:

* the agent (``random``, ``evolution``, ``crl``) proposing and learning through
  :class:`rayprune.search.loop.SearchRun` (ask -> score -> write -> tell, the sweep trial's loop),
* :class:`rayprune.evaluation.pool.EvaluatorPool` chunking, dispatching and gathering with
  ``ray.wait``, with its cache,
* the Parquet writer (:class:`rayprune.results.CandidateWriter`, as ``rayprune prune`` builds it),
* the per-batch Ray metrics (``SearchRun.publish``).

Per point: candidates/s against the ideal ``evaluators / sleep``, the evaluators' busy share, and
the driver's time per batch in ``ask``, ``score`` (dispatch and wait), ``write`` and ``tell``; a
zero-second sleep gives the machinery's own ceiling. Each batch is ``--per-evaluator`` candidates
per evaluator (4: two chunks of two per actor). Raw records go to ``--out`` as CSV. Run from the
repository root, at low priority on a shared machine::

    nice -n 19 python benchmarks/bench_scale.py --out benchmarks/results/scale
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

DEFAULT_BATCHES = {0.0: 20, 0.05: 20, 0.5: 4, 5.0: 1}  # batches per point: 4-20 s each at ideal speed
MAX_CANDIDATES = 2048  # per point with sleeps under 0.5 s, where the driver sets the pace


@dataclass(frozen=True)
class Point:
    """One measurement: an agent's search on ``evaluators`` actors, each candidate a ``seconds`` sleep."""

    agent: str
    evaluators: int
    seconds: float
    batch: Optional[int] = None  # None: per_evaluator x evaluators
    batches: Optional[int] = None  # None: DEFAULT_BATCHES
    flush_every: Optional[int] = None  # CandidateWriter.flush_every; None: the product's default
    pipeline: bool = True  # search.pipeline: batches overlap (the product's default)

    @classmethod
    def parse(cls, text: str) -> "Point":
        """``agent:evaluators:seconds[:batch=N][:batches=N][:flush=N][:pipe=0|1]``, e.g. ``random:64:0.5:batch=32``."""
        agent, k, s, *rest = text.split(":")
        kw = dict(part.split("=", 1) for part in rest)
        return cls(agent, int(k), float(s), batch=int(kw["batch"]) if "batch" in kw else None,
                   batches=int(kw["batches"]) if "batches" in kw else None,
                   flush_every=int(kw["flush"]) if "flush" in kw else None,
                   pipeline=kw.get("pipe", "1") != "0")


def start_cluster(nodes: int, cpus: int, gpus: int, store_mib: int, temp_dir: str, log):
    """``nodes`` loopback Ray nodes of logical resources; this process joins as the driver."""
    from rayprune._auth import use_cluster_token

    use_cluster_token()  # before Ray is imported: the nodes and the driver agree on token authentication
    from ray.cluster_utils import Cluster

    from rayprune.ray_session import connect

    t0 = time.perf_counter()
    # temp_dir: the cluster's address file goes there, so other processes' ray.init() never join it
    common = dict(num_cpus=cpus, num_gpus=gpus, object_store_memory=store_mib * 1024**2)
    cluster = Cluster(initialize_head=True, head_node_args=dict(include_dashboard=False, temp_dir=temp_dir, **common))
    for _ in range(nodes - 1):
        cluster.add_node(**common)
    cluster.wait_for_nodes()
    connect(cluster.address, log=log, metadata={"rayprune": "bench_scale"})
    log(f"cluster: {nodes} nodes x {cpus} CPU x {gpus} GPU (logical) up in {time.perf_counter() - t0:.0f} s")
    return cluster


def load_problem(config: str):
    from _scale_sim import SimProblem

    from rayprune.config import load_config, parse_config
    from rayprune.costs.levels import levels_from_config
    from rayprune.problem import PruningProblem

    cfg = load_config(config)
    cfg = parse_config(cfg.model_dump(mode="json"), overrides={"data": {"device": "cpu"},
                                                               "costs": {"measure": ["params", "macs"]}})
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, train_base=False)
    levels = levels_from_config(cfg, problem.base_costs, sweep=True)  # a sweep trial's levels
    return cfg, SimProblem.wrap(problem), levels


def _rusage_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def ideal_batch_score_s(fresh: int, evaluators: int, seconds: float) -> float:
    """The time the pool's own chunking needs for ``fresh`` candidates with zero overhead."""
    if fresh == 0:
        return 0.0
    size = max(1, math.ceil(fresh / (2 * evaluators)))
    chunks = math.ceil(fresh / size)
    return math.ceil(chunks / evaluators) * size * seconds


def run_point(point: Point, pool, cfg, problem, levels, *, per_evaluator: int, seed: int, scratch: Path,
              profile: Optional[Path] = None) -> dict[str, Any]:
    """One search with ``point``'s agent through SearchRun on ``pool``; the record of what it took."""
    from _scale_actor import SimSpec
    from _scale_sim import check_rows

    from rayprune.agents import SearchSpace, make_agent
    from rayprune.names import STAGE_SEARCH
    from rayprune.results import CandidateWriter, read_candidates
    from rayprune.search.loop import SearchRun
    from rayprune.telemetry import Telemetry

    k, d = point.evaluators, point.seconds
    batch = point.batch or per_evaluator * k
    batches = point.batches or DEFAULT_BATCHES.get(d, max(1, round(10 / max(d * per_evaluator, 1e-3))))
    if point.batches is None and d < 0.5:
        batches = max(2, min(batches, MAX_CANDIDATES // batch))
    evaluations = batch * batches
    space = SearchSpace.from_problem(problem, levels)
    search = cfg.search.model_copy(update={"batch_size": batch, "evaluations": evaluations})
    agent = make_agent(point.agent, space, seed=seed, search=search, log=lambda m: None)
    label = (f"{point.agent}-k{k}-s{d:g}-b{batch}" + (f"-f{point.flush_every}" if point.flush_every else "")
             + ("" if point.pipeline else "-p0"))
    out = Path(tempfile.mkdtemp(prefix=label + "-", dir=scratch))
    constants = {"sweep_id": "bench-scale", "trial_id": label, "agent": point.agent, "seed": seed,
                 "stage": STAGE_SEARCH}
    writer_kw = {} if point.flush_every is None else {"flush_every": point.flush_every}
    writer = CandidateWriter(out, constants=constants, name=label, **writer_kw)
    spec = SimSpec(d, label)
    run = SearchRun(agent, space, pool.score_batch, submit=pool.submit_batch if point.pipeline else None, spec=spec,
                    writer=writer, evaluations=evaluations, seed=seed)
    telemetry = Telemetry({"sweep": "bench-scale", "trial": label})
    batch_seconds: list[float] = []

    def on_step(metrics):
        run.publish(telemetry, metrics)
        batch_seconds.append(metrics["batch_seconds"])

    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: what the driver does, not what it waits for
    try:
        cpu0, t0 = _rusage_cpu(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        run.run(on_step=on_step)
        if profiler is not None:
            profiler.disable()
        wall, cpu = time.perf_counter() - t0, _rusage_cpu() - cpu0
    finally:
        agent.close()
    if profiler is not None:
        import io
        import pstats

        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(45)
        text2 = io.StringIO()
        pstats.Stats(profiler, stream=text2).sort_stats("tottime").print_stats(30)
        profile.write_text(f"# cProfile of {label}: wall {wall:.2f} s, {run.evaluated} candidates\n"
                           f"# run.seconds: {json.dumps({n: round(v, 3) for n, v in run.seconds.items()})}\n"
                           + text.getvalue() + "\n" + text2.getvalue())
    rows = read_candidates(out)
    shutil.rmtree(out, ignore_errors=True)
    fresh = rows[~rows["cached"].astype(bool)]
    check_rows(problem, fresh.head(16).to_dict("records"))
    n_batches = max(run.batch, 1)
    ideal_score = sum(ideal_batch_score_s(int(n), k, d) for n in fresh.groupby("iteration").size())
    scoring = float(fresh["t_total_s"].sum())
    rec = {
        "agent": point.agent, "pipelined": run.pipelined, "evaluators": k, "sleep_s": d, "batch": batch,
        "batches": run.batch,
        "flush_every": point.flush_every or writer.flush_every, "candidates": int(len(rows)),
        "fresh": int(len(fresh)), "errors": int((rows["status"] != "ok").sum()), "wall_s": round(wall, 3),
        "candidates_per_s": round(len(rows) / wall, 2), "fresh_per_s": round(len(fresh) / wall, 2),
        "ideal_per_s": round(k / d, 2) if d > 0 else None,
        "efficiency": round(len(fresh) / wall / (k / d), 4) if d > 0 else None,
        "busy": round(scoring / (k * wall), 4), "slept_per_candidate_s": round(scoring / max(len(fresh), 1), 4),
        **{f"{name}_ms_per_batch": round(1000 * v / n_batches, 1) for name, v in run.seconds.items()},
        "dispatch_overhead_ms_per_batch": round(1000 * (run.seconds["score"] - ideal_score) / n_batches, 1),
        "driver_cpu_share": round(cpu / wall, 3), "driver_cpu_ms_per_candidate": round(1000 * cpu / max(len(rows), 1), 2), "nodes_used": int(rows["node_id"].nunique()),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    return rec


def pool_for(problem, evaluators: int, log) -> tuple[Any, dict[str, Any]]:
    """A simulated pool of ``evaluators`` actors (1 logical CPU + 1 logical GPU each), started and ready."""
    from _scale_sim import simulated_pool

    t0 = time.perf_counter()
    pool = simulated_pool(problem, size=evaluators, num_cpus=1.0, num_gpus=1.0, name=f"scale-{evaluators}",
                          tags={"trial": f"scale-{evaluators}"})
    infos = pool.wait_ready(timeout=900)
    startup = time.perf_counter() - t0
    from _scale_actor import smaps

    driver = smaps(os.getpid())
    rec = {"evaluators": evaluators, "startup_s": round(startup, 1),
           "nodes": len({i["node_id"] for i in infos}),
           "actor_rss_mib": round(sum(i["rss_mib"] for i in infos) / len(infos), 1),
           "actor_pss_mib": round(sum(i["pss_mib"] for i in infos) / len(infos), 1),
           "actors_pss_total_mib": round(sum(i["pss_mib"] for i in infos), 0),
           "actor_imports_torch": any(i["torch_imported"] for i in infos),
           "driver_rss_mib": round(driver["rss_mib"], 1), "driver_pss_mib": round(driver["pss_mib"], 1),
           "mem_available_gib": round(_mem_available_gib(), 2), "loadavg_1m": round(os.getloadavg()[0], 2)}
    log(f"{evaluators} evaluator(s) ready in {startup:.1f} s on {rec['nodes']} node(s); "
        f"actor PSS {rec['actor_pss_mib']} MiB each")
    return pool, rec


def _mem_available_gib() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


def _append_csv(path: Path, rec: dict[str, Any]) -> None:
    new = not path.exists()
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rec))
        if new:
            w.writeheader()
        w.writerow(rec)


def table(records: list[dict[str, Any]]) -> str:
    head = ("| agent | pipelined | evaluators | sleep s | batch | candidates | candidates/s | ideal/s | efficiency | "
            "ask ms | score ms | write ms | tell ms | dispatch overhead ms | driver CPU | driver CPU ms/cand. |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records:
        eff = "-" if r["efficiency"] is None else f"{100 * r['efficiency']:.0f} %"
        ideal = "-" if r["ideal_per_s"] is None else f"{r['ideal_per_s']:g}"
        lines.append(f"| {r['agent']} | {'yes' if r['pipelined'] else 'no'} | {r['evaluators']} | {r['sleep_s']:g} | {r['batch']} | {r['fresh']} | "
                     f"{r['fresh_per_s']:.1f} | {ideal} | {eff} | {r['ask_ms_per_batch']:.0f} | "
                     f"{r['score_ms_per_batch']:.0f} | {r['write_ms_per_batch']:.0f} | {r['tell_ms_per_batch']:.0f} | "
                     f"{r['dispatch_overhead_ms_per_batch']:.0f} | {100 * r['driver_cpu_share']:.0f} % | "
                     f"{r['driver_cpu_ms_per_candidate']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/bench/vgg11_mnist.yaml")
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--cpus-per-node", type=int, default=8)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--store-mib", type=int, default=80, help="object store per node")
    ap.add_argument("--evaluators", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--sleeps", type=float, nargs="+", default=[0.0, 0.05, 0.5, 5.0])
    ap.add_argument("--agents", nargs="+", default=["random"], help="run on every evaluators x sleeps point")
    ap.add_argument("--extra", nargs="*", default=[], help="more points, agent:evaluators:seconds[:batch=N]"
                                                           "[:batches=N][:flush=N]")
    ap.add_argument("--profile", nargs="*", default=[], help="points to run once more under cProfile")
    ap.add_argument("--pipeline", choices=["on", "off", "both"], default="on",
                    help="search.pipeline for the grid points; both: each point without, then with (side by side)")
    ap.add_argument("--per-evaluator", type=int, default=4, help="batch = this x evaluators")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/scale")
    ap.add_argument("--tag", default="", help="suffix of the CSV names")
    args = ap.parse_args()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    points_csv, startup_csv = out / f"points{args.tag}.csv", out / f"startup{args.tag}.csv"
    temp_dir = tempfile.mkdtemp(prefix="ray-scale-")
    scratch = Path(tempfile.mkdtemp(prefix="bench-scale-rows-"))
    started = time.time()
    meta = {"command": " ".join([os.path.basename(sys.executable), *sys.argv]), "started_utc":
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)), "machine": platform.platform(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "loadavg_start": os.getloadavg(),
            "niceness": os.nice(0)}
    cluster = start_cluster(args.nodes, args.cpus_per_node, args.gpus_per_node, args.store_mib, temp_dir, log)
    try:
        import ray
        import torch

        meta.update(ray=ray.__version__, torch=torch.__version__)
        cfg, problem, levels = load_problem(args.config)
        meta.update(config=args.config, groups=[g.channels for g in problem.space.groups],
                    levels=[lvl.name for lvl in levels])
        log(f"problem: {cfg.model.name} {meta['groups']}, levels {meta['levels']}")
        extras = [Point.parse(t) for t in args.extra]
        profiles = [Point.parse(t) for t in args.profile]
        sizes = sorted({*args.evaluators, *(p.evaluators for p in extras + profiles)})
        records = []
        for k in sizes:
            pool, start_rec = pool_for(problem, k, log)
            _append_csv(startup_csv, start_rec)
            try:
                modes = {"on": [True], "off": [False], "both": [False, True]}[args.pipeline]
                todo = [Point(a, k, d, pipeline=m) for a in args.agents for d in args.sleeps for m in modes
                        if k in args.evaluators]
                todo += [p for p in extras if p.evaluators == k]
                for point in todo:
                    rec = run_point(point, pool, cfg, problem, levels, per_evaluator=args.per_evaluator,
                                    seed=args.seed, scratch=scratch)
                    records.append(rec)
                    _append_csv(points_csv, rec)
                    log(json.dumps(rec))
                for point in (p for p in profiles if p.evaluators == k):
                    name = f"profile_{point.agent}_k{k}_s{point.seconds:g}{args.tag}.txt"
                    run_point(point, pool, cfg, problem, levels, per_evaluator=args.per_evaluator, seed=args.seed + 1,
                              scratch=scratch, profile=out / name)
                    log(f"profile written: {out / name}")
            finally:
                pool.shutdown()
        print(table(records))
    finally:
        meta.update(finished_utc=time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                    minutes=round((time.time() - started) / 60, 1), loadavg_end=os.getloadavg())
        (out / f"meta{args.tag}.json").write_text(json.dumps(meta, indent=1))
        import ray

        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
