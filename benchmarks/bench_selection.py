"""Which candidate should get the final fine-tune? Selection rules compared on the same shortlists.

The search benchmark found that at tight budgets the *selection* decides the last half point: a
longer re-rank shortlist (16 instead of 8) picked worse models, because the re-rank chooses on a
small validation split (digits: 180 images) and the best of more noisy scores is more often a lucky
one. This script measures, for the same candidates, how much better other rules would choose.

For each config x agent x seed it runs the product's search (``bench_search.run_search``: the same
agents, scores and candidate store), takes each level's ``--top-k`` distinct candidates by the cheap
score (the product's shortlist, same order and tie-break) and measures every one of them:

* ``--rerank-seeds`` short fine-tunes (``search.finetune``) with different seeds, each scored on the
  whole validation split: accuracy, mean loss (the fine-tune's own loss, cross-entropy for
  classification) and the per-sample results;
* the final fine-tune (``search.final_finetune``, the run's seed as the product uses): validation and
  test accuracy and loss; with ``--final-seeds N``, N - 1 more final fine-tunes with other seeds, so
  that a pick can also be judged by its mean test accuracy over seeds (less of it is one seed's luck)
  and the summary says how much the seed alone moves a candidate's test accuracy.

``--summarise`` then applies each selection rule to the shortlists of length 4, 8 and 16 and reports
the test accuracy of the model each rule would export, paired against the product's rule (best
re-rank accuracy, one seed) with a 95 % interval, next to the shortlist's mean (a random pick) and
best (an oracle that looks at test). Selection never sees test; test only judges. Run from the
repository root::

    python benchmarks/bench_selection.py --configs configs/bench/small_cnn_digits.yaml \\
        --levels params=0.5,0.25,0.1,0.05 --agents random,evolution --seeds 2 3 4 5 6 --jobs 2 \\
        --out benchmarks/results/selection/small_cnn.jsonl
    python benchmarks/bench_selection.py --summarise benchmarks/results/selection/small_cnn.jsonl
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_search  # noqa: E402  (the search part of a run, and the paired interval)

from rayprune.config.search import RerankConfig  # noqa: E402

SHORTLISTS = (4, 8, 16, 32)


def _split_stats(problem, model, split: str) -> dict[str, Any]:
    """Accuracy, mean loss and per-sample correctness (a string of 0/1, in the split's order) of ``model`` on
    ``split``."""
    import torch

    from rayprune.engine import model_device, training_mode

    source = problem.data.source(split)
    device = model_device(model) or source.device
    correct, losses = [], []
    custom = problem.objective.loss  # None: cross-entropy (without the fine-tune's label smoothing here)
    with training_mode(model, False), torch.inference_mode():
        for xb, yb in source.batches(512, device=device):
            out = model(xb)
            correct.append((out.argmax(dim=1) == yb).cpu())
            if custom is None:
                losses.append(torch.nn.functional.cross_entropy(out, yb, reduction="none").cpu())
            else:
                losses.append(torch.stack([custom(out[i:i + 1], yb[i:i + 1]) for i in range(len(yb))]).cpu())
    c, lo = torch.cat(correct).numpy(), torch.cat(losses).numpy()
    return {"acc": float(c.mean()), "loss": float(lo.mean()), "correct": "".join("1" if v else "0" for v in c)}


def _tuned(problem, ratios, ft, seed: int):
    """The candidate built, BatchNorm re-estimated (as every score does) and fine-tuned for ``ft``."""
    from rayprune.engine import fine_tune, recalibrate_batchnorm

    cfg = problem.config
    model = problem.space.build(ratios)
    if cfg.pruning.recalibrate_bn:
        bn = cfg.search.adaptive_bn
        recalibrate_batchnorm(model, problem.data.source("train"), batch_size=bn.batch_size, max_batches=bn.batches)
    fine_tune(model, problem.data, ft.engine_config(), seed=seed, loss_fn=problem.objective.loss)
    return model


def run_one(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One search, then every shortlisted candidate re-ranked ``rerank_seeds`` times and finally fine-tuned."""
    from rayprune.search.selection import candidates_for, top_distinct

    out = Path(tempfile.mkdtemp(prefix="bench-selection-"))
    try:
        s = bench_search.run_search(job, out)
        problem, cfg, levels, rows = s["problem"], s["cfg"], s["levels"], s["rows"]
        search = rows[rows["stage"] == "search"]
        ranks: dict[str, dict[str, int]] = {}
        first: dict[str, pd.Series] = {}
        for level in levels:
            short = top_distinct(candidates_for(search, level), job["top_k"], tiebreak=list(problem.costs))
            for rank, (_, row) in enumerate(short.iterrows()):
                ranks.setdefault(row["candidate_id"], {})[level.name] = rank
                first.setdefault(row["candidate_id"], row)
        reranks: dict[str, list[dict[str, Any]]] = {}
        t_rerank: dict[str, float] = {}
        for idx, (cid, row) in enumerate(first.items()):
            ratios = [float(r) for r in row["keep_ratios"]]
            t = time.perf_counter()
            reranks[cid] = [_split_stats(problem, _tuned(problem, ratios, cfg.search.finetune, 1000 * r + idx), "val")
                            for r in range(job["rerank_seeds"])]
            t_rerank[cid] = (time.perf_counter() - t) / job["rerank_seeds"]
        finalised = _needs_final(ranks, reranks, job.get("finals_among"))
        records = []
        for cid, row in first.items():
            rec = {"config": Path(job["config"]).stem, "agent": job["label"], "seed": job["seed"],
                   "evaluations": job["evaluations"], "candidate_id": cid, "ranks": ranks[cid],
                   "search": float(row["accuracy"]), **{c: float(row[c]) for c in problem.costs},
                   "rerank": reranks[cid], "final_val": None, "final_test": None, "final_more": [],
                   "t_rerank": t_rerank[cid], "t_final": None, "search_s": s["search_s"]}
            if cid in finalised:
                ratios = [float(r) for r in row["keep_ratios"]]
                t = time.perf_counter()
                model = _tuned(problem, ratios, cfg.search.final_finetune, job["seed"])
                rec["t_final"] = time.perf_counter() - t
                rec["final_val"], rec["final_test"] = _split_stats(problem, model, "val"), _split_stats(problem, model, "test")
                for j in range(1, job.get("final_seeds", 1)):  # other seeds: how much of a pick's test is its seed
                    other = _tuned(problem, ratios, cfg.search.final_finetune, job["seed"] + 100_000 * j)
                    rec["final_more"].append({"val": problem.accuracy(other, "val"),
                                              "test": problem.accuracy(other, "test")})
            records.append(rec)
        return records
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _needs_final(ranks: dict[str, dict[str, int]], reranks: dict[str, list[dict[str, Any]]],
                 among: Optional[int]) -> set[str]:
    """The candidates that get a final fine-tune: every shortlisted one (``among`` None), or only those the
    product's rules can pick: per level and shortlist length in :data:`SHORTLISTS`, the first by search score
    and the ``among`` best by the first re-rank (the product's order; ``among`` >= the weak-level rule's
    finals, so that rule can be judged too). Other rules' picks may lack a final: they are then n/a.

    >>> ranks = {c: {"L": i} for i, c in enumerate("abcdefghij")}
    >>> reranks = {c: [{"acc": a}] for c, a in zip("abcdefghij", [.9, .8, .7, .6, .5, .4, .3, .2, .1, .99])}
    >>> sorted(_needs_final(ranks, reranks, 4))  # lengths 4 and 8: a-d lead the re-rank; 16 (all ten): j, a-c
    ['a', 'b', 'c', 'd', 'j']
    """
    if among is None:
        return set(ranks)
    if among < WEAK_FINALS:
        raise ValueError(f"--finals-among must be at least {WEAK_FINALS} (the weak-level rule's finals); got {among}")
    needed: set[str] = set()
    for level in {lv for r in ranks.values() for lv in r}:
        listed = sorted((c for c in ranks if level in ranks[c]), key=lambda c: ranks[c][level])
        needed.add(listed[0])
        for k in SHORTLISTS:
            first = listed[:k]
            needed.update(sorted(first, key=lambda c: (-reranks[c][0]["acc"], first.index(c)))[:among])
            if k >= len(listed):
                break
    return needed


def _run_job(job):
    try:
        return run_one(job)
    except Exception as exc:  # noqa: BLE001 - record and go on
        import traceback

        return [{"config": Path(job["config"]).stem, "agent": job["label"], "seed": job["seed"],
                 "error": f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"}]


# -- the rules ------------------------------------------------------------------------------------
def _mean(items, key):
    return float(np.mean([i[key] for i in items]))


#: the product's search.rerank.weak_finals default: how many re-ranked candidates a weak level finalises
WEAK_FINALS = RerankConfig.model_fields["weak_finals"].default
WEAK_FINALS_RULE = f"final val among the {WEAK_FINALS} best re-ranked (weak level)"

#: name -> (what it costs, re-rank seeds it needs, a sort key over a shortlist's records: larger is
#: chosen; ties keep the shortlist's order, as the product's stable sort does; None: see _pick)
RULES: dict[str, tuple[str, int, Callable[[dict], Any]]] = {
    "search score only": ("no re-rank", 0, lambda r: r["search"]),
    "re-rank accuracy (product)": ("1 short fine-tune each", 1, lambda r: r["rerank"][0]["acc"]),
    "re-rank loss": ("1 short fine-tune each", 1, lambda r: -r["rerank"][0]["loss"]),
    "re-rank accuracy, ties by loss": ("1 short fine-tune each", 1,
                                       lambda r: (r["rerank"][0]["acc"], -r["rerank"][0]["loss"])),
    "re-rank accuracy, 3 seeds": ("3 short fine-tunes each", 3, lambda r: (_mean(r["rerank"][:3], "acc"),
                                                                            -_mean(r["rerank"][:3], "loss"))),
    "re-rank loss, 3 seeds": ("3 short fine-tunes each", 3, lambda r: -_mean(r["rerank"][:3], "loss")),
    "final val accuracy": ("a final fine-tune each", 0, lambda r: r["final_val"]["acc"]),
    "final val loss": ("a final fine-tune each", 0, lambda r: -r["final_val"]["loss"]),
    # the product at a weak level (search.rerank.weak_finals): its best re-ranked candidates get a final
    # fine-tune and the best by validation wins
    WEAK_FINALS_RULE: (f"1 short fine-tune each, {WEAK_FINALS} finals", 1, None),
}
PRODUCT = "re-rank accuracy (product)"


def _judged(rec: dict, judge: str) -> float:
    """A candidate's test accuracy: after the product's final fine-tune (``one``), or the mean over every final
    seed measured (``mean``: less of the pick's value is its fine-tune seed's luck); NaN without a final."""
    if not isinstance(rec.get("final_test"), dict):
        return float("nan")
    tests = [rec["final_test"]["acc"]]
    if judge == "mean":
        tests += [m["test"] for m in (rec.get("final_more") or [])]
    return float(np.mean(tests))


def picks(frame: pd.DataFrame, k: int, judge: str = "one") -> pd.DataFrame:
    """For each (config, agent, seed, level) shortlist of length ``k``: the test accuracy of each rule's pick,
    the shortlist's mean and best test accuracy (``judge``: see :func:`_judged`)."""
    out = []
    for (config, agent, seed), g in frame.groupby(["config", "agent", "seed"], sort=False):
        recs = g.to_dict("records")
        levels = sorted({lv for r in recs for lv in r["ranks"]})
        for level in levels:
            short = sorted((r for r in recs if level in r["ranks"] and r["ranks"][level] < k),
                           key=lambda r: r["ranks"][level])
            if not short:
                continue
            tests = [_judged(r, judge) for r in short]  # NaN where a candidate got no final (--finals-among)
            whole = not np.isnan(tests).any()
            rec = {"config": config, "agent": agent, "seed": seed, "level": level, "k": k, "n": len(short),
                   "mean of shortlist": float(np.mean(tests)) if whole else np.nan,
                   "best of shortlist (test oracle)": max(tests) if whole else np.nan}
            for name, (_, seeds, key) in RULES.items():
                if any(len(r["rerank"]) < seeds for r in short):  # measured with fewer re-rank seeds
                    continue
                if name.startswith("final val") and not whole:  # needs every candidate's final
                    rec[name] = np.nan
                    continue
                rec[name] = tests[_pick(short, key)]
            out.append(rec)
    return pd.DataFrame(out)


def _pick(short: list[dict], key: Optional[Callable[[dict], Any]]) -> int:
    """Index of the shortlisted record a rule picks: the largest ``key`` (ties: the earlier one); ``key`` None:
    the weak-level rule — the best final validation accuracy among the first :data:`WEAK_FINALS` by the
    product's re-rank order.

    >>> pairs = [(0.5, 0.6), (0.4, 0.9), (0.3, 0.7), (0.2, 0.5), (0.1, 0.99)]  # (re-rank, final validation)
    >>> recs = [{"rerank": [{"acc": a}], "final_val": {"acc": v}} for a, v in pairs]
    >>> _pick(recs, RULES[PRODUCT][2]), _pick(recs, None), _pick(recs, RULES["final val accuracy"][2])
    (0, 1, 4)
    """
    if key is not None:
        return max(range(len(short)), key=lambda i: (key(short[i]), -i))
    product = RULES[PRODUCT][2]
    order = sorted(range(len(short)), key=lambda i: (-product(short[i]), i))[:WEAK_FINALS]
    return max(order, key=lambda i: (short[i]["final_val"]["acc"], -order.index(i)))


def _cell(values: pd.Series, product: pd.Series, is_product: bool) -> str:
    if values.isna().any():  # a pick without a final fine-tune (--finals-among): not judged
        return "n/a"
    m, lo, hi = bench_search._ci95(100 * (values - product).to_numpy())
    return f"{100 * values.mean():.2f}" + ("" if is_product else f" ({m:+.2f} [{lo:+.2f}, {hi:+.2f}])")


def overview(frame: pd.DataFrame, judge: str) -> str:
    """Per config: a row per rule, a column per shortlist length, over every level and run (BENCHMARKS.md's
    tables). Levels of one run share candidates, so these intervals are a little optimistic."""
    lines = []
    for config, g in frame.groupby("config", sort=False):
        p = {k: picks(g, k, judge) for k in SHORTLISTS}
        p = {k: v for k, v in p.items() if not v.empty and (k == SHORTLISTS[0] or (v["n"] >= k).any())}
        runs = g[["agent", "seed"]].drop_duplicates()
        lines += [f"\n{config}, every level ({len(runs)} runs: {', '.join(sorted(set(runs['agent'])))}; judged by "
                  + ("the test accuracy after the product's final fine-tune" if judge == "one" else
                     "the mean test accuracy over the final fine-tune seeds") + ")",
                  "| rule | cost | " + " | ".join(f"top {k}" for k in p) + " |", "|---|---|" + "---|" * len(p)]
        for rule in ["mean of shortlist", *[r for r in RULES if r in next(iter(p.values()))],
                     "best of shortlist (test oracle)"]:
            cells = [_cell(v[rule], v[PRODUCT], rule == PRODUCT) for v in p.values()]
            lines.append(f"| {rule} | {RULES[rule][0] if rule in RULES else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the product's search.rerank.top_k default: the shortlist length the other lengths are paired with
TOP_K = RerankConfig.model_fields["top_k"].default


def by_length(frame: pd.DataFrame, judge: str = "one") -> str:
    """The product's two rules (the re-rank's winner; the weak-level rule) at every shortlist length measured,
    each paired with the same rule at the product's ``top_k``: what a longer (or shorter) re-rank shortlist buys,
    per config and level. Lengths above ``top_k`` appear where some shortlist is that long; shorter ones always."""
    lengths = [k for k in SHORTLISTS if k != TOP_K and not (p := picks(frame, k, judge)).empty and (p["n"] >= k).any()
               or k < TOP_K]
    if not lengths:
        return ""
    base = picks(frame, TOP_K, judge).set_index(["config", "agent", "seed", "level"])
    lines = [f"\nShortlist length: each rule at k re-ranked candidates against the same rule at the product's "
             f"top_k = {TOP_K} (test %, paired difference with its 95 % interval; one row per config and level)",
             "| config | level | rule | " + " | ".join(f"k = {k}" for k in sorted({*lengths, TOP_K})) + " |",
             "|---|---|---|" + "---|" * len({*lengths, TOP_K})]
    per_k = {k: picks(frame, k, judge).set_index(["config", "agent", "seed", "level"]) for k in sorted({*lengths, TOP_K})}
    for (config, level), g in base.groupby(level=["config", "level"], sort=False):
        for rule in (PRODUCT, WEAK_FINALS_RULE):
            cells = []
            for k, p in per_k.items():
                joined = p[rule].reindex(g.index)
                cells.append(_cell(joined, g[rule], k == TOP_K))
            lines.append(f"| {config} | {level} | {rule} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def split_half_gain(correct: np.ndarray, pick: int, repeats: int = 200, seed: int = 0) -> tuple[float, float]:
    """What a perfect decider would really add over ``pick``, judged on images it did not choose on.

    ``correct`` is a (candidates x test images) 0/1 array in shortlist order. Each repeat splits the images at
    random into halves A and B; the candidate best on A (ties: the earlier) and ``pick`` are both judged on B.
    Returns the mean over repeats of (best on A, judged on B) − (pick on B) — the honest oracle's gain — and of
    (best on B) − (pick on B): the in-sample oracle's, which the best of noisy numbers inflates.

    >>> same = np.tile(np.array([[1] * 90 + [0] * 10]), (8, 1))  # 8 identical candidates: nothing to gain
    >>> split_half_gain(same, pick=0)
    (0.0, 0.0)
    >>> rng = np.random.default_rng(0)
    >>> noisy = (rng.random((8, 1000)) < 0.9).astype(int)  # 8 equal candidates whose test images err at random
    >>> honest, inflated = split_half_gain(noisy, pick=0)
    >>> abs(honest) < 0.01 < inflated  # the in-sample oracle finds a "gain" where there is none
    True
    >>> better = noisy.copy(); better[3, :600] = 1  # one candidate truly better, by about 6 points
    >>> 0.04 < split_half_gain(better, pick=0)[0] < 0.08
    True
    """
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    honest, inflated = [], []
    for _ in range(repeats):
        perm = rng.permutation(n)
        a, b = correct[:, perm[: n // 2]].mean(axis=1), correct[:, perm[n // 2:]].mean(axis=1)
        honest.append(b[int(np.argmax(a))] - b[pick])  # argmax: the first of equal values
        inflated.append(b.max() - b[pick])
    return float(np.mean(honest)), float(np.mean(inflated))


def split_half(frame: pd.DataFrame, k: int = 8, repeats: int = 200) -> str:
    """The test oracle's gain over the product's pick, in-sample (as the rule tables report it) and honest
    (:func:`split_half_gain`), per config over every shortlist of length ``k`` with one final each."""
    rows = []
    for (config, agent, seed), g in frame.groupby(["config", "agent", "seed"], sort=False):
        recs = g.to_dict("records")
        for level in sorted({lv for r in recs for lv in r["ranks"]}):
            short = sorted((r for r in recs if level in r["ranks"] and r["ranks"][level] < k),
                           key=lambda r: r["ranks"][level])
            if len(short) < 2 or not all(isinstance(r.get("final_test"), dict) and "correct" in r["final_test"]
                                         for r in short):
                continue
            correct = np.array([[c == "1" for c in r["final_test"]["correct"]] for r in short], dtype=float)
            pick = _pick(short, RULES[PRODUCT][2])
            honest, inflated = split_half_gain(correct, pick, repeats)
            full = correct.mean(axis=1)
            rows.append({"config": config, "full": full.max() - full[pick], "inflated": inflated, "honest": honest,
                         "images": correct.shape[1], "n": len(short)})
    if not rows:
        return ""
    p = pd.DataFrame(rows)
    lines = [f"\nTest oracle − product's pick, shortlists of up to {k} (points; mean [95 % t-interval over shortlists]; "
             f"halves: {repeats} random splits of the test images, the oracle chooses on A, both judged on B)",
             "| config | shortlists | test images | in-sample, whole test | in-sample, half B | honest: best on A, judged on B |",
             "|---|---|---|---|---|---|"]
    for config, g in p.groupby("config", sort=False):
        cells = []
        for col in ("full", "inflated", "honest"):
            m, lo, hi = bench_search._ci95(100 * g[col].to_numpy())
            cells.append(f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        lines.append(f"| {config} | {len(g)} | {int(g['images'].iloc[0])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarise(frame: pd.DataFrame) -> str:
    """The overview per judge, then one table per config and shortlist length: a row per rule, a column per
    level (and all levels)."""
    if "error" in frame:
        frame = frame[frame["error"].isna()]
    judges = ["one"]
    finalised = frame["final_test"].map(lambda t: isinstance(t, dict)) if "final_test" in frame else None
    if "final_more" in frame and finalised is not None and frame[finalised]["final_more"].map(
            lambda m: isinstance(m, list) and len(m) > 0).all():
        judges.append("mean")
    lines = [overview(frame, judge) for judge in judges] + [by_length(frame), split_half(frame)]
    for judge, k in ((j, k) for j in judges for k in SHORTLISTS):
        p = picks(frame, k, judge)
        if p.empty or (k > SHORTLISTS[0] and (p["n"] < k).all()):  # longer than any shortlist: nothing new
            continue
        rows = ["mean of shortlist", *[r for r in RULES if r in p], "best of shortlist (test oracle)"]
        for config, g in p.groupby("config", sort=False):
            levels = list(dict.fromkeys(g.sort_values("level")["level"]))
            runs = g[["agent", "seed"]].drop_duplicates()
            judged = ("test accuracy (%)" if judge == "one" else
                      f"test accuracy (%) averaged over {1 + len(frame['final_more'].iloc[0])} final fine-tune seeds")
            lines += [f"\n{config}, shortlist of {k}: {judged} of the model each rule picks, mean over "
                      f"{len(runs)} runs ({', '.join(sorted(set(runs['agent'])))}); in brackets the paired "
                      "difference to the product's rule with its 95 % interval",
                      "| rule | cost | " + " | ".join(levels) + " | all levels |", "|---|---|" + "---|" * (len(levels) + 1)]
            for rule in rows:
                cost = RULES[rule][0] if rule in RULES else ""
                cells = [_cell(g[g["level"] == lv][rule], g[g["level"] == lv][PRODUCT], rule == PRODUCT) for lv in levels]
                cells.append(_cell(g[rule], g[PRODUCT], rule == PRODUCT))
                lines.append(f"| {rule} | {cost} | " + " | ".join(cells) + " |")
    if "mean" in judges:
        done = frame[finalised]
        sd = done.apply(lambda r: np.std([r["final_test"]["acc"], *[m["test"] for m in r["final_more"]]], ddof=1), axis=1)
        lines.append(f"\nThe final fine-tune's seed alone moves a candidate's test accuracy by {100 * sd.mean():.2f} "
                     f"points (sd over seeds, mean over {len(done)} candidates).")
    t = frame.groupby("config")[["t_rerank", "t_final"]].mean()
    lines.append("\nSeconds per candidate (one thread): " + "; ".join(
        f"{c}: short fine-tune {r.t_rerank:.2f}, final {r.t_final:.2f}" for c, r in t.iterrows()))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", nargs="+", default=["configs/bench/small_cnn_digits.yaml"])
    ap.add_argument("--agents", default="random,evolution")
    ap.add_argument("--seeds", nargs="+", type=int, default=[2, 3, 4, 5, 6])
    ap.add_argument("--evaluations", type=int, default=512)
    ap.add_argument("--levels", help="replace the configs' sweep levels, e.g. params=0.5,0.25,0.1,0.05")
    ap.add_argument("--top-k", type=int, default=16, help="shortlist length measured per level (up to 32 compared)")
    ap.add_argument("--rerank-seeds", type=int, default=3)
    ap.add_argument("--final-seeds", type=int, default=1, help="final fine-tunes per candidate (seeds after the run's)")
    ap.add_argument("--finals-among", type=int, metavar="N",
                    help="final fine-tunes only for the N (>= the weak-level rule's finals) best re-ranked of each "
                         "shortlist length and the best by search score, not for every shortlisted candidate: a rule "
                         "whose pick has no final, or that needs every final, is then not judged (n/a)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="search.* override, as bench_search")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", help="JSON-lines file of per-candidate records (appended)")
    ap.add_argument("--summarise", nargs="+")
    args = ap.parse_args()
    if args.finals_among is not None and args.finals_among < WEAK_FINALS:
        ap.error(f"--finals-among must be at least {WEAK_FINALS} (the weak-level rule's finals); got {args.finals_among}")
    if args.summarise:
        print(summarise(pd.concat([pd.read_json(p, lines=True) for p in args.summarise], ignore_index=True)))
        return
    search = bench_search.search_overrides(args.set)
    jobs = [dict(config=c, agent=a, label=a, seed=s, evaluations=args.evaluations, levels=args.levels, search=search,
                 top_k=args.top_k, rerank_seeds=args.rerank_seeds,
                 final_seeds=args.final_seeds, finals_among=args.finals_among)
            for c in args.configs for s in args.seeds for a in args.agents.split(",")]
    for c in args.configs:  # train and cache base models once, before the workers start
        bench_search._problem(c, args.levels)
    started = time.time()
    records: list[dict] = []

    def report(recs: list[dict]) -> None:
        nonlocal records
        records += recs
        r = recs[0]
        print(f"[{time.time() - started:6.0f}s] {r['config']} {r['agent']} seed {r['seed']}: "
              + (f"ERROR {r['error']}" if r.get("error") else f"{len(recs)} candidates measured"), flush=True)
        if args.out:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            with open(args.out, "a") as fh:
                for rec in recs:
                    fh.write(json.dumps(rec, default=float) + "\n")

    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs, initializer=bench_search._worker_init, maxtasksperchild=1) as pool:
            for recs in pool.imap_unordered(_run_job, jobs):
                report(recs)
    else:
        for job in jobs:
            report(_run_job(job))
    print(summarise(pd.DataFrame(records)))


if __name__ == "__main__":
    main()
