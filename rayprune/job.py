"""``rayprune prune`` for one budget level: search, final fine-tune, export, summary.

The search itself is an *agent*: a function ``agent(problem, evaluator, writer, seed, log)`` that
evaluates candidates (each evaluation a row given to ``writer``). Everything around it is shared:
the problem is built once, the best feasible row is fine-tuned for ``search.final_finetune``,
exported to ``OUT/best/`` and summarised in ``OUT/best/summary.json`` and a printed table.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from .agents.baselines import random_keep_ratios, uniform_keep_ratio
from .config import Config
from .costs import CostContext, measure_latency_ms
from .evaluation.candidate import CandidateEvaluator
from .problem import PruningProblem
from .pruning import save_pruned
from .results import CandidateWriter, merge_candidates, read_candidates
from .table import format_table, human

__all__ = ["AGENTS", "run_prune", "check_reachable", "BudgetUnreachable"]

Log = Callable[[str], None]


class BudgetUnreachable(ValueError):
    """Even the smallest model in the pruning space misses a budget."""


def _search_uniform(problem: PruningProblem, evaluator: CandidateEvaluator, writer: CandidateWriter, seed: int, log: Log,
                    **_: Any) -> None:
    ratio, ok = uniform_keep_ratio(problem)
    log(f"uniform: keep ratio {ratio:.4f} for all {problem.space.num_groups} groups"
        + ("" if ok else " (budget not met even at min_keep)"))
    writer.add({**evaluator.evaluate([ratio] * problem.space.num_groups, seed=seed), "iteration": 0})


def _search_random(problem: PruningProblem, evaluator: CandidateEvaluator, writer: CandidateWriter, seed: int, log: Log,
                   **_: Any) -> None:
    rng = np.random.default_rng(seed)
    n = problem.config.search.evaluations
    best = None
    for i in range(n):
        ratios = random_keep_ratios(problem, rng)
        if ratios is None:
            continue
        row = evaluator.evaluate(ratios, seed=seed * 100_003 + i)
        writer.add({**row, "iteration": i})
        if row["feasible"] and (best is None or row["accuracy"] > best):
            best = row["accuracy"]
        log(f"random [{i + 1}/{n}] accuracy {row['accuracy']:.4f} feasible={row['feasible']} best={best if best is None else round(best, 4)}")


def _search_crl(*args: Any, **kwargs: Any) -> Any:
    from .agents.crl import search_crl  # imports Ray and RLlib only when this agent runs

    return search_crl(*args, **kwargs)


def _search_neon(*args: Any, **kwargs: Any) -> Any:
    from .neon.apply import search_neon  # the NEON package (policy, episodes) only when this agent runs

    return search_neon(*args, **kwargs)


#: Search agents by name: ``agent(problem, evaluator, writer, seed, log, address=...)``.
AGENTS: dict[str, Callable[..., Any]] = {"uniform": _search_uniform, "random": _search_random, "crl": _search_crl,
                                         "neon": _search_neon}
#: Agents that need no budget: NEON trades size for accuracy through its tolerance (neon.tolerance).
BUDGETLESS_AGENTS = frozenset({"neon"})


def check_reachable(problem: PruningProblem) -> dict[str, float]:
    """Costs of the smallest model in the space; raises :class:`BudgetUnreachable` if a budget is below them."""
    smallest = problem.reachable()
    missed = {k: (smallest[k], lim) for k, lim in problem.limits.items() if smallest[k] > lim * (1 + 1e-9)}
    if missed:
        parts = [f"{k} <= {human(lim)} but the smallest model in the space has {human(v)}" for k, (v, lim) in missed.items()]
        raise BudgetUnreachable(
            "Budget cannot be met: " + "; ".join(parts)
            + f" (pruning.min_keep={problem.config.pruning.min_keep}). Lower pruning.min_keep or raise the budget."
        )
    return smallest


def _best_row(frame: pd.DataFrame) -> Optional[pd.Series]:
    ok = frame[(frame["status"] == "ok") & frame["feasible"].astype(bool)]
    if ok.empty:
        return None
    sort_cols = ["accuracy"] + [c for c in ("params",) if c in ok.columns]
    return ok.sort_values(sort_cols, ascending=[False] + [True] * (len(sort_cols) - 1)).iloc[0]


def run_prune(
    cfg: Config,
    out_dir: str | Path,
    *,
    agent: Optional[str] = None,
    seed: Optional[int] = None,
    progress: bool = True,
    log: Log = print,
    problem: Optional[PruningProblem] = None,
    address: Optional[str] = None,
    agent_options: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Search, fine-tune and export; returns the summary also written to ``OUT/best/summary.json``.

    ``agent_options`` are passed to the agent as keyword arguments (NEON: ``tolerance``, ``checkpoint``).
    An agent may return an object with ``best_row(frame)``, ``finalize(seed=, progress=)`` and
    ``summary_extra()`` (NEON does): it then picks its own result row and builds the exported model
    itself, instead of the best feasible row being re-built from its keep ratios and fine-tuned."""
    agent = agent or cfg.search.agent
    if agent not in AGENTS:
        raise ValueError(f"Unknown agent {agent!r}; available: {sorted(AGENTS)}.")
    if not cfg.budgets and agent not in BUDGETLESS_AGENTS:
        raise ValueError("No budget given: set 'budgets' in the config or pass --budget NAME=VALUE.")
    seed = cfg.seed if seed is None else seed
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    if problem is not None:
        same = ("model", "data", "base_training", "pruning", "costs", "seed")
        if any(getattr(problem.config, k) != getattr(cfg, k) for k in same):
            raise ValueError("run_prune(problem=...) was built from a config whose model, data, base training, pruning, "
                             "costs or seed differ from `cfg`; build the problem from `cfg`.")
        if problem.config != cfg:  # budgets or search settings differ: same model and data, new limits
            problem = PruningProblem.from_parts(cfg, problem.data, problem.base_model, problem.base_info,
                                                device=problem.device, base_costs=problem.base_costs,
                                                base_accuracy=problem.base_accuracy)
    problem = problem or PruningProblem.from_config(cfg, progress=progress, log=log)
    check_reachable(problem)
    evaluator = CandidateEvaluator(problem)
    constants = {"sweep_id": uuid.uuid4().hex[:12], "trial_id": f"{agent}-{seed}", "agent": agent, "seed": seed, "stage": "search"}
    for b in problem.budgets:
        constants[f"budget_{b.metric}"] = b.value
        constants[f"limit_{b.metric}"] = problem.limits[b.metric]
    writer = CandidateWriter(out, constants=constants, flush_every=8, name=constants["trial_id"])
    result = None
    try:
        result = AGENTS[agent](problem, evaluator, writer, seed, log, address=address, **(agent_options or {}))
    finally:
        writer.flush()
    frame = read_candidates(out)
    own = result if hasattr(result, "finalize") and hasattr(result, "best_row") else None  # builds its own result
    if own is not None:
        best = own.best_row(frame)
    else:
        best = _best_row(frame[frame["stage"] == "search"]) if not frame.empty else None
    if best is None:
        merge_candidates(out)
        raise RuntimeError(f"No feasible candidate among {len(frame)} evaluated; rows are in {out / 'candidates.parquet'}.")
    ratios = [float(r) for r in best["keep_ratios"]]
    if own is not None:
        model, final, plan = own.finalize(seed=seed, progress=progress)
    else:
        log(f"Final fine-tune of {best['candidate_id']} ({cfg.search.final_finetune.iterations or cfg.search.final_finetune.epochs}"
            f" {'iterations' if cfg.search.final_finetune.iterations is not None else 'epochs'})")
        model, final = evaluator.finalize(ratios, seed=seed, progress=progress)
        plan = problem.space.plan(ratios)
    writer.add({**best.to_dict(), "stage": "final", "finetune_iterations": final["finetune_iterations"],
                "cached": False, "t_build_s": None, "t_costs_s": None, "t_eval_s": None,
                "t_finetune_s": final["finetune_seconds"], "t_total_s": final["finetune_seconds"],
                "accuracy": final["accuracy_val"], "accuracy_final": final["accuracy_test"], "feasible": final["feasible"],
                **{k: final[k] for k in problem.costs}})
    writer.flush()
    merge_candidates(out)
    lat_ctx = problem.context
    base_latency = measure_latency_ms(problem.base_model, lat_ctx)
    pruned_latency = measure_latency_ms(model, lat_ctx)
    summary = {
        "agent": agent,
        "seed": seed,
        "config_name": cfg.name,
        "model": cfg.model.name,
        "dataset": problem.data.name,
        "budgets": {b.metric: {"value": b.value, "relative": b.relative, "limit": problem.limits[b.metric]} for b in problem.budgets},
        "feasible": bool(final["feasible"]),
        "keep_ratios": ratios,
        "keep_counts": problem.space.keep_counts(ratios),
        "groups": [g.root for g in problem.space.groups],
        "base": {**problem.base_costs, "latency_ms": base_latency,
                 "accuracy_val": problem.base_accuracy["val"], "accuracy_test": problem.base_accuracy["test"]},
        "pruned": {**{k: final[k] for k in problem.costs}, "latency_ms": pruned_latency,
                   "accuracy_val": final["accuracy_val"], "accuracy_test": final["accuracy_test"],
                   "search_accuracy": float(best["accuracy"])},
        "evaluations": int((frame["stage"] == "search").sum()),
        "seconds": time.time() - started,
        "latency_context": {"device": lat_ctx.device, "batch_size": lat_ctx.batch_size, "threads": lat_ctx.threads},
    }
    if own is not None and hasattr(own, "summary_extra"):
        summary.update(own.summary_extra())
    best_dir = save_pruned(
        model, out / "best", architecture=problem.architecture, plan=plan,
        input_shape=problem.data.input_shape, extra={"summary": summary},
    )
    (best_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    log(summary_table(summary))
    return summary


def summary_table(summary: dict[str, Any]) -> str:
    """Base vs pruned, one row per metric."""
    base, pruned = summary["base"], summary["pruned"]
    rows = []
    for key in [k for k in base if k in pruned]:
        b, p = base[key], pruned[key]
        ratio = f"{p / b:.3f}x" if isinstance(b, (int, float)) and b else "-"
        if key.startswith("accuracy"):
            rows.append([key, f"{100 * b:.2f}%", f"{100 * p:.2f}%", f"{100 * (p - b):+.2f} pt"])
        else:
            rows.append([key, human(b), human(p), ratio])
    head = f"{summary['model']} on {summary['dataset']} | agent {summary['agent']} | budgets " + ", ".join(
        f"{k}<={human(v['limit'])}" for k, v in summary["budgets"].items()
    ) + f" | feasible: {'yes' if summary['feasible'] else 'NO'}"
    return head + "\n" + format_table(["metric", "base", "pruned", "pruned/base"], rows)
