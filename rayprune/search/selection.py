"""From scored candidates to one exported model per budget level: the one path for prune and sweep.

Given every search row of a run (one candidate store: all agents, trials and levels together):

1. **Candidates of a level**: every ok search row whose measured costs fit the level, wherever it
   was found (a candidate found for ``params=0.1`` also serves ``params=0.5``).
2. **Re-rank** (``search.score: two_stage``): the ``top_k`` distinct candidates of each level by
   the cheap score get a short fine-tune and are scored on the whole validation split; the best
   re-ranked one wins. Without a re-rank the best search score wins. Under a timed budget
   (latency) the shortlisted candidates are first timed again one at a time; one over the limit
   gives its place to the level's next candidate (:func:`_shortlists`).
3. **Final**: each distinct winner is fine-tuned for ``search.final_finetune`` on the evaluator
   pool (in parallel), measured on validation and test, exported. At a level whose search score is
   weak (:mod:`rayprune.search.score_signal`: its best close to chance), the
   ``search.rerank.weak_finals`` best re-ranked candidates all get the final fine-tune
   (:func:`_weak_level_finals`), and so do the level's structured candidates (:func:`_prior_rows`:
   the uniform candidate, one keep ratio for every group, ``search.rerank.weak_uniform``; the global
   pruning candidate, ``search.rerank.weak_global``: each re-ranked, then finalised), and step 4
   takes the best of them by validation.
4. **Monotone front**: each level gets, among the final models that fit it, the one with the best
   validation accuracy. A level that contains another therefore never ends with a worse model
   (:func:`rayprune.costs.levels.contains`); its export may be the smaller level's model.

Re-rank and final rows are written with ``stage`` ``rerank`` / ``final``; the exported final rows
(``status`` ``ok``, one per level) carry the export path and form the Pareto front; a final that fails or
ends over its level's limit is an ``error`` row, and one that ran and is not exported (a smaller level's
model serves its level, or a weak level's runner-up) a ``superseded`` row with its numbers. Selection
decides on validation only; test accuracy is reported, never used to choose.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import pandas as pd

from .._io import atomic_directory
from ..costs import ANALYTIC_COSTS
from ..costs.budget import FEASIBILITY_RTOL, fits
from ..costs.levels import Level
from ..costs.paired import paired_columns
from ..costs.registry import TIMED_COSTS
from ..evaluation.score import ScoreSpec
from ..names import STAGE_FINAL, STAGE_RERANK, STAGE_SEARCH, STATUS_ERROR, STATUS_OK, STATUS_SUPERSEDED
from ..pruning.export import update_summary
from ..results import CandidateWriter, failed_candidates
from .score_signal import ScoreSignal, score_signal

__all__ = ["LevelResult", "candidates_for", "top_distinct", "monotone_choice", "select_and_finalize",
           "FINALS_DIR", "weak_level_priors", "prior_agent", "UNIFORM_AGENT"]

#: Where final models are exported before each level's choice is copied to ``models/<level>/``.
FINALS_DIR = ".finals"

Log = Callable[[str], None]


@dataclass
class LevelResult:
    """The model chosen for one budget level."""

    level: Level
    candidate_id: Optional[str] = None
    keep_ratios: Optional[list[float]] = None
    keep_counts: Optional[list[int]] = None
    accuracy_val: Optional[float] = None
    accuracy_test: Optional[float] = None
    costs: dict[str, float] = field(default_factory=dict)
    search_accuracy: Optional[float] = None
    rerank_accuracy: Optional[float] = None
    found_for: Optional[str] = None  # the level whose selection produced this model
    found_by: Optional[str] = None  # the agent (and trial) that proposed it
    export_path: Optional[str] = None
    candidates: int = 0  # distinct search candidates that fit this level
    error: Optional[str] = None
    onnx_error: Optional[str] = None  # why model.onnx was not written (None: written)
    search_signal: Optional[ScoreSignal] = None  # how far above chance the level's search scores rose
    over_limit: list[str] = field(default_factory=list)  # final models measured over this level's limits

    @property
    def feasible(self) -> bool:
        return self.candidate_id is not None and fits(self.costs, self.level.limits)

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level.name, "budgets": self.level.values, "limits": self.level.limits,
                "candidate_id": self.candidate_id, "feasible": self.feasible, "accuracy_val": self.accuracy_val,
                "accuracy_test": self.accuracy_test, "search_accuracy": self.search_accuracy,
                "rerank_accuracy": self.rerank_accuracy, "found_for": self.found_for, "found_by": self.found_by,
                "export_path": self.export_path, "candidates": self.candidates, "keep_ratios": self.keep_ratios,
                "keep_counts": self.keep_counts, **self.costs, "error": self.error, "onnx_error": self.onnx_error,
                "search_signal": self.search_signal.to_json() if self.search_signal is not None else None}


def _onnx_error(directory: Path) -> Optional[str]:
    """Why the ONNX file of an exported model is missing (None when it was written)."""
    from ..pruning import read_spec

    try:
        return read_spec(directory).get("onnx_error")
    except FileNotFoundError:  # an export without spec.json (a test double's): nothing to say about ONNX
        return None


def candidates_for(rows: pd.DataFrame, level: Level) -> pd.DataFrame:
    """The ok search rows whose measured costs fit ``level``."""
    if rows.empty:
        return rows
    ok = rows[(rows["status"] == STATUS_OK) & rows["accuracy"].notna()]
    mask = pd.Series(True, index=ok.index)
    for name, limit in level.limits.items():
        if name not in ok.columns:
            return ok.iloc[0:0]
        values = pd.to_numeric(ok[name], errors="coerce")
        mask &= values.le(limit * (1.0 + FEASIBILITY_RTOL)).fillna(False).astype(bool)
    return ok[mask]


def _proposers(search: pd.DataFrame, candidate_id: str) -> Optional[str]:
    """Every agent whose search scored ``candidate_id`` (``random, evolution`` when two found the same network),
    or None when no search row has it (the selection's own structured candidate)."""
    if search.empty or "agent" not in search.columns or "candidate_id" not in search.columns:
        return None
    agents = sorted({str(a) for a in search.loc[search["candidate_id"] == candidate_id, "agent"].dropna()})
    return ", ".join(agents) or None


def top_distinct(rows: pd.DataFrame, k: int, *, score: str = "accuracy", tiebreak: Sequence[str] = ()) -> pd.DataFrame:
    """The ``k`` best rows by ``score``, one per ``candidate_id`` (ties: smaller ``tiebreak`` costs first).

    >>> frame = pd.DataFrame({"candidate_id": ["a", "a", "b", "c"], "accuracy": [0.9, 0.9, 0.8, 0.85]})
    >>> top_distinct(frame, 2)["candidate_id"].tolist()
    ['a', 'c']
    """
    if rows.empty:
        return rows
    cols = [score, *[c for c in tiebreak if c in rows.columns]]
    ranked = rows.sort_values(cols, ascending=[False] + [True] * (len(cols) - 1), kind="mergesort")
    return ranked.drop_duplicates(subset=["candidate_id"]).head(k)


def monotone_choice(levels: Sequence[Level], finals: Sequence[Mapping[str, Any]]) -> list[Optional[int]]:
    """For each level, the index of the final model that fits it with the best validation accuracy; of equally
    accurate ones, one that costs no more on any of the level's costs and less on one (a tie goes to the smaller
    model, not to whichever final came first).

    Every final that fits a level competes for it, so if level A contains level B, A's choice is at
    least as accurate as B's (B's choice fits A too).

    >>> small = Level("p=0.1", {"p": 0.1}, {"p": 10.0}); large = Level("p=0.5", {"p": 0.5}, {"p": 50.0})
    >>> monotone_choice([small, large], [{"p": 9.0, "accuracy_val": 0.9}, {"p": 40.0, "accuracy_val": 0.8}])
    [0, 0]
    >>> monotone_choice([small, large], [{"p": 40.0, "accuracy_val": 0.9}, {"p": 9.0, "accuracy_val": 0.9}])
    [1, 1]
    """
    out: list[Optional[int]] = []
    for level in levels:
        best, best_acc = None, None
        for i, f in enumerate(finals):
            if f.get("status", STATUS_OK) != STATUS_OK or f.get("accuracy_val") is None:
                continue
            if not fits({n: f.get(n) for n in level.limits}, level.limits):
                continue
            if best_acc is None or f["accuracy_val"] > best_acc or (
                    f["accuracy_val"] == best_acc and _dominates(f, finals[best], level.limits)):
                best, best_acc = i, f["accuracy_val"]
        out.append(best)
    return out


def _dominates(a: Mapping[str, Any], b: Mapping[str, Any], costs) -> bool:
    """Whether ``a`` costs no more than ``b`` on every one of ``costs`` and less on one."""
    pairs = [(a.get(n), b.get(n)) for n in costs]
    if any(x is None or y is None for x, y in pairs):
        return False
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def select_and_finalize(
    rows: pd.DataFrame,
    levels: Sequence[Level],
    *,
    pool,
    out_dir: str | Path,
    rerank_spec: Optional[ScoreSpec],
    top_k: int,
    writer: CandidateWriter,
    seed: int = 0,
    cost_names: Sequence[str] = ("params", "macs"),
    extra: Optional[Mapping[str, Any]] = None,
    log: Log = print,
    reference: tuple[Optional[float], Optional[float]] = (None, None),
    weak_finals: int = 1,
    priors: Optional[Mapping[str, Prior]] = None,
    export_to: Optional[Callable[[Level], Path]] = None,
) -> list[LevelResult]:
    """Steps 1-4 of the module docstring; returns one :class:`LevelResult` per level (in order).

    ``pool`` is an :class:`~rayprune.evaluation.pool.EvaluatorPool` (``score_batch``,
    ``finalize_many``); models land in ``out_dir/models/<level>/``. ``reference``: ``(chance, base)``
    accuracies (:func:`~rayprune.search.score_signal.chance_and_base`); with both, each level's
    search scores are compared with them and a level whose score is weak gets a warning
    (:mod:`rayprune.search.score_signal`) and, with ``weak_finals`` N > 1, a final fine-tune for
    each of its N best re-ranked candidates (:func:`_weak_level_finals`). ``priors``: by name, the keep ratios
    of level i's structured candidates (:func:`weak_level_priors`: uniform, global pruning); with them and a
    re-rank, each weak level's are re-ranked and finalised too (:func:`_prior_rows`). ``export_to``: where a
    level's model goes (default ``out_dir/models/<level>``; ``rayprune prune``: ``out_dir/best``), the path its
    final row records.
    """
    out = Path(out_dir)
    search = rows[rows["stage"] == STAGE_SEARCH] if not rows.empty and "stage" in rows.columns else rows
    results = [LevelResult(level) for level in levels]
    ranked: list[pd.DataFrame] = []
    for res in results:
        fitting = candidates_for(search, res.level)
        ranked.append(top_distinct(fitting, len(fitting), tiebreak=list(cost_names)))
        res.candidates = int(len(ranked[-1]))  # distinct: a cached repeat (or two agents' same network) once
        if not fitting.empty:  # over distinct candidates: a cached repeat does not count twice
            res.search_signal = score_signal(ranked[-1]["accuracy"].tolist(), chance=reference[0], base=reference[1])
            if res.search_signal is not None and res.search_signal.weak:
                log(res.search_signal.advice(res.level.name))
        if fitting.empty:
            res.error = "no scored candidate fits this level" + _closest(search, res.level)
    # the top_k of each level (re-ranked, or fallbacks), timed costs checked again one at a time
    shortlists = _shortlists(ranked, results, top_k, pool=pool, cost_names=cost_names, log=log)
    # 2. re-rank every shortlisted candidate once, however many levels list it
    rerank: dict[str, float] = {}
    reranked: list[dict[str, Any]] = []  # every re-rank row: why they failed, when all of a level's did
    if rerank_spec is not None:
        unique = pd.concat([s for s in shortlists if not s.empty]).drop_duplicates("candidate_id") if any(
            not s.empty for s in shortlists) else pd.DataFrame()
        if not unique.empty:
            log(f"Re-ranking {len(unique)} distinct candidate(s) (up to {top_k} best per level) with a "
                f"{rerank_spec.finetune_iterations}-iteration fine-tune")
            seeds = [seed * 7919 + i for i in range(len(unique))]
            order = _longest_first(unique, cost_names)  # each keeps its seed, whatever the order
            unique = unique.iloc[order]
            ratios = [list(map(float, r)) for r in unique["keep_ratios"]]
            scored = pool.score_batch(ratios, rerank_spec, [seeds[i] for i in order])
            by_name = {lv.name: lv for lv in levels}
            for (_, src), row in zip(unique.iterrows(), scored):
                ok = row.get("status") == STATUS_OK
                level = by_name.get(src.get("level"))  # feasible for the level it was found for, as search rows are
                row.update(stage=STAGE_RERANK, iteration=0, level=src.get("level"), agent=src.get("agent"),
                           source_trial=src.get("trial_id"),
                           feasible=bool(ok and (level is None or _fits_level(row, level))))
                writer.add(row)
                reranked.append(row)
                if row.get("status") == "ok":
                    rerank[row["candidate_id"]] = float(row["accuracy"])
            writer.flush()
    # each level's candidates in the order they are tried: best re-rank (or search) score first
    orders: list[list[pd.Series]] = []
    for res, shortlist in zip(results, shortlists):
        if shortlist.empty:
            orders.append([])
            continue
        if rerank_spec is not None:
            scored = shortlist[shortlist["candidate_id"].isin(list(rerank))]
            if scored.empty:
                res.error = "every re-ranked candidate failed" + _why_failed(reranked, shortlist)
                orders.append([])
                continue
            order = scored.assign(_rr=scored["candidate_id"].map(rerank)).sort_values("_rr", ascending=False, kind="stable")
            orders.append([row.drop("_rr") for _, row in order.iterrows()])
        else:
            orders.append([row for _, row in shortlist.iterrows()])
    # 3. one final fine-tune per distinct winner, in parallel on the pool; a level whose winner's
    #    final fails (a diverging loss, a dead evaluator) falls back to its next candidate
    finals_by_id = _final_rounds(results, orders, pool=pool, out=out, seed=seed, extra=extra, writer=writer,
                                 log=log, cost_names=cost_names)
    # 3b. a weak level's next re-ranked candidates, and its structured candidates, get a final too; the best by
    #     validation wins
    anchors = _prior_rows(results, priors, rerank, orders, pool=pool, rerank_spec=rerank_spec, seed=seed,
                          writer=writer, log=log) if priors and rerank_spec is not None else {}
    if weak_finals > 1 or anchors:
        _weak_level_finals(results, orders, finals_by_id, weak_finals, pool=pool, out=out, seed=seed, extra=extra,
                           writer=writer, log=log, cost_names=cost_names, anchors=anchors)
    finals = [f for f in finals_by_id.values() if f.get("status") == STATUS_OK]
    # 4. monotone choice: each level takes the best final that fits it
    choice = monotone_choice(levels, finals)
    for res, idx, order in zip(results, choice, orders):
        if idx is None:
            if res.error is None:
                failed = [finals_by_id[r["candidate_id"]] for r in order
                          if finals_by_id.get(r["candidate_id"], {}).get("status", STATUS_OK) != STATUS_OK]
                res.error = "no final model fits this level" + (
                    f" (the final fine-tune, search.final_finetune, failed for "
                    f"{'all ' if not res.over_limit else ''}{len(failed)} candidate(s) tried; first error: "
                    f"{failed[0].get('error')})" if failed else "") + (
                    f" ({len(res.over_limit)} final model(s) measured over its limits when re-timed alone after the "
                    f"final fine-tune: {'; '.join(res.over_limit)}; timings vary by a few per cent between "
                    "measurements, so candidates close to the limit can end over it: a little more room under the "
                    "limit, or more evaluations, helps)" if res.over_limit else "")
            continue
        f, best = finals[idx], finals[idx]["row"]
        res.error = None  # (a weak level whose re-ranks all failed may still export a structured candidate)
        target = export_to(res.level) if export_to is not None else out / "models" / res.level.name
        _replace_dir(Path(f["export_path"]), target)
        res.candidate_id = f["candidate_id"]
        res.keep_ratios = [float(r) for r in best["keep_ratios"]]
        res.keep_counts = [int(c) for c in best["keep_counts"]]
        res.accuracy_val, res.accuracy_test = f["accuracy_val"], f["accuracy_test"]
        res.costs = {n: f[n] for n in cost_names if f.get(n) is not None}
        # a structured candidate (step 3b) was never a search row: its only score is its re-rank
        res.search_accuracy = None if best.get("stage") == STAGE_RERANK else float(best["accuracy"])
        res.rerank_accuracy = rerank.get(f["candidate_id"])
        res.found_for = f["found_for"]
        res.found_by = _proposers(search, f["candidate_id"]) or str(best.get("agent"))
        res.export_path = str(target)
        res.onnx_error = _onnx_error(target)
        if res.onnx_error:
            log(f"{res.level.name}: model.onnx not written ({res.onnx_error}); spec.json + weights.pt and the "
                "other formats are.")
        writer.add(_final_row(best, res.level.name, res.found_for, **_final_fields(f, cost_names), **{
                    "feasible": res.feasible, "export_path": res.export_path, "status": STATUS_OK, "error": None,
                    **{f"budget_{n}": v for n, v in res.level.values.items()},
                    **{f"limit_{n}": v for n, v in res.level.limits.items()}}))  # the final's numbers, not the search row's
    _superseded_rows(finals, choice, results, writer, cost_names)
    writer.flush()
    shutil.rmtree(out / "models" / FINALS_DIR, ignore_errors=True)
    if (out / "models").is_dir() and not any((out / "models").iterdir()):
        (out / "models").rmdir()  # only the finals' scratch folder was there (export_to elsewhere)
    return results


def _why_failed(reranked: Sequence[Mapping[str, Any]], shortlist: pd.DataFrame) -> str:
    """`` (N of them; ...: <the most frequent error>)`` for a level whose every re-rank failed (the short fine-tune
    raising on every candidate: a loss that is not a scalar, a loss diverging at the fine-tune's lr), else ''."""
    ids = set(shortlist["candidate_id"])
    failed = failed_candidates(pd.DataFrame([r for r in reranked if r.get("candidate_id") in ids]))
    if failed is None:
        return ""
    return (f" ({failed['count']} of them, in the short fine-tune of search.finetune; "
            f"{'all' if failed['with_message'] == failed['count'] else failed['with_message']} with: "
            f"{failed['message']})")


def _superseded_rows(finals: Sequence[Mapping[str, Any]], choice: Sequence[Optional[int]],
                     results: Sequence[LevelResult], writer: CandidateWriter, cost_names: Sequence[str]) -> None:
    """A ``final`` row of status ``superseded`` for each final fine-tune that no level exports (a smaller level's
    model, at least as good on validation, serves the level it was run for; a weak level's runner-up): its
    numbers were computed, and a user checking the choice needs them."""
    exported = {i for i in choice if i is not None}
    serving = {res.level.name: finals[i] for res, i in zip(results, choice) if i is not None}
    levels = {res.level.name: res.level for res in results}
    for i, f in enumerate(finals):
        level = levels.get(f["found_for"])
        if i in exported or level is None or not _fits_level(f, level):  # over its limit: an error row says so
            continue
        winner = serving.get(f["found_for"])
        why = ("not exported: " + (f"the model found for {winner['found_for']} (validation {winner['accuracy_val']:.4g} "
                                   f"against {f['accuracy_val']:.4g}) serves {f['found_for']}" if winner is not None
                                   else f"another final serves {f['found_for']}"))
        writer.add(_final_row(f["row"], f["found_for"], f["found_for"], **_final_fields(f, cost_names),
                              feasible=True, export_path=None, status=STATUS_SUPERSEDED, error=why))


def _fits_level(measured: Mapping[str, Any], level: Level) -> bool:
    """Whether the costs ``measured`` (a row, a final's summary) meet ``level``'s limits; a cost it lacks is not
    held against it (as :func:`~rayprune.costs.budget.fits` treats a missing one)."""
    return fits({n: measured.get(n) for n in level.limits if measured.get(n) is not None}, level.limits)


def _closest(search: pd.DataFrame, level: Level) -> str:
    """How near the scored candidates came to ``level``: each limit's smallest measured value, for the error
    of a level nothing fits (a black-box budget is aimed at through a proxy that learns from measurements, so
    a short search can miss it narrowly).

    >>> _closest(pd.DataFrame({"status": ["ok", "ok"], "latency_ms": [0.25, 0.23], "candidate_id": ["a", "a"]}),
    ...          Level("latency_ms=0.9", {"latency_ms": 0.9}, {"latency_ms": 0.22}))[:94]
    ' (of 2 scored candidates, 1 distinct, the smallest latency_ms was 0.23 against a limit of 0.22'
    """
    ok = search[search["status"] == STATUS_OK] if "status" in search.columns else search
    parts = [f"the smallest {name} was {ok[name].min():.4g} against a limit of {limit:.4g}"
             for name, limit in level.limits.items() if name in ok.columns and ok[name].notna().any()]
    if ok.empty or not parts:
        return ""
    distinct = ok["candidate_id"].nunique() if "candidate_id" in ok.columns else len(ok)
    measured = [name for name in level.limits if name not in ANALYTIC_COSTS]
    aim = (f"; a measured cost ({', '.join(measured)}) is aimed at through a proxy learned from the batches already "
           "scored, so give the search several batches: more evaluations, a smaller search.batch_size, or "
           "search.pipeline: false (each batch then learns from the one before)" if measured else
           "; more evaluations let the search aim at it better")
    return (f" (of {len(ok)} scored candidates, {distinct} distinct, {'; '.join(parts)}{aim})")


#: how far down its ranking a level looks for candidates whose timed costs still fit, in top_k's
QUIET_CHECK_DEPTH = 4


def _shortlists(ranked: Sequence[pd.DataFrame], results: Sequence[LevelResult], top_k: int, *, pool,
                cost_names: Sequence[str], log: Log) -> list[pd.DataFrame]:
    """Each level's ``top_k`` best distinct candidates (``ranked``: all of them, best first).

    Where a level has a timed budget (latency), its candidates' timings were taken while other
    evaluators trained on the same cores, and the best-scoring candidates are the largest that fit:
    those that measured lucky sit right on the limit. Before any re-rank or final fine-tune is spent
    on them, their timed costs are measured again one at a time with the pool otherwise idle; a
    candidate over the limit then gives its place to the level's next one, down to
    ``QUIET_CHECK_DEPTH × top_k`` candidates. (Without this a level could end without a model: its
    whole shortlist fine-tuned, then measured over the limit.)
    """
    timed = [n for n in cost_names if n in TIMED_COSTS]
    checked = [{n: res.level.limits[n] for n in timed if n in res.level.limits} for res in results]
    if not any(checked) or not hasattr(pool, "measure_sequentially"):
        return [r.head(top_k) for r in ranked]
    quiet: dict[str, dict[str, float]] = {}
    kept: list[list[int]] = [[] for _ in ranked]
    pos = [0] * len(ranked)
    depth = [min(len(r), QUIET_CHECK_DEPTH * top_k) if lim else 0 for r, lim in zip(ranked, checked)]
    while True:
        want: dict[str, list[float]] = {}
        for li, rows in enumerate(ranked):
            while len(kept[li]) < top_k and pos[li] < depth[li]:
                cid = rows.iloc[pos[li]]["candidate_id"]
                if cid not in quiet:
                    break
                if fits(quiet[cid], checked[li]):
                    kept[li].append(pos[li])
                pos[li] += 1
            for j in range(pos[li], min(depth[li], pos[li] + top_k - len(kept[li]))):
                row = rows.iloc[j]
                if row["candidate_id"] not in quiet:
                    want.setdefault(row["candidate_id"], [float(r) for r in row["keep_ratios"]])
        if not want:
            break
        try:
            measured = pool.measure_sequentially(list(want.values()), timed)
        except Exception as exc:  # noqa: BLE001 - the search's numbers stand, said so
            log(f"warning: could not measure {', '.join(timed)} of the shortlisted candidates again one at a time "
                f"({exc}); the shortlists keep the numbers measured during the search")
            return [r.head(top_k) for r in ranked]
        quiet.update(zip(want, measured))
    out, dropped = [], set()
    for li, (rows, res) in enumerate(zip(ranked, results)):
        if not checked[li]:
            out.append(rows.head(top_k))
            continue
        out.append(rows.iloc[kept[li]])
        dropped.update(rows.iloc[j]["candidate_id"] for j in range(pos[li]) if j not in kept[li])
        if not rows.empty and not kept[li]:
            tried = [quiet[rows.iloc[j]["candidate_id"]] for j in range(pos[li]) if rows.iloc[j]["candidate_id"] in quiet]
            near = "; ".join(f"the smallest {n} measured alone was {min(t[n] for t in tried):.4g} against a limit "
                             f"of {lim:.4g}" for n, lim in checked[li].items() if tried)
            res.error = (f"no scored candidate fits this level when its {', '.join(checked[li])} is measured again "
                         f"one at a time ({pos[li]} of its best tried" + (f"; {near}" if near else "") +
                         "; the search timed each in one turn with the base, beside whatever else ran then)")
    if quiet:
        log(f"Measured {', '.join(timed)} of {len(quiet)} shortlisted candidate(s) again one at a time: "
            f"{len(dropped)} over their level's limit gave their place to the next candidate(s)")
    return out


def _longest_first(rows: pd.DataFrame, cost_names: Sequence[str]) -> list[int]:
    """Positions of ``rows`` with the largest candidates (MACs, else params) first: handed out in
    this order, fine-tunes of different lengths end close together on the pool (longest processing
    time first) instead of one long fine-tune running alone at the end.

    >>> _longest_first(pd.DataFrame({"macs": [1.0, 3.0, 2.0]}), ["params", "macs"])
    [1, 2, 0]
    """
    for name in ("macs", "params"):
        if name in cost_names and name in rows.columns:
            values = pd.to_numeric(rows[name], errors="coerce").fillna(0.0).to_numpy()
            return sorted(range(len(rows)), key=lambda i: -values[i])
    return list(range(len(rows)))


def _final_rounds(results, orders, *, pool, out: Path, seed: int, extra, writer: CandidateWriter,
                  log: Log, cost_names: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """Final fine-tunes in rounds: each round runs, in parallel, every level's first candidate whose
    final has neither failed nor come out over the level's budget (timed costs are measured again
    one at a time after each round: :func:`_remeasure_timed`); a failure is written as an ``error``
    row of stage ``final``, and that level tries its next candidate in the following round.
    Returns every final run, by candidate id."""
    finals: dict[str, dict[str, Any]] = {}
    pos = [0] * len(orders)

    def settled(final: Optional[dict[str, Any]], level: Level) -> bool:
        """Whether a level may stop at this final: not run yet (it runs), or fine and within budget."""
        if final is None:
            return True
        return final.get("status") == STATUS_OK and _fits_level(final, level)

    while True:
        jobs: dict[str, tuple[int, pd.Series]] = {}
        for li, order in enumerate(orders):
            while pos[li] < len(order) and not settled(finals.get(order[pos[li]]["candidate_id"]),
                                                        results[li].level):
                _note_over_limit(finals[order[pos[li]]["candidate_id"]], order[pos[li]], results[li], writer,
                                 cost_names)
                pos[li] += 1  # its current candidate failed, or is over budget as finally measured: the next one
            if pos[li] < len(order):
                cid = order[pos[li]]["candidate_id"]
                if cid not in finals and cid not in jobs:
                    jobs[cid] = (li, order[pos[li]])
        if not jobs:
            return finals
        log(f"Final fine-tune of {len(jobs)} model(s)")
        _run_finals(jobs, results, finals, pool=pool, out=out, seed=seed, extra=extra, writer=writer, log=log,
                    cost_names=cost_names)


def _note_over_limit(final: dict[str, Any], row: pd.Series, res: LevelResult, writer: CandidateWriter,
                     cost_names: Sequence[str]) -> None:
    """A final model that came out over ``res``'s limits (a timed cost measured again alone): its numbers go
    to the level (for its error, should nothing fit) and to a ``final`` row of status ``error`` carrying the
    final's own measurements (accuracies, costs, timings), so that nothing fine-tuned vanishes without a
    trace. (It may still serve a larger level: monotone choice.)"""
    if final.get("status") != STATUS_OK:
        return  # a failure has its row already
    over = [f"{n} {final[n]:.4g} > {limit:.4g}" for n, limit in res.level.limits.items()
            if final.get(n) is not None and not fits({n: final[n]}, {n: limit})]
    res.over_limit.append(f"{final['candidate_id']}: {', '.join(over)}")
    writer.add(_final_row(row, res.level.name, res.level.name, **_final_fields(final, cost_names),
                          feasible=False, export_path=None, status=STATUS_ERROR,
                          error=f"over this level's limit when re-timed alone after the final fine-tune: "
                          f"{', '.join(over)}"))


def _final_fields(final: Mapping[str, Any], cost_names: Sequence[str]) -> dict[str, Any]:
    """A final row's measured columns, from the final job (not the search row it was copied from)."""
    return {"accuracy": final.get("accuracy_val"), "accuracy_final": final.get("accuracy_test"),
            "finetune_iterations": final.get("finetune_iterations"), "t_finetune_s": final.get("finetune_seconds"),
            **_final_timing(final), "evaluator": final.get("evaluator"), "wall_start": final.get("wall_start"),
            "wall_end": final.get("wall_end"), **{n: final[n] for n in cost_names if final.get(n) is not None},
            **{c: final[c] for n in cost_names for c in paired_columns(n) if c in final}}


def _found_by(row: pd.Series) -> dict[str, Any]:
    """Which search found a candidate (its row's ``agent`` and ``seed``), for the exported model's summary as
    ``found_by`` and ``found_by_seed``: a sweep's ``models/<level>/spec.json`` did not say which of its agents found
    the model (a run's own ``agent`` and ``seed`` keys are left as they are: a weak level's structured candidate is
    found by ``uniform (weak level)`` in a run of another agent).

    >>> _found_by(pd.Series({"agent": "evolution", "seed": 3, "accuracy": 0.9}))
    {'found_by': 'evolution', 'found_by_seed': 3}
    >>> _found_by(pd.Series({"agent": None, "seed": float("nan")}))
    {}
    """
    found = {}
    for key, name in (("agent", "found_by"), ("seed", "found_by_seed")):
        value = row.get(key)
        if value is not None and not pd.isna(value):
            found[name] = int(value) if key == "seed" else str(value)
    return found


def _run_finals(jobs: dict[str, tuple[int, pd.Series]], results, finals: dict[str, dict[str, Any]], *, pool,
                out: Path, seed: int, extra, writer: CandidateWriter, log: Log, cost_names: Sequence[str]) -> None:
    """One parallel round of final fine-tunes (``jobs``: candidate id -> (level index, its row)), largest
    first; timed costs measured again alone; each result lands in ``finals``, a failure also as an error row."""
    rows = pd.DataFrame([best for _, best in jobs.values()])
    jobs = dict(list(jobs.items())[i] for i in _longest_first(rows, cost_names))
    summaries = pool.finalize_many([
        dict(keep_ratios=[float(r) for r in best["keep_ratios"]], seed=seed,
             export_dir=str(out / "models" / FINALS_DIR / cid),
             extra={**dict(extra or {}), "found_for": results[li].level.name, **_found_by(best)})
        for cid, (li, best) in jobs.items()])
    done = [{**summary, "candidate_id": cid, "row": best, "found_for": results[li].level.name}
            for (cid, (li, best)), summary in zip(jobs.items(), summaries)]
    _remeasure_timed([f for f in done if f.get("status") == STATUS_OK], pool, cost_names, log)
    for (cid, (li, best)), summary in zip(jobs.items(), done):
        finals[cid] = summary
        if summary.get("status") != STATUS_OK:
            level = results[li].level.name
            log(f"Final fine-tune of {cid} (for {level}) failed: {summary.get('error')}")
            writer.add(_final_row(best, level, level, accuracy=None, accuracy_final=None, feasible=False,
                                  export_path=None, status=STATUS_ERROR, error=summary.get("error"),
                                  **_final_timing(summary)))


#: a structured candidate for a weak level: level index -> keep ratios (None: none for this level)
Prior = Callable[[int], Optional[Sequence[float]]]


def prior_agent(name: str) -> str:
    """The ``agent`` of a weak level's structured candidate's rows (step 3b): the selection added it, no
    search found it."""
    return f"{name} (weak level)"


UNIFORM_AGENT = prior_agent("uniform")


def weak_level_priors(rerank_config, space: Callable[[], Any]) -> dict[str, Prior]:
    """The structured candidates ``search.rerank`` asks for at weak levels, by name, from a
    :class:`~rayprune.agents.space.SearchSpace` that ``space()`` builds (called only once a level is weak):
    ``uniform`` (``weak_uniform``) and ``global`` (``weak_global``; none where the space has no importance
    scores)."""
    priors: dict[str, Prior] = {}
    if rerank_config.weak_uniform:
        priors["uniform"] = lambda li: space().uniform(li)
    if rerank_config.weak_global:
        priors["global"] = lambda li: None if space().importance is None else space().global_candidate(li)
    return priors


def _ratio_key(ratios: Sequence[float]) -> tuple[float, ...]:
    """Keep ratios as a dictionary key (rounded: the same candidate whether it came from a row or a prior)."""
    return tuple(round(float(v), 9) for v in ratios)


def _prior_rows(results, priors: Mapping[str, Prior], rerank: dict[str, float],
                orders: Sequence[Sequence[pd.Series]], *, pool, rerank_spec: ScoreSpec, seed: int,
                writer: CandidateWriter, log: Log) -> dict[int, list[pd.Series]]:
    """Each weak level's structured candidates (``priors[name](i)``: keep ratios for level i; None or all ones:
    no such candidate, e.g. without analytic costs to aim it), re-ranked like the shortlisted candidates
    (written as ``rerank`` rows, agent :func:`prior_agent`, accuracy into ``rerank``); by level index, the ones
    that scored. One the search found and the level shortlisted is its own search row (its agent, its search
    score), not a second re-rank row; two priors that are the same candidate are re-ranked once.

    Where the search score is blind, which candidates reach the finals is close to chance, and a structured
    candidate is a strong prior there: on two converged models' weak levels the uniform candidate alone ended
    level with the whole search's pick on one and 0.6 points below on the other; as one more finalist it
    gained +0.60 points on the first and nothing on the second (BENCHMARKS.md, "The uniform candidate at a
    weak level"; global pruning: "Does the search beat global pruning?")."""
    jobs: list[tuple[int, str, list[float]]] = []
    rows: dict[int, list[pd.Series]] = {}
    for li, res in enumerate(results):
        if res.search_signal is None or not res.search_signal.weak:
            continue
        seen: set[tuple[float, ...]] = set()
        listed = {_ratio_key(row["keep_ratios"]): row for row in orders[li]}
        for name, prior in priors.items():
            r = prior(li)
            key = None if r is None else _ratio_key(r)
            if r is None or min(r) >= 1.0 or key in seen:  # all ones: the base, which fits no budget
                continue
            seen.add(key)
            if key in listed:  # the search found it and the level re-ranked it: its own row, no second re-rank
                rows.setdefault(li, []).append(listed[key])
                continue
            jobs.append((li, name, [float(v) for v in r]))
    if not jobs:
        return rows
    names = list(dict.fromkeys(n for _, n, _ in jobs))
    levels = ", ".join(dict.fromkeys(results[li].level.name for li, _, _ in jobs))
    log(f"Re-ranking the {', '.join(names)} candidate(s) of the weak level(s) {levels} "
        f"({', '.join(f'search.rerank.weak_{n}' for n in names)})")
    k_of = {name: k for k, name in enumerate(priors)}  # the uniform candidate keeps the seed it always had
    scored = pool.score_batch([r for _, _, r in jobs], rerank_spec,
                              [seed * 7919 + 7907 + li + 7883 * k_of[name] for li, name, _ in jobs])
    for (li, name, _), row in zip(jobs, scored):
        listed = {r["candidate_id"]: r for r in [*orders[li], *rows.get(li, [])]}
        if row.get("candidate_id") in listed:  # the search (or another prior) found it and it was re-ranked already
            if all(r["candidate_id"] != row["candidate_id"] for r in rows.get(li, [])):
                rows.setdefault(li, []).append(listed[row["candidate_id"]])
            continue
        ok = row.get("status", STATUS_OK) == STATUS_OK and row.get("accuracy") is not None
        row.update(stage=STAGE_RERANK, iteration=0, level=results[li].level.name, agent=prior_agent(name),
                   source_trial=None, feasible=bool(ok and _fits_level(row, results[li].level)))
        writer.add(row)
        if ok:
            rerank.setdefault(row["candidate_id"], float(row["accuracy"]))
            rows.setdefault(li, []).append(pd.Series(row))
        else:
            log(f"{results[li].level.name}: the {name} candidate's re-rank failed ({row.get('error')}); the level's "
                "other candidates stand")
    writer.flush()
    return rows


def _weak_level_finals(results, orders, finals: dict[str, dict[str, Any]], n: int, *, pool, out: Path, seed: int,
                       extra, writer: CandidateWriter, log: Log, cost_names: Sequence[str] = (),
                       anchors: Optional[Mapping[int, Sequence[pd.Series]]] = None) -> None:
    """At each weak level (its search score barely above chance), the first ``n`` candidates of its order
    (best re-ranked first) that have no final yet get one, in parallel, added to ``finals``, and so does the
    level's structured candidates (``anchors``: their re-rank rows, by level index); the monotone
    choice then takes the best final by validation accuracy. Where one-shot pruning breaks every candidate,
    the pruned networks' accuracies after the final fine-tune spread by tens of points, and validation
    accuracy after it ranks them far better than the short re-rank does (BENCHMARKS.md, "Is the search
    blind?"). A failed extra final is written as an error row and changes nothing else."""
    jobs: dict[str, tuple[int, pd.Series]] = {}
    for li, (res, order) in enumerate(zip(results, orders)):
        if res.search_signal is None or not res.search_signal.weak:
            continue
        for row in [*order[:n], *(anchors or {}).get(li, [])]:
            cid = row["candidate_id"]
            if cid not in finals and cid not in jobs:
                jobs[cid] = (li, row)
    if not jobs:
        return
    levels = sorted({results[li].level.name for li, _ in jobs.values()})
    log(f"Final fine-tune of {len(jobs)} more candidate(s) at the weak level(s) {', '.join(levels)} "
        f"(search.rerank.weak_finals={n}" + (", and each one's structured candidates" if anchors else "")
        + "): the best by validation accuracy wins")
    _run_finals(jobs, results, finals, pool=pool, out=out, seed=seed, extra=extra, writer=writer, log=log,
                cost_names=cost_names)
    for cid, (li, row) in jobs.items():  # an extra final over its level's limit leaves its numbers too
        final, level = finals[cid], results[li].level
        if final.get("status") == STATUS_OK and not _fits_level(final, level):
            _note_over_limit(final, row, results[li], writer, cost_names)


def _remeasure_timed(finals: list[dict[str, Any]], pool, cost_names: Sequence[str], log: Log) -> None:
    """Measure the timed costs of the final models again, one at a time with nothing else running
    (the finals ran in parallel), before they decide which level each fits and land in the front."""
    timed = [n for n in cost_names if n in TIMED_COSTS]
    if not timed or not finals or not hasattr(pool, "measure_sequentially"):
        return
    try:
        measured = pool.measure_sequentially([[float(r) for r in f["row"]["keep_ratios"]] for f in finals], timed)
    except Exception as exc:  # noqa: BLE001 - the parallel numbers stand, said so
        log(f"warning: could not re-measure {', '.join(timed)} of the final models one at a time ({exc}); the "
            "numbers measured during the parallel final fine-tunes are kept")
        return
    for f, costs in zip(finals, measured):
        before = dict(f)
        for name in timed:
            f[f"{name}_during_finals"] = f.get(name)
            f[name] = costs[name]
            f.update({col: costs[col] for col in paired_columns(name) if col in costs})  # the raw medians behind it
        if f.get("export_path"):  # its spec.json kept the parallel timing: the file that goes to the device
            try:
                update_summary(f["export_path"], {k: v for k, v in f.items() if k != "row" and v != before.get(k)})
            except FileNotFoundError:  # an export without spec.json (a test double's)
                pass
            except (OSError, ValueError) as exc:  # the finals trained: a note, never the end of the selection
                log(f"warning: {f['export_path']}/spec.json keeps the {', '.join(timed)} measured during the parallel "
                    f"final fine-tunes ({type(exc).__name__}: {exc}); summary.json and the front have the re-timing")
    log(f"Measured {', '.join(timed)} of {len(finals)} final model(s) one at a time")


def _final_row(best: pd.Series, level: str, found_for: str, **fields: Any) -> dict[str, Any]:
    """The ``final`` row of search candidate ``best`` for ``level``: its columns (less the search
    row's identity), the stage, and ``fields`` (accuracies, status, export ...)."""
    kept = {k: v for k, v in best.items() if k not in ("row_id", "timestamp", "trial_id", "trial_name", "seed")}
    return {**kept, "source_trial": best.get("trial_id"), "stage": STAGE_FINAL, "level": level,
            "found_for": found_for, "iteration": 0, "cached": False, **fields}


def _final_timing(final: Mapping[str, Any]) -> dict[str, Any]:
    """A final row's score columns: its accuracy is the final fine-tune's (``score_kind`` ``final``), its time
    the whole final job's (build, fine-tune, evaluation), not the search row's it was copied from.

    >>> _final_timing({"wall_start": 10.0, "wall_end": 25.5, "finetune_iterations": 300})
    {'score_kind': 'final', 'score_key': 'final:it=300', 't_total_s': 15.5, 't_build_s': None, 't_costs_s': None, 't_bn_s': None, 't_eval_s': None}
    """
    start, end = final.get("wall_start"), final.get("wall_end")
    iterations = final.get("finetune_iterations")
    return {"score_kind": "final", "score_key": f"final:it={iterations}" if iterations is not None else None,
            "t_total_s": float(end - start) if start is not None and end is not None else None,
            **{c: None for c in ("t_build_s", "t_costs_s", "t_bn_s", "t_eval_s")}}


def _replace_dir(source: Path, target: Path) -> None:
    """Copy the model directory ``source`` to ``target``, which a reader sees whole, before or after."""
    with atomic_directory(target) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
