"""How the black-box steering proxy aims during a search (a diagnostic, not a benchmark).

Runs one agent's search in process (as ``bench_search.py`` does) on a config whose level is a
black-box budget (latency, memory, a user cost) and prints, after each batch, the proxy's model
``cost ≈ a + b·x`` (``x`` the MACs fraction; a and b relative to the base model's cost), its
residual spread and the MACs fraction the next batch aims at; then the measured cost against the
MACs fraction of every candidate. Session 10 used it to find why random search and evolution
proposed only tiny networks under ``latency_ms=rel:0.5`` on VGG11 (BENCHMARKS.md, "A latency
budget"). From the repository root::

    python benchmarks/diag_steering.py --config configs/bench/vgg11_mnist.yaml --levels latency_ms=rel:0.5 \\
        --agent evolution --evaluations 256
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_search  # noqa: E402  (the problem with the levels override)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/bench/vgg11_mnist.yaml")
    ap.add_argument("--levels", default="latency_ms=rel:0.5")
    ap.add_argument("--agent", default="evolution")
    ap.add_argument("--evaluations", type=int, default=256)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from rayprune.agents import SearchSpace, make_agent
    from rayprune.costs.levels import levels_from_config
    from rayprune.evaluation.local import LocalPool
    from rayprune.evaluation.score import score_specs
    from rayprune.results import CandidateWriter, read_candidates
    from rayprune.search.loop import SearchRun

    problem = bench_search._problem(args.config, args.levels)
    cfg = problem.config
    levels = levels_from_config(cfg, problem.base_costs, sweep=True)
    space = SearchSpace.from_problem(problem, levels)
    names = [n for n in space.blackbox_costs() if n in levels[0].limits]
    if not names:
        sys.exit(f"{args.levels!r} has no black-box budget: nothing is steered by a proxy")
    name, base = names[0], problem.base_costs[names[0]]
    limit = levels[0].limits[name]
    pool = LocalPool(problem)
    spec, _ = score_specs(cfg)
    agent = make_agent(args.agent, space, seed=args.seed, search=cfg.search, log=lambda m: None)
    out = tempfile.mkdtemp(prefix="diag-steering-")
    writer = CandidateWriter(out, constants={"agent": args.agent, "seed": args.seed, "stage": "search",
                                             "trial_id": "diag"}, name="diag")
    run = SearchRun(agent, space, pool.score_batch, spec=spec, writer=writer, evaluations=args.evaluations,
                    seed=args.seed)
    print(f"{name}: base {base:.4g}, limit {limit:.4g} ({limit / base:.2f} of the base)")
    while not run.done:
        run.step()
        proxy = space.proxies[name]
        a, b = proxy.coefficients()
        print(f"{len(proxy.xs):5d} measured: a {a / base:+.3f}, b {b / base:.3f}, spread {proxy.spread() / base:.3f}, "
              f"next aim x = {proxy.x_for(limit):.3f} ({'line' if proxy._line() is not None else 'through 0'})")
    rows = read_candidates(out)
    rows = rows[rows["status"] == "ok"]
    rows = rows.assign(x=(rows["macs"] / problem.base_costs["macs"]).round(2), cost=rows[name] / base,
                       fits=rows[name] <= limit)
    print(f"\n{name} / base by MACs fraction (x), with the best cheap score among candidates that fit:")
    table = rows.groupby("x").agg(n=("cost", "size"), cost_mean=("cost", "mean"), cost_min=("cost", "min"),
                                  cost_max=("cost", "max"), fit=("fits", "mean"))
    table["best_fitting_score"] = rows[rows["fits"]].groupby("x")["accuracy"].max()
    print(table.round(3).to_string())


if __name__ == "__main__":
    main()
