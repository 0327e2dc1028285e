"""``--agent neon``: prune a new dense network with a pretrained NEON policy, inference only.

The policy is loaded with plain PyTorch (:func:`~rayprune.neon.policy.load_policy`; the shipped
agent unless ``neon.checkpoint`` names another) and drives episodes on the problem's base model
and dataset: at each hidden layer it picks a keep fraction, the layer is pruned and the touched
layers retrained (:class:`~rayprune.neon.episode.PruningEpisode`). Nothing is learnt.

The validation split is cut in two first (:func:`~rayprune.neon.selection.selection_split`): the
episodes see only the **decide** part (rollback, reward, retraining's early stopping), and the
**selection** part checks the result. Every state of every episode — the unpruned network
(``step = -1``) and the network after each step — is a candidate row (``stage = "search"``) with
the usual columns (``accuracy``: on the decide split) plus NEON's (``rollout``, ``step``, ``pass``,
``layer``, ``keep_fraction``, ``removed_percent``, ``accuracy_change``, ``reward``, ``regime``,
``tolerance``, ``within_tolerance`` — all on the decide split — ``selection_accuracy_change`` and
``selection_lower_bound``, in points on the selection split, and ``chosen``).

How the result is chosen: each rollout ends with the last state within τ on the decide split
(``neon.select = "within_tolerance"``; ``"final"``: the episode's last state, the method as
published); of those within τ the smallest wins (``neon.rollouts``: the greedy episode plus
``n − 1`` sampled ones). Its path, from the unpruned network up to it, is then walked on the
selection split (:func:`~rayprune.neon.selection.check_path`; ``neon.walk``, default
``candidate_first``: the candidate alone, then, if it is not shown, every network of the path —
:func:`~rayprune.neon.selection.walk_plans`): the result is the last network whose accuracy change
is shown to be at least −τ (the lower bound of a one-sided paired interval at ``neon.confidence``),
the unpruned network if the first one walked is not.
The episodes may spend only ``neon.episode_tolerance`` of τ on the decide split. The summary
(``neon``) says which (``outcome``: accepted, fallback, unpruned) and why (``reason``).

The chosen network itself (its retrained weights) is what ``rayprune prune`` exports: its kept
neurons, in the original network's indices, become a pruning plan on the base architecture, so
``OUT/best`` loads with :func:`rayprune.pruning.load_pruned` like any other agent's result.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from rayprune.engine import evaluate, fine_tune
from rayprune.neon.episode import PruningEpisode
from rayprune.neon.interval import PairedChange
from rayprune.neon.policy import NeonPolicy, load_policy
from rayprune.neon.selection import (
    SelectionSplit,
    check_path,
    correct,
    resolution_points,
    selection_split,
    tolerance_units_hint,
    walk_plans,
)
from rayprune.neon.settings import EpisodeSettings
from rayprune.neon.training import RetrainSettings
from rayprune.pruning import PruningPlan, PruningSpace
from rayprune.pruning.rounding import candidate_id

__all__ = ["NeonResult", "episode_settings", "kept_neurons_plan", "run_episode", "search_neon", "walked_paths"]

Log = Callable[[str], None]


def kept_neurons_plan(base: nn.Module, example: torch.Tensor, roots: Sequence[str],
                      kept: Sequence[np.ndarray]) -> PruningPlan:
    """The pruning plan on ``base`` that keeps exactly neurons ``kept[i]`` of hidden layer ``roots[i]``.

    Built from a :class:`PruningSpace` whose importance scores the kept neurons 1 and the rest 0,
    so its ranking puts exactly the dropped neurons first.
    """
    keep_sets = {root: set(int(j) for j in k) for root, k in zip(roots, kept)}

    def importance(group) -> torch.Tensor:
        root = group[0].dep.target._name  # Torch-Pruning's node name = the module's name in `base`
        n = len(group[0].idxs)
        chosen = keep_sets.get(root)
        if chosen is None:
            return torch.ones(n)
        return torch.tensor([1.0 if j in chosen else 0.0 for j in range(n)])

    space = PruningSpace(base, example, importance=importance)
    by_root = {g.root: g for g in space.groups}
    missing = sorted(set(keep_sets) - set(by_root))
    if missing:
        raise ValueError(f"Layers {missing} are not prunable groups of the base model; groups are {sorted(by_root)}.")
    counts = [len(keep_sets[g.root]) if g.root in keep_sets else g.channels for g in space.groups]
    return space.plan_from_counts(counts)


@dataclass
class _State:
    """A network reached by an episode, with what the row and the export need."""

    row: dict[str, Any]
    model: nn.Module
    roots: list[str]
    kept: list[np.ndarray]


def run_episode(
    policy: NeonPolicy,
    episode: PruningEpisode,
    *,
    greedy: bool = True,
    rng: np.random.Generator | None = None,
    on_step: Callable[[dict[str, Any], PruningEpisode], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``episode`` to its end with ``policy`` (inference only); returns the step records.

    Example::

        records = run_episode(load_policy(), settings.episode(model, data, tolerance=1.0, seed=0))
    """
    records = []
    while not episode.done:
        action = policy.act(episode.observe(), greedy=greedy, rng=rng)
        record = episode.step(action)
        records.append(record)
        if on_step is not None:
            on_step(record, episode)
    return records


@dataclass
class NeonResult:
    """What ``search_neon`` hands back to ``run_prune``: the chosen network, which it builds and
    exports itself instead of re-building a candidate from keep ratios, and the selection split
    that checked it (``finalize`` checks a fine-tuned network on it again)."""

    problem: Any
    state: _State
    tolerance: float
    policy_dir: str
    info: dict[str, Any] = field(default_factory=dict)
    split: SelectionSplit | None = None
    base_correct: np.ndarray | None = None
    confidence: float = 0.7  # neon.confidence; the search passes the config's
    #: the chosen rollout's distinct networks up to its choice, the unpruned one first; the check walked
    #: ``neon.walk``'s networks of it (:func:`walked_paths`)
    path: list[_State] = field(default_factory=list)

    def best_row(self, frame: pd.DataFrame) -> pd.Series:
        """The chosen candidate's row in ``frame`` (the rows this search wrote)."""
        chosen = frame[(frame["stage"] == "search") & frame["chosen"].fillna(False).astype(bool)]
        if chosen.empty:
            raise RuntimeError("The NEON search wrote no row with chosen = True.")
        return chosen.iloc[-1]

    def finalize(self, *, seed: int = 0, progress: bool = False) -> tuple[nn.Module, dict[str, Any], PruningPlan]:
        """The chosen network (optionally fine-tuned with ``search.final_finetune``), its measured
        costs and accuracies, and the plan that replays it on the base architecture.

        A fine-tuned network is checked on the selection split like the path before it (the next
        test of the same sequence); one that cannot be shown within τ is not exported: the chosen
        network goes out as it was, and the summary says so."""
        p = self.problem
        model = copy.deepcopy(self.state.model).to(p.device).eval()
        started = time.perf_counter()
        iterations = 0
        if p.config.neon.final_finetune:
            stats = fine_tune(model, p.data, p.config.search.final_finetune.engine_config(), seed=seed, progress=progress)
            iterations = int(stats["iterations"])
            model.eval()
            if self.split is not None:
                change = PairedChange.of(self.base_correct, correct(model, self.split.x, self.split.y),
                                         confidence=self.confidence)
                kept = change.within(self.tolerance)
                self.info["final_finetune_kept"] = kept
                if kept:
                    self.info["selection"].update(change.to_dict())
                else:
                    self.info["reason"] += (f"; the fine-tuned network was not exported: on the selection split it is "
                                            f"{change.points:+.2f} pt, at least {change.lower_points:+.2f} pt, not shown "
                                            f"within {self.tolerance:g} pt")
                    model = copy.deepcopy(self.state.model).to(p.device).eval()
        seconds = time.perf_counter() - started
        costs = p.measure(model)
        example = torch.zeros((1, *p.data.input_shape))
        base = copy.deepcopy(p.base_model).to("cpu")
        plan = kept_neurons_plan(base, example, self.state.roots, self.state.kept)
        final = {
            "candidate_id": self.state.row["candidate_id"], "accuracy_val": p.accuracy(model, "val"),
            "accuracy_test": p.accuracy(model, "test"), "finetune_seconds": seconds,
            "finetune_iterations": iterations, **costs, "feasible": p.feasible(costs),
        }
        base_params = p.base_costs.get("params") or float(sum(t.numel() for t in p.base_model.parameters()))
        params = costs.get("params") or float(sum(t.numel() for t in model.parameters()))
        self.info.update({
            "reduction_factor": base_params / max(params, 1.0),
            "accuracy_change_val_points": 100.0 * (final["accuracy_val"] - p.base_accuracy["val"]),
            "accuracy_change_test_points": 100.0 * (final["accuracy_test"] - p.base_accuracy["test"]),
            "final_finetune_iterations": iterations,
        })
        return model, final, plan

    def summary_extra(self) -> dict[str, Any]:
        """NEON's part of ``summary.json``."""
        return {"neon": {"tolerance": self.tolerance, "policy": self.policy_dir, **self.info}}


def _row(problem, episode: PruningEpisode, record: dict[str, Any] | None, rollout: int,
         t_costs: float, costs: dict[str, float]) -> dict[str, Any]:
    counts = episode.widths
    space = problem.space
    row = {
        "candidate_id": candidate_id(counts),
        "keep_ratios": [c / g.channels for c, g in zip(counts, space.groups)],
        "keep_counts": list(counts),
        "finetune_iterations": int(record["retrain_iterations"]) if record else 0,
        "status": "ok", "error": None, "cached": False, "host": socket.gethostname(), "pid": os.getpid(),
        **costs, "accuracy": episode.accuracy, "accuracy_final": None, "feasible": problem.feasible(costs),
        "t_build_s": record["t_prune_s"] if record else 0.0, "t_finetune_s": record["t_retrain_s"] if record else 0.0,
        "t_eval_s": record["t_eval_s"] if record else 0.0, "t_costs_s": t_costs,
        "iteration": rollout, "rollout": rollout, "step": record["step"] if record else -1,
        "pass": record["pass"] if record else -1, "layer": record["layer"] if record else -1,
        "root": record["root"] if record else None, "keep_fraction": record["keep_fraction"] if record else 1.0,
        "removed_percent": record["removed_percent"] if record else 0.0,
        "reward": record["reward"] if record else 0.0, "regime": record["regime"] if record else None,
        "rolled_back": bool(record.get("rolled_back", False)) if record else False,
        "accuracy_change": episode.accuracy_change, "tolerance": episode.tolerance,
        "within_tolerance": episode.accuracy_change >= -episode.tolerance,
        "selection_accuracy_change": None, "selection_lower_bound": None, "chosen": False,
    }
    row["t_total_s"] = row["t_build_s"] + row["t_finetune_s"] + row["t_eval_s"] + row["t_costs_s"]
    return row


def _choose(states: list[_State], select: str) -> int:
    """Index of the rollout's network on the decide split: its last state (``final``) or its last
    state within τ (the unpruned network if none is)."""
    if select == "final":
        return len(states) - 1
    within = [i for i, s in enumerate(states) if s.row["within_tolerance"]]
    return within[-1] if within else 0


def _path(states: list[_State], end: int) -> list[_State]:
    """The distinct networks of an episode up to ``states[end]``, the unpruned one first (a step that
    kept its layer or was rolled back leaves the network as it was: it is not a new network)."""
    path = [states[0]]
    for state in states[1:end + 1]:
        if state.row["keep_counts"] != path[-1].row["keep_counts"]:
            path.append(state)
    return path


def walked_paths(path: list[_State], walk: str, base_params: int) -> list[list[_State]]:
    """The walks the check makes along ``path``, in order (:func:`~rayprune.neon.selection.walk_plans`)."""
    reductions = [base_params / max(_n_params(s.model), 1) for s in path]
    return [[path[i] for i in plan] for plan in walk_plans(reductions, walk)]


def _n_params(model: nn.Module) -> int:
    return int(sum(t.numel() for t in model.parameters()))


def _check(path: list[_State], hits: Callable[[_State], np.ndarray], split: SelectionSplit, base_correct: np.ndarray,
           *, tolerance: float, confidence: float, base_params: int) -> tuple[_State, dict[str, Any]]:
    """Walk ``path`` on the selection split (``hits``: a network's per-sample correctness there);
    the network handed back and the summary's account of it."""
    walk = check_path(base_correct, [hits(s) for s in path[1:]], tolerance=tolerance, confidence=confidence)
    result = path[walk.shown]
    change = walk.result or PairedChange.unchanged(split.samples, confidence=confidence)

    def name(state: _State) -> str:  # the rows' `step` (0-based), so that a message names the row to look up
        return f"step {state.row['step']} (x{base_params / max(_n_params(state.model), 1):.2f})"

    bound = f"at {100 * confidence:g} % confidence"
    if len(path) == 1:
        outcome, reason = "unpruned", "no rollout pruned anything within tolerance on the decide split"
    elif walk.complete:
        outcome = "accepted"
        reason = (f"rollout {result.row['rollout']} {name(result)}: shown within {tolerance:g} pt on the selection split "
                  f"(at least {change.lower_points:+.2f} pt {bound})")
    else:
        failed, stop = walk.failed, path[walk.shown + 1]
        why = (f"rollout {stop.row['rollout']}'s network after {name(stop)} cannot be shown within {tolerance:g} pt on "
               f"the selection split ({failed.points:+.2f} pt, at least {failed.lower_points:+.2f} pt {bound})")
        if walk.shown:
            outcome = "fallback"
            reason = (f"{why}; handed back {name(result)} of the same rollout, the last network before it that is "
                      f"(the rollouts' choice on the decide split was {name(path[-1])})")
        else:
            outcome = "unpruned"
            reason = f"{why}; handed back the unpruned network"
            best = resolution_points(split.samples, confidence)
            if -best > tolerance:
                reason += (f" (on {split.samples} selection samples a network that agrees with the base on every one "
                           f"is shown within {-best:.2f} pt {bound}, no closer: only one that gets more of them right "
                           "can be shown within this tolerance; a larger validation split, neon.selection_fraction or "
                           "tolerance lets the check resolve it)")
    if outcome == "unpruned":
        reason += tolerance_units_hint(tolerance)

    def where(state: _State) -> dict[str, Any]:
        return {"rollout": state.row["rollout"], "step": state.row["step"],
                "reduction_factor": base_params / max(_n_params(state.model), 1)}

    info = {"outcome": outcome, "reason": reason, "candidate": where(path[-1]),
            "path": {"networks": len(path) - 1, "shown": walk.shown},
            "selection": {**change.to_dict(), "decide_samples": len(split.decide_indices),
                          "resolution_points": resolution_points(split.samples, confidence),
                          "interval": "one-sided paired score bound (Tango)"}}
    if walk.failed is not None:
        info["stopped_at"] = {**where(path[walk.shown + 1]), **walk.failed.to_dict()}
    return result, info


def episode_settings(neon, policy: NeonPolicy, log: Log = print) -> EpisodeSettings:
    """The episode settings at prune time: the agent's own (``policy.json``'s ``episode``, what it
    was trained with) unless the config's ``neon`` section sets a value, which then wins (logged)."""
    trained = EpisodeSettings.from_meta(policy.actions, policy.meta.get("episode", {}))
    overrides: dict[str, Any] = {}
    for name in ("passes", "activation_samples", "rollback", "stop_when_idle", "retrain"):
        if name not in neon.model_fields_set or getattr(neon, name) is None:
            continue
        mine = RetrainSettings.from_config(neon.retrain) if name == "retrain" else getattr(neon, name)
        if mine != getattr(trained, name):
            log(f"neon: {name} = {mine} from the config (the agent was trained with {getattr(trained, name)})")
        overrides[name] = mine
    return dataclasses.replace(trained, **overrides)


def search_neon(problem, evaluator, writer, seed: int, log: Log = print, **options: Any) -> NeonResult:
    """Apply a pretrained NEON policy to ``problem`` (zero-shot); rows go to ``writer``.

    The episodes decide on part of the validation split; the result is checked on the rest
    (``neon.selection_fraction``, ``neon.confidence``; module docstring). ``options`` may override
    ``tolerance`` and ``checkpoint`` of ``problem.config.neon``; anything else (``address``, ...) is
    accepted and ignored: NEON needs no Ray at prune time.
    """
    neon = problem.config.neon
    tolerance = float(options.get("tolerance") if options.get("tolerance") is not None else neon.tolerance)
    checkpoint = options.get("checkpoint") if options.get("checkpoint") is not None else neon.checkpoint
    policy = load_policy(checkpoint)
    if list(neon.actions) != policy.actions:
        log(f"neon: the agent chooses among its own keep fractions {policy.actions} (neon.actions is ignored)")
    settings = episode_settings(neon, policy, log)
    episode_tolerance = tolerance * neon.episode_tolerance  # what the episodes may spend; the check asks for τ
    split = selection_split(problem.data.to("cpu"), neon.selection_fraction, seed=seed)
    data = split.decide
    base = copy.deepcopy(problem.base_model).to("cpu").eval()
    base_params = _n_params(base)
    decide_accuracy = float(evaluate(base, data.x_val, data.y_val))
    base_correct = correct(base, split.x, split.y)
    log(f"neon: agent {policy.directory} (trained on {len(policy.meta.get('training', {}).get('datasets', [])) or '?'} "
        f"datasets), tolerance {tolerance:g} points"
        + (f" ({episode_tolerance:g} for the episodes)" if episode_tolerance != tolerance else "")
        + f", {settings.passes} pass(es), "
        f"{neon.rollouts} rollout(s), select {neon.select!r}, rollback {'on' if settings.rollback else 'off'}, "
        + (f"layers kept at >= {neon.min_keep:g} of their width (neon.min_keep); " if neon.min_keep else
           "layers may go down to one neuron (neon.min_keep; pruning.min_keep is for the budgeted agents); ")
        + f"validation split: {len(split.decide_indices)} samples to decide on, {split.samples} to check the result "
        f"(a network that agrees with the base on all of them is shown within "
        f"{-resolution_points(split.samples, neon.confidence):.2f} pt at {100 * neon.confidence:g} % confidence)")
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny layers: a second thread only waits on a shared core (often 10x slower)
    rollouts: list[list[_State]] = []
    started = time.time()
    try:
        for r in range(neon.rollouts):
            episode = settings.episode(base, data, tolerance=episode_tolerance, seed=seed + r, base_accuracy=decide_accuracy,
                                       importance=problem.config.pruning.importance,
                                       ignored_layers=problem.config.pruning.ignored_layers,
                                       min_keep=neon.min_keep)
            if episode.roots != [g.root for g in problem.space.groups]:
                raise ValueError(f"NEON's hidden layers {episode.roots} differ from the problem's prunable groups "
                                 f"{[g.root for g in problem.space.groups]}.")
            states: list[_State] = []

            def keep_state(record: dict[str, Any] | None, ep: PruningEpisode, r=r, states=states) -> None:
                t0 = time.perf_counter()
                costs = problem.measure(ep.model)
                row = _row(problem, ep, record, r, time.perf_counter() - t0, costs)
                states.append(_State(row, copy.deepcopy(ep.model), ep.roots, [k.copy() for k in ep.kept]))
                if record is not None:
                    log(f"neon [rollout {r} step {record['step']} of {ep.total_steps}] layer {record['layer']} "
                        f"keep {record['keep_fraction']:.2f}: width {record['width_before']} -> {record['width_after']}, "
                        f"params {row.get('params', ep.params):.0f}, decide accuracy {100 * ep.accuracy:.2f}% "
                        f"({ep.accuracy_change:+.2f} pt), reward {record['reward']:.4g} ({record['regime']}"
                        + (f", rolled back: tried {record['tried_accuracy_change']:+.2f} pt" if record.get("rolled_back") else "")
                        + ")")

            keep_state(None, episode)
            run_episode(policy, episode, greedy=(r == 0), rng=rng, on_step=keep_state)
            rollouts.append(states)
    finally:
        torch.set_num_threads(threads)
    # the choice on the decide split: per rollout its network, then the smallest of those within τ
    ends = [_choose(states, neon.select) for states in rollouts]
    within = [r for r, (states, end) in enumerate(zip(rollouts, ends)) if states[end].row["within_tolerance"]]
    best = min(within, key=lambda r: _n_params(rollouts[r][ends[r]].model)) if within else 0
    # ... checked on the selection split, along the winner's path
    path = _path(rollouts[best], ends[best]) if within else rollouts[best][:1]
    every = [s for rollout in rollouts for s in rollout]
    hits = {id(s): correct(s.model, split.x, split.y) for s in every}
    looks = []  # the first walk that shows all it walks decides, else the last one's
    for walked in walked_paths(path, neon.walk, base_params):
        winner, check = _check(walked, lambda s: hits[id(s)], split, base_correct, tolerance=tolerance,
                               confidence=neon.confidence, base_params=base_params)
        looks.append(check)
        if check["outcome"] == "accepted":
            break
    if len(looks) > 1 and "stopped_at" in looks[0]:  # candidate_first, the candidate not shown: say so first
        stop = looks[0]["stopped_at"]
        check["reason"] = (f"the candidate alone is not shown within {tolerance:g} pt on the selection split "
                           f"({stop['accuracy_change_points']:+.2f} pt, at least {stop['lower_bound_points']:+.2f} pt "
                           f"at {100 * neon.confidence:g} % confidence); then every network of its path: "
                           + check["reason"])
        check["first_look"] = {"candidate": stop}
    winner.row["chosen"] = True
    original = rollouts[0][0].row["keep_counts"]
    for state in every:  # every network's change on the selection split, for the rows (the walk used its path's)
        change = PairedChange.unchanged(split.samples, confidence=neon.confidence) \
            if state.row["keep_counts"] == original else \
            PairedChange.of(base_correct, hits[id(state)], confidence=neon.confidence)
        state.row["selection_accuracy_change"] = change.points
        state.row["selection_lower_bound"] = change.lower_points
        writer.add(state.row)
    info = {
        "select": neon.select, "rollouts": neon.rollouts, "passes": settings.passes, "actions": list(policy.actions),
        "confidence": neon.confidence, "selection_fraction": neon.selection_fraction,
        "episode_tolerance": episode_tolerance, "walk": neon.walk, "path_networks": len(path) - 1, **check,
        "chosen_rollout": winner.row["rollout"], "chosen_step": winner.row["step"],
        "search_accuracy_change_points": winner.row["accuracy_change"], "search_seconds": time.time() - started,
        "keep_counts": winner.row["keep_counts"], "search_reduction_factor": base_params / max(_n_params(winner.model), 1),
    }
    log(f"neon: {check['outcome']}: {check['reason']}")
    return NeonResult(problem=problem, state=winner, tolerance=tolerance, policy_dir=str(policy.directory), info=info,
                      split=split, base_correct=base_correct, confidence=neon.confidence, path=path)
