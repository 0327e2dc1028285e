"""``rayprune prune``: one budget level, one agent — search, select, fine-tune, export, summarise.

The same path as a sweep, for one level and one trial: the agent proposes through the search
loop (:mod:`rayprune.search.loop`), candidates are scored on the evaluator pool, and
:func:`rayprune.search.selection.select_and_finalize` re-ranks, fine-tunes and exports the winner
to ``OUT/best/`` with ``OUT/best/summary.json`` (base vs pruned) and a printed table.

``--agent neon`` is the exception: NEON is budgetless (it trades size for accuracy through its
tolerance) and builds its own result by pruning neurons layer by layer; it shares the output
layout, not the search loop.
"""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

from ..config import Config
from ..costs import measure_latency_ms
from ..costs.budget import within
from ..costs.levels import Level
from ..costs.registry import TIMED_COSTS
from ..errors import BudgetUnreachable, Interrupted, NoModelError, UserError
from ..names import SELECTION_TRIAL, STAGE_FINAL, STAGE_SEARCH, STAGE_SELECT, is_in_memory
from ..problem import PruningProblem
from ..report import format_metric
from ..results import CandidateWriter, failed_candidates, merge_candidates, read_candidates
from ..text_table import format_table, human

__all__ = ["run_prune", "check_reachable", "loose_budget_lines", "check_out_dir", "BudgetUnreachable", "NoModelError",
           "summary_table"]

Log = Callable[[str], None]


def _planned(agent: str, evaluations: int, space: Any) -> str:
    """How many candidates a run will score: ``evaluations``, or for uniform/global, which stop once each level is
    met, one per level with analytic budgets and at most :attr:`UniformAgent.MAX_AIMS` per level with a measured
    one (the header said "scoring 12 candidates" and 6 were)."""
    from ..agents.baselines import UniformAgent

    if agent not in ("uniform", "global"):
        return f"{evaluations} candidates"
    aimed = sum(space.macs_aim(level) is not None for level in range(space.num_levels))
    most = min(evaluations, space.num_levels - aimed + aimed * UniformAgent.MAX_AIMS)
    return (f"about {most} of {evaluations} candidates (it stops once each level is met: one per level, up to "
            f"{UniformAgent.MAX_AIMS} aims on a measured budget, a failed one asked twice)") if most < evaluations \
        else f"{evaluations} candidates"


def check_reachable(problem: PruningProblem, levels: Optional[list[Level]] = None, *,
                    log: Optional[Log] = None, smallest: Optional[dict[str, float]] = None) -> dict[str, float]:
    """Costs of the smallest model in the space; raises :class:`BudgetUnreachable` naming every level
    (and budget) below them. ``log``: also say which budgets the unpruned model already meets
    (:func:`loose_budget_lines`). ``smallest``: those costs measured already (a timed cost measured twice
    reads twice: `validate` printed one latency in its table and another in the error under it)."""
    smallest = problem.reachable() if smallest is None else smallest
    levels = levels if levels is not None else [Level.from_budgets(problem.budgets, problem.base_costs)]
    for line in loose_budget_lines(problem, levels) if log is not None else ():
        log(line)
    # a limit the unpruned model meets is reachable, whatever the smallest model has (a cost of the user's need not
    # shrink with the model: the base already meeting it was warned about above and then refused as unreachable)
    base = problem.base_costs
    missed = [f"{lvl.name}: {k} <= {human(lim)} but the smallest model in the space has {human(smallest[k])}"
              for lvl in levels for k, lim in lvl.limits.items()
              if not within(smallest[k], lim) and not (base.get(k) is not None and within(base[k], lim))]
    if missed:
        # an absolute budget written as a fraction (fb=0.4 meant 40 % of a 100 kB model): say how to write that
        fractions = sorted({f"{k}={100 * lim:g}% (or rel:{lim:g})" for lvl in levels for k, lim in lvl.limits.items()
                            if not within(smallest[k], lim) and not within(base.get(k, float("inf")), lim)
                            and lvl.values.get(k) == lim and 0 < lim < 1
                            and problem.base_costs.get(k, 0) > 1})
        hint = (f" A budget on {', '.join(f.split('=')[0] for f in fractions)} is absolute, in the cost's own unit; "
                f"for a fraction of the unpruned model's write {', '.join(fractions)}.") if fractions else ""
        space = problem.space
        whole = len(space.skipped) + len(space.unbuildable)
        left = (f" {whole} group(s) of the model are left unpruned (rooted at "
                f"{[r for r, _ in [*space.skipped, *space.unbuildable]][:6]}; the warning above says why), so the "
                f"smallest model keeps them whole: what cannot be pruned there may be what the budget needs."
                ) if whole else ""
        fixed, beyond = _fixed_params_text(problem, levels, smallest)
        timed = _timed_floor_text(problem, levels, smallest)
        only_timed = all(k in TIMED_COSTS for lvl in levels for k, lim in lvl.limits.items()
                         if not within(smallest[k], lim) and not within(base.get(k, float("inf")), lim))
        advice = ("Raise the budget" if beyond or (timed and only_timed)
                  else "Lower pruning.min_keep or raise the budget")
        fixed += timed
        raise BudgetUnreachable(
            "Budget cannot be met: " + "; ".join(missed)
            + f" (pruning.min_keep={problem.config.pruning.min_keep}). {advice}." + fixed + left + hint
        )
    return smallest


def _timed_floor_text(problem: PruningProblem, levels: list[Level], smallest: dict[str, float]) -> str:
    """For a missed timed budget (latency): what share of the base's time the smallest model keeps against its share
    of the MACs — time that pruning does not remove (the runtime's fixed cost, small layers), so lowering
    pruning.min_keep would not help; empty when no timed budget is missed."""
    from ..costs.metrics import count_macs

    missed = sorted({k for lvl in levels for k, lim in lvl.limits.items() if k in TIMED_COSTS
                     and not within(smallest[k], lim) and not within(problem.base_costs.get(k, float("inf")), lim)})
    if not missed:
        return ""
    try:
        model = problem.smallest_model()
        macs = count_macs(model, problem.context) / max(count_macs(problem.base_model, problem.context), 1.0)
    except Exception:  # noqa: BLE001 - a note on the refusal, never a reason to replace it
        return ""
    kept = {k: smallest[k] / problem.base_costs[k] for k in missed}
    if all(share <= 2 * macs + 0.05 for share in kept.values()):
        return ""  # the time shrinks with the work: fewer channels (min_keep) would take it further
    lat = problem.config.costs.latency
    shares = ", ".join(f"{100 * share:.0f} % of the base's {k}" for k, share in kept.items())
    return (f" The smallest model keeps {shares} with {100 * macs:.0f} % of its MACs: the rest is time pruning does "
            f"not remove (the runtime's fixed cost per call, small layers), so a lower pruning.min_keep would hardly "
            f"move it. It is timed with runtime {lat.runtime}, batch size {lat.batch_size}, on {lat.device}: time "
            "it as the model will be deployed (costs.latency).")


def _fixed_params_text(problem: PruningProblem, levels: list[Level], smallest: dict[str, float]) -> tuple[str, bool]:
    """For a missed params budget: how many of the smallest model's parameters sit in layers no group prunes (naming
    the largest), and, when those alone break the limit (the bool), that no pruning.min_keep can meet it."""
    missed = [(k, lim) for lvl in levels for k, lim in lvl.limits.items() if not within(smallest[k], lim)]
    limits = [lim for k, lim in missed if k == "params"]
    if not limits:
        return "", False
    whole = problem.unpruned_parameters()
    fixed = sum(n for _, _, n in whole)
    if not whole or fixed < 0.25 * smallest["params"]:
        return "", False
    named = ", ".join(f"{name} ({kind}, {human(n)})" for name, kind, n in whole[:3]) + (
        f" and {len(whole) - 3} more" if len(whole) > 3 else "")
    if fixed > max(limits) and all(k == "params" for k, _ in missed):  # no min_keep helps any missed budget
        return (f" No pruning.min_keep reaches it: {human(fixed)} of the smallest model's {human(smallest['params'])} "
                f"parameters are in layers no group prunes ({named}), more than the limit; rayprune prunes the channels "
                f"of convolutions, linear layers and attention and what is coupled to them (`validate --groups` lists "
                f"the groups).", True)
    return (f" {human(fixed)} of the smallest model's {human(smallest['params'])} parameters are in layers no group "
            f"prunes ({named}).", False)


def loose_budget_lines(problem: PruningProblem, levels: Optional[list[Level]] = None) -> list[str]:
    """A warning per level and cost whose limit the unpruned model already meets: nothing needs pruning for it
    (``--budget latency_ms=0.8`` is 0.8 ms; a fraction of the base is written ``80%`` or ``rel:0.8``)."""
    levels = levels if levels is not None else [Level.from_budgets(problem.budgets, problem.base_costs)]
    lines = []
    for lvl in levels:
        for k, lim in lvl.limits.items():
            base = problem.base_costs.get(k)
            if base is None or base > lim:
                continue
            value = lvl.values.get(k)
            hint = (f"; a fraction of the base is written {k}={100 * value:g}% or rel:{value:g}"
                    if value is not None and value < 1 and abs(value - lim) < 1e-12 else "")
            lines.append(f"warning: {lvl.name}: the unpruned model already meets {k} <= {human(lim)} (it has "
                         f"{human(base)}), so nothing is pruned for it{hint}.")
    return lines


@contextlib.contextmanager
def given_back_if_empty(out: Path) -> Iterator[None]:
    """Around a run into ``out``: if the run fails while ``out`` is still empty and the run created it, remove it,
    and each parent folder the run created with it that is empty then (``--out runs/new/a`` with no ``runs/``:
    a refused model, data or agent leaves no empty folder behind)."""
    out = Path(out).absolute()
    # innermost first; 'runs/new/../x' creates runs/new, which its '..' step names only as 'runs/new/..'
    created = [p for p in (out, *out.parents) if not p.exists() and p.name != ".."]
    try:
        yield
    except BaseException:
        for folder in created:
            if not folder.exists():  # already given back (a sweep's claim undoes itself)
                continue
            if not folder.is_dir() or any(folder.iterdir()):
                break
            folder.rmdir()
        raise


def say_fixed_costs(rows, levels, base_costs, log: Log) -> None:
    """Before the selection: where a timed budget sits near its cost's fixed part, say so (its model will be cut
    far for little latency; :mod:`rayprune.search.fixed_cost`)."""
    from ..costs import TIMED_COSTS
    from .fixed_cost import fixed_cost_notes

    search = rows[rows["stage"] == STAGE_SEARCH] if not rows.empty and "stage" in rows.columns else rows
    for note in fixed_cost_notes(search, levels, base_costs, [c for c in TIMED_COSTS if c in base_costs]):
        log(note)


def check_out_dir(out: Path, *, what: str = "prune") -> None:
    """Refuse an output directory that already holds results (runs are never mixed), a path under a
    file, or a directory that cannot be written — before anything is computed."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"The output directory {out} (--out, or out= in Python) is a file; choose a directory.")
    if out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"The output directory {out} (--out, or out= in Python) is not empty (it holds {', '.join(sorted(p.name for p in out.iterdir())[:5])}); "
                              f"a {what} never mixes its results with another run's. Choose a new directory.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{uuid.uuid4().hex[:6]}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"The output directory {out} (--out, or out= in Python) cannot be written: {exc}") from None


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
    """Search, re-rank, fine-tune and export; returns the summary also written to ``OUT/best/summary.json``.

    ``agent_options`` go to the NEON agent (``tolerance``, ``checkpoint``).
    """
    from ..agents import AGENTS

    agent = agent or cfg.search.agent
    if agent not in AGENTS and agent != "neon":
        raise UserError(f"Unknown agent {agent!r}; available: {', '.join([*AGENTS, 'neon'])}.")
    if not cfg.budgets and agent != "neon":
        raise UserError("No budget given: set 'budgets' in the config, pass budgets={NAME: VALUE} in Python "
                        "or --budget NAME=VALUE on the command line.")
    seed = cfg.seed if seed is None else seed
    out = Path(out_dir).resolve()  # rows and summaries name absolute paths, as a sweep's do (a relative export_path
    # broke when the files were read from another directory)
    started = time.time()
    if agent != cfg.search.agent:  # so that building the problem checks what this run's agent reads (neon or not)
        cfg = cfg.model_copy(update={"search": cfg.search.model_copy(update={"agent": agent})})
    with given_back_if_empty(out):
        check_out_dir(out)
        summary = _prune(cfg, problem, out, agent=agent, seed=seed, progress=progress, log=log, address=address,
                         agent_options=agent_options)
    summary["seconds"] = time.time() - started
    (out / "best" / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    log(summary_table(summary))
    return summary


def _prune(cfg: Config, problem: Optional[PruningProblem], out: Path, *, agent: str, seed: int, progress: bool,
           log: Log, address: Optional[str], agent_options: Optional[dict[str, Any]]) -> dict[str, Any]:
    problem = _problem_for(cfg, problem, progress, log)
    constants: dict[str, Any] = {"sweep_id": uuid.uuid4().hex[:12], "trial_id": f"{agent}-{seed}", "agent": agent,
                                 "seed": seed, "stage": STAGE_SEARCH}
    for b in problem.budgets:
        constants[f"budget_{b.metric}"] = b.value
        constants[f"limit_{b.metric}"] = problem.limits[b.metric]
    if agent == "neon" and (problem.data.task != "classification" or problem.objective.custom_metric
                            or cfg.engine.loss):
        raise UserError("The neon agent prunes classifiers by their top-1 accuracy (its tolerance is in accuracy "
                        "points); it does not take data.task: regression, search.metric or engine.loss. Use a "
                        "search agent (evolution, crl, tpe, random) for those.")
    if agent == "neon":
        from ..problem import base_at_chance

        at_chance = base_at_chance(problem, imbalance=False)  # (a good model on imbalanced data is pruned)
        if at_chance:  # a tolerance around an accuracy at chance promises nothing (a run "kept" it at +100 points)
            raise UserError(f"The neon agent keeps the base model's accuracy within its tolerance, and {at_chance}")
        return _run_neon(problem, out, constants, seed=seed, progress=progress, log=log, options=agent_options or {})
    return _run_search(problem, out, constants, agent=agent, seed=seed, log=log, address=address)


def _problem_for(cfg: Config, problem: Optional[PruningProblem], progress: bool, log: Log) -> PruningProblem:
    if problem is None:
        return PruningProblem.from_config(cfg, progress=progress, log=log)
    same = ("model", "data", "base_training", "pruning", "costs", "seed")
    if any(getattr(problem.config, k) != getattr(cfg, k) for k in same):
        raise UserError("run_prune(problem=...) was built from a config whose model, data, base training, pruning, "
                         "costs or seed differ from `cfg`; build the problem from `cfg`.")
    if problem.config != cfg:  # budgets or search settings differ: same model and data, new limits
        problem = PruningProblem.from_parts(cfg, problem.data, problem.base_model, problem.base_info,
                                            device=problem.device, base_costs=problem.base_costs,
                                            base_accuracy=problem.base_accuracy)
    return problem


def _run_search(problem: PruningProblem, out: Path, constants: dict[str, Any], *, agent: str, seed: int, log: Log,
                address: Optional[str]) -> dict[str, Any]:
    from ..agents import SearchSpace, make_agent
    from ..agents.crl_batches import rounds_note
    from ..evaluation.pool import EvaluatorPool
    from ..evaluation.score import score_specs
    from ..ray_session import connect
    from .loop import SearchRun
    from .score_signal import chance_and_base, say_metric_direction
    from .selection import select_and_finalize, weak_level_priors

    cfg = problem.config
    level = Level.from_budgets(problem.budgets, problem.base_costs)
    check_reachable(problem, [level], log=log)
    connect(address, log=log, metadata={"rayprune": "prune", "config": cfg.name, "budgets": level.name})
    evaluation = check_evaluators_fit(cfg, log)
    space = SearchSpace.from_problem(problem, [level])
    spec, rerank = score_specs(cfg)
    pool = EvaluatorPool.from_config(problem, evaluation, name=constants["trial_id"],
                                     tags={"trial": constants["trial_id"], "budget": level.name})
    searcher = None
    try:
        pool.wait_ready()
        searcher = make_agent(agent, space, seed=seed, search=cfg.search, log=log)
        writer = CandidateWriter(out, constants=constants, name=constants["trial_id"])
        run = SearchRun(searcher, space, pool.score_batch, submit=pool.submit_batch if cfg.search.pipeline else None, spec=spec, writer=writer,
                        evaluations=cfg.search.evaluations, seed=seed, log=log)
        rounds = rounds_note(agent, cfg.search, 1)
        log(f"{agent}: scoring {_planned(agent, cfg.search.evaluations, space)}"
            f"{f' ({rounds})' if rounds else ''} ({spec.kind}) on {len(pool.actors)} evaluator(s)")
        warn_idle_evaluators(cfg, len(pool.actors), log)
        from ..telemetry import Telemetry

        telemetry = Telemetry({"sweep": constants["sweep_id"], "trial": constants["trial_id"], "budget": level.name})
        run.run(on_step=lambda metrics: run.publish(telemetry, metrics))
        rows = read_candidates(out)
        say_fixed_costs(rows, [level], problem.base_costs, log)
        say_metric_direction(rows, problem, log)
        selection_writer = CandidateWriter(out, constants={**constants, "stage": STAGE_SELECT, "trial_id": SELECTION_TRIAL},
                                           name=SELECTION_TRIAL)
        [result] = select_and_finalize(rows, [level], pool=pool, out_dir=out, rerank_spec=rerank,
                                       top_k=cfg.search.rerank.top_k, writer=selection_writer, seed=seed,
                                       cost_names=list(problem.costs), log=log,
                                       extra={"agent": agent, "budgets": level.values},
                                       reference=chance_and_base(problem), weak_finals=cfg.search.rerank.weak_finals,
                                       priors=weak_level_priors(cfg.search.rerank, lambda: space),
                                       export_to=lambda _level: out / "best")
    except KeyboardInterrupt:
        shutil.rmtree(out / "models", ignore_errors=True)  # the finals' scratch folder: nothing there is a model
        if not any(out.glob("candidates*")):  # interrupted before the first batch was written
            raise Interrupted("before any candidate was scored; nothing was kept. `rayprune prune` does not resume: "
                              "run it again") from None
        exported = (out / "best").is_dir()  # the selection moves a finished export there whole, or not at all
        model = (f"the model exported before the interrupt is in {out / 'best'} (rayprune.load_pruned reads it; "
                 "summary.json was not written)" if exported else "no model was exported")
        raise Interrupted(f"every scored candidate is kept in {out} (candidates.parquet) and {model}. "
                          "`rayprune prune` does not resume: run it again into a new --out (a `rayprune sweep` "
                          "can be resumed)") from None
    finally:
        if searcher is not None:
            searcher.close()
        pool.shutdown()
        _merge(out, log)
    if result.candidate_id is None:
        failed = failed_candidates(rows[rows["stage"] == STAGE_SEARCH]) if "stage" in rows.columns else None
        why = (f"{failed['count']} of the {failed['of']} candidates failed and were not scored; {failed['with_message']} "
               f"of them: {failed['message']}" if failed else "")
        reason = why if failed and failed["count"] == failed["of"] else result.error + (f". {why}" if why else "")
        raise NoModelError(f"No model for {level.name}: {reason}. Every scored candidate is kept in "
                           f"{out / 'candidates.parquet'}.")
    best = out / "best"  # where the selection exported it (a whole directory at once), as its final row says
    from ..pruning import load_pruned

    model = load_pruned(best, factory=_factory_of(problem))
    search_rows = rows[rows["stage"] == STAGE_SEARCH]
    summary = _summary(problem, agent, seed, result.keep_ratios, model, {
        **result.costs, "accuracy_val": result.accuracy_val, "accuracy_test": result.accuracy_test,
        "search_accuracy": result.search_accuracy, "rerank_accuracy": result.rerank_accuracy,
    }, feasible=result.feasible, evaluations=int(len(search_rows)))
    summary["failed"] = failed_candidates(search_rows)
    summary["onnx_error"] = result.onnx_error
    summary["search_signal"] = result.search_signal.to_json() if result.search_signal is not None else None
    summary["found_by"] = result.found_by  # the agent, or the selection's uniform candidate at a weak level
    return summary


def fitted_evaluation(cfg: Config, reserved: float, log: Log):
    """``cfg.evaluation`` with ``cpus`` fitted to the connected cluster where the user left it unset
    (:meth:`~rayprune.config.search.EvaluationConfig.fitted`; not on an autoscaling cluster, which grows)."""
    if cfg.sweep.wait_for_resources:  # the cluster will grow: 1 each unless set
        return cfg.evaluation.model_copy(update={"cpus": cfg.evaluation.cpus_each})
    evaluation, message = cfg.evaluation.fitted(node_resources(), reserved)
    if message:
        log(message)
    return evaluation


def node_resources() -> list[dict[str, float]]:
    """The CPUs and GPUs of each alive node of the connected cluster."""
    import ray

    return [{k: float(n.get("Resources", {}).get(k, 0.0)) for k in ("CPU", "GPU")} for n in ray.nodes()
            if n.get("Alive")]


def unplaceable(bundles: Sequence[Mapping[str, float]], what: str) -> Optional[str]:
    """Why ``bundles`` (each ``{"CPU": .., "GPU": ..}``) cannot be placed on the connected cluster's nodes, each
    bundle on one node (None: they can). The totals may fit while the bundles do not: a bundle never spans two
    nodes, and an evaluator's CPUs must be on the node that holds its GPU share."""
    from ..placement import describe_bundles, describe_nodes, packs

    nodes = node_resources()
    if packs(bundles, nodes):
        return None
    return (f"{what} ({describe_bundles(bundles)}) cannot be placed on this cluster's nodes ({describe_nodes(nodes)}): "
            "each must fit on one node")


def check_evaluators_fit(cfg: Config, log: Log):
    """The evaluation section for the connected cluster (:func:`fitted_evaluation`); refuses, with the numbers,
    an evaluator pool the cluster cannot hold: its actors would wait for resources that never come
    (``sweep.wait_for_resources: true`` waits for an autoscaler instead)."""
    import ray

    from ..evaluation.gpu_sharing import log_gpu_sharing

    ev = fitted_evaluation(cfg, 0.0, log)
    need = {"CPU": ev.cpus_each * ev.evaluators, **({"GPU": ev.gpus * ev.evaluators} if ev.gpus else {})}
    message = evaluator_shortfall(need, ray.cluster_resources(), ev.evaluators) or unplaceable(
        [ev.bundle(ev.cpus_each)] * ev.evaluators, f"The {ev.evaluators} evaluator(s)")
    if message is None:
        log_gpu_sharing(ev.gpus, ev.evaluators, log)
        return ev
    if cfg.sweep.wait_for_resources:
        log(f"{message}; waiting for the autoscaler (sweep.wait_for_resources).")
        return ev
    raise UserError(f"{message}. Lower evaluation.evaluators / evaluation.cpus / evaluation.gpus, or set "
                    "sweep.wait_for_resources: true on an autoscaling cluster.")


def resource_shortfall(need: Mapping[str, float], have: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """The resources of ``need`` that a cluster with ``have`` lacks: name -> (needed, available)."""
    return {k: (v, have.get(k, 0.0)) for k, v in need.items() if have.get(k, 0.0) + 1e-9 < v}


def evaluator_shortfall(need: dict[str, float], have: dict[str, float], evaluators: int) -> Optional[str]:
    """What an evaluator pool needing ``need`` lacks on a cluster with ``have`` (None: it fits).

    >>> evaluator_shortfall({"CPU": 16.0}, {"CPU": 2.0}, 2)
    'The 2 evaluator(s) need CPU: 16, the cluster has 2'
    >>> evaluator_shortfall({"CPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}, 2) is None
    True
    """
    short = resource_shortfall(need, have)
    if not short:
        return None
    return f"The {evaluators} evaluator(s) need " + ", ".join(f"{k}: {v:g}, the cluster has {h:g}"
                                                              for k, (v, h) in short.items())


def warn_idle_evaluators(cfg: Config, evaluators: int, log: Log) -> None:
    """A batch smaller than the evaluators leaves some idle every step (BENCHMARKS.md, "Scale")."""
    if cfg.search.batch_size < evaluators:
        log(f"warning: search.batch_size {cfg.search.batch_size} < {evaluators} evaluators: "
            f"{evaluators - cfg.search.batch_size} of them idle in every batch; set search.batch_size to at least "
            f"{2 * evaluators} (two chunks per evaluator) to use them.")


def _factory_of(problem: PruningProblem):
    """The user's model factory (already imported for this run), or the in-memory base model's copy, to
    reload its exported model."""
    name = problem.config.model.name
    if is_in_memory(name):  # handed over as an object: a copy of the unpruned base rebuilds it
        base = problem.base_model
        return lambda: copy.deepcopy(base).to("cpu")
    if ":" not in name or name.startswith("torchvision:"):
        return None
    from .._imports import import_object

    return import_object(name, what="model factory")


def _run_neon(problem: PruningProblem, out: Path, constants: dict[str, Any], *, seed: int, progress: bool, log: Log,
              options: dict[str, Any]) -> dict[str, Any]:
    from ..neon.apply import search_neon
    from ..pruning import read_spec

    writer = CandidateWriter(out, constants=constants, flush_every=8, name=constants["trial_id"])
    try:
        result = search_neon(problem, None, writer, seed, log, **options)
    finally:
        writer.flush()
    frame = read_candidates(out)
    best = result.best_row(frame)
    model, final, plan = result.finalize(seed=seed, progress=progress)
    ratios = [float(r) for r in best["keep_ratios"]]
    # a column the chosen row leaves empty (the unpruned network has no layer, no regime) is left out: alone in its
    # shard it would be written as float64 and clash with the search rows' strings when the shards are merged
    chosen = {k: v for k, v in best.to_dict().items() if v is not None and not (isinstance(v, float) and v != v)}
    writer.add({**chosen, "stage": STAGE_FINAL, "finetune_iterations": final["finetune_iterations"],
                "cached": False, "t_finetune_s": final["finetune_seconds"], "accuracy": final["accuracy_val"],
                "accuracy_final": final["accuracy_test"], "feasible": final["feasible"],
                **{k: final[k] for k in problem.costs}})
    writer.flush()
    _merge(out, log)
    summary = _summary(problem, "neon", seed, ratios, model, {**final, "search_accuracy": float(best["accuracy"])},
                       feasible=bool(final["feasible"]), evaluations=int((frame["stage"] == STAGE_SEARCH).sum()))
    summary.update(result.summary_extra())
    problem.export(model, out / "best", plan=plan, summary=summary)
    summary["onnx_error"] = read_spec(out / "best").get("onnx_error")
    return summary


def _merge(out: Path, log: Log) -> None:
    """Merge the shards into candidates.parquet; a failure is reported and loses nothing (the shards stay)."""
    try:
        merge_candidates(out)
    except Exception as exc:  # noqa: BLE001 - the shards hold every row; the merged file is a convenience
        log(f"warning: could not merge {out / 'candidates'}/ into candidates.parquet ({exc}); every row is "
            "still in the shards (rayprune.results.read_candidates reads them).")


def _summary(problem: PruningProblem, agent: str, seed: int, ratios: list[float], model, pruned: dict[str, Any], *,
             feasible: bool, evaluations: int) -> dict[str, Any]:
    cfg, ctx = problem.config, problem.context
    return {
        "agent": agent,
        "seed": seed,
        "config_name": cfg.name,
        "model": cfg.model.name,
        "dataset": problem.data.name,
        "metric": problem.objective.metric_name,
        "budgets": {b.metric: {"value": b.value, "relative": b.relative, "limit": problem.limits[b.metric]}
                    for b in problem.budgets},
        "feasible": bool(feasible),
        "keep_ratios": ratios,
        "keep_counts": problem.space.keep_counts(ratios),
        "groups": [g.root for g in problem.space.groups],
        # latency as the budget judged it where it is a configured cost (the base's from the run's start, the
        # pruned model's paired and re-timed alone); else timed now, for information
        "base": {**problem.base_costs, "latency_ms": problem.base_costs.get("latency_ms")
                 or measure_latency_ms(problem.base_model, ctx),
                 "accuracy_val": problem.base_accuracy["val"], "accuracy_test": problem.base_accuracy["test"]},
        "pruned": {**{k: pruned[k] for k in problem.costs if k in pruned},
                   "latency_ms": pruned.get("latency_ms") or measure_latency_ms(model, ctx),
                   "accuracy_val": pruned["accuracy_val"], "accuracy_test": pruned["accuracy_test"],
                   **{k: pruned[k] for k in ("search_accuracy", "rerank_accuracy") if pruned.get(k) is not None}},
        "evaluations": evaluations,
        "latency_context": {"device": ctx.device, "batch_size": ctx.batch_size, "threads": ctx.threads,
                            "runtime": ctx.runtime},
    }


def summary_table(summary: dict[str, Any]) -> str:
    """Base vs pruned, one row per metric, and the lines that qualify them (failures, ONNX, neon's promise)."""
    base, pruned = summary["base"], summary["pruned"]
    rows = []
    for key in [k for k in base if k in pruned]:
        b, p = base[key], pruned[key]
        ratio = f"{p / b:.3f}x" if isinstance(b, (int, float)) and b else "-"
        if key.startswith("accuracy") and summary.get("metric", "accuracy") != "accuracy":
            name = key.replace("accuracy", summary["metric"].rsplit(":", 1)[-1])
            rows.append([name, format_metric(b, "other"), format_metric(p, "other"), f"{p - b:+.4g} (diff)"])
        elif key.startswith("accuracy"):
            rows.append([key, f"{100 * b:.2f}%", f"{100 * p:.2f}%", f"{100 * (p - b):+.2f} pt"])
        else:
            rows.append([key, human(b), human(p), ratio])
    found = summary.get("found_by")
    by = f" (the exported model: {found})" if found and found != summary["agent"] else ""
    head = f"{summary['model']} on {summary['dataset']} | agent {summary['agent']}{by} | budgets " + ", ".join(
        f"{k}<={human(v['limit'])}" for k, v in summary["budgets"].items()
    ) + f" | feasible: {'yes' if summary['feasible'] else 'NO'}"
    table = head + "\n" + format_table(["metric", "base", "pruned", "pruned/base"], rows)
    failed = summary.get("failed")
    if failed:
        table += (f"\n{failed['count']} of {failed['of']} candidates failed and were not scored (status=error in "
                  f"candidates.parquet, column 'error'); {failed['with_message']} of them: {failed['message']}")
    if summary.get("onnx_error"):
        table += f"\nmodel.onnx not written: {summary['onnx_error']}"
    if summary.get("feasible") and summary.get("metric", "accuracy") == "accuracy":
        from .score_signal import near_chance_line

        level = ",".join(f"{k}={v['value'] if isinstance(v, dict) and 'value' in v else v}"
                         for k, v in summary["budgets"].items())
        line = near_chance_line(level, summary["pruned"].get("accuracy_val"), summary.get("search_signal"))
        table += f"\n{line}" if line else ""
    if "neon" in summary:  # the neon agent's promise: the selection split's change, its bound, what it rests on
        from ..neon.selection import describe

        table += "\n" + describe(summary["neon"])
    return table
