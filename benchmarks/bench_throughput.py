"""What the machinery costs per candidate: the search loop on the Ray pool against a bare loop.

The same search (agent, candidates, adaptive-BN score) runs three ways, side by side in one process:

* ``bare``: :class:`rayprune.evaluation.local.LocalPool` — scoring in this process, one thread, no Ray;
* ``pool1``: :class:`rayprune.evaluation.pool.EvaluatorPool` with 1 actor (1 CPU);
* ``pool2``: the pool with 2 actors (1 CPU each).

For each it reports candidates/s, the time the evaluators spent scoring (the sum of the rows'
``t_total_s``), and the **overhead**: the share of the evaluators' wall time not spent scoring —
``1 - scoring / (evaluators x wall)`` — which holds Ray calls, Parquet writes, the agent's
``ask``/``tell`` (policy inference and, for crl, the PPO update) and waiting. Ray runs its
workers at niceness 15, so on a machine where anything else is busy the pool modes are starved
and the comparison means nothing: run it from the repository root on a quiet machine::

    python benchmarks/bench_throughput.py --configs configs/bench/vgg11_mnist.yaml configs/quickstart.yaml \\
        --agents random crl --candidates 256 --out benchmarks/results/throughput.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


#: agent variants by name: (agent, search overrides)
VARIANTS = {"crl_pipe": ("crl", {"crl": {"pipeline": True}})}  # crl with overlapping batches


def measure(config: str, agent_name: str, mode: str, candidates: int, batch: int) -> dict:
    import torch

    from rayprune.agents import SearchSpace, make_agent
    from rayprune.config import load_config, parse_config
    from rayprune.costs.levels import levels_from_config
    from rayprune.evaluation.local import LocalPool
    from rayprune.evaluation.pool import EvaluatorPool
    from rayprune.evaluation.score import score_specs
    from rayprune.problem import PruningProblem
    from rayprune.results import CandidateWriter, read_candidates
    from rayprune.search.loop import SearchRun

    torch.set_num_threads(1)
    cfg = load_config(config)
    agent_kind, variant = VARIANTS.get(agent_name, (agent_name, {}))
    cfg = parse_config(cfg.model_dump(mode="json"), overrides={
        "search": {"evaluations": candidates, "batch_size": batch, **variant}, "data": {"device": "cpu"}})
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None)
    levels = levels_from_config(cfg, problem.base_costs, sweep=True)
    space = SearchSpace.from_problem(problem, levels)
    if mode == "bare":
        pool, evaluators = LocalPool(problem), 1
    else:  # poolK: the product's loop (batches overlap where the agent allows); poolKs: every batch in step
        evaluators = int(mode[4])
        pool = EvaluatorPool(problem, size=evaluators, num_cpus=1.0, name=f"bench-{mode}")
        pool.wait_ready()
    spec, _ = score_specs(cfg)
    out = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    agent = make_agent(agent_kind, space, seed=0, search=cfg.search, log=lambda m: None)
    try:
        writer = CandidateWriter(out, constants={"stage": "search", "trial_id": "t"}, name="t")
        overlap = mode != "bare" and not mode.endswith("s") and cfg.search.pipeline
        run = SearchRun(agent, space, pool.score_batch, submit=pool.submit_batch if overlap else None, spec=spec,
                        writer=writer, evaluations=candidates)
        t0 = time.perf_counter()
        run.run()
        wall = time.perf_counter() - t0
        rows = read_candidates(out)
    finally:
        agent.close()
        pool.shutdown()
    fresh = rows[~rows["cached"].astype(bool)]  # a repeat is not scored again: its row copies the first one's times
    scoring = float(fresh["t_total_s"].sum())
    return {"config": Path(config).stem, "agent": agent_name, "mode": mode, "pipelined": run.pipelined,
            "evaluators": evaluators,
            "candidates": int(len(rows)), "wall_s": wall, "candidates_per_s": len(rows) / wall,
            "scoring_s": scoring, "scoring_per_candidate_s": scoring / len(rows),
            "overhead": 1.0 - scoring / (evaluators * wall), "agent_s": run.seconds["ask"] + run.seconds["tell"],
            "write_s": run.seconds["write"], "score_call_s": run.seconds["score"]}


def table(records: list[dict]) -> str:
    lines = ["| model | agent | mode | candidates/s | vs bare | scoring s / candidate | overhead | agent s | write s |",
             "|---|---|---|---|---|---|---|---|---|"]
    bare = {(r["config"], r["agent"]): r["candidates_per_s"] for r in records if r["mode"] == "bare"}
    for r in records:
        ratio = r["candidates_per_s"] / bare[(r["config"], r["agent"])] if (r["config"], r["agent"]) in bare else float("nan")
        lines.append(f"| {r['config']} | {r['agent']} | {r['mode']} | {r['candidates_per_s']:.2f} | {ratio:.2f}x | "
                     f"{r['scoring_per_candidate_s']:.3f} | {100 * r['overhead']:.1f} % | {r['agent_s']:.1f} | "
                     f"{r['write_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["configs/bench/vgg11_mnist.yaml"])
    ap.add_argument("--agents", nargs="+", default=["random", "crl"],
                    help="agent names, or a variant: " + ", ".join(f"{k} ({v[0]} with {v[1]})" for k, v in VARIANTS.items()))
    ap.add_argument("--modes", nargs="+", default=["bare", "pool1", "pool2"],
                    help="bare (no Ray), poolK (K actors, the product's loop: batches overlap where the agent "
                         "allows), poolKs (K actors, every batch in step)")
    ap.add_argument("--candidates", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out")
    args = ap.parse_args()
    from rayprune.ray_session import connect

    connect(num_cpus=2, include_dashboard=False, object_store_memory=300 * 1024**2, log=lambda m: None)
    records = []
    for config in args.configs:
        for agent in args.agents:
            for mode in args.modes:
                rec = measure(config, agent, mode, args.candidates, args.batch_size)
                records.append(rec)
                print(json.dumps(rec), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(rec) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
