"""Candidate scores the product does not have yet, measured on candidates whose final accuracy is known.

``bench_scores.py`` rows carry each candidate's keep ratios and its test accuracy after the final
fine-tune (the expensive part: ~30 s a candidate). This script rebuilds those candidates from the
same cached base model and measures cheaper scores on them, so a new score's rank correlation with
the final accuracy costs seconds, not another round of final fine-tunes:

* ``abn_acc``: the product's adaptive-BN score (a check: it must reproduce the row's ``adaptive_bn``,
  or the run stops — the rows were measured on another base);
* ``abn_loss``: minus the cross-entropy on the same validation samples after adaptive BN;
* ``abn_kd``: minus KL(base ‖ candidate) of the softmax outputs, averaged over the samples (the
  distillation direction: the base as teacher; no labels used);
* ``abn_fid``: share of the validation samples on which the candidate's top-1 equals the base's;
* ``abn40_acc`` / ``abn40_loss``: adaptive BN on 40 batches instead of the config's count;
* ``ft{K}_acc`` / ``ft{K}_loss``: after a ``K``-iteration run of the re-rank's fine-tune (its
  optimizer, learning rate, schedule over ``K`` and batch size, from adaptive BN, seeded with the row's
  ``i`` as ``bench_scores.py`` seeded its re-rank), on every validation sample; ``K`` = 30 reproduces
  the row's ``finetune``.

Rows measured on another base model than the config gives now are refused, since their finals
belong to that base (base training is not bit-reproducible; the converged benchmark bases are pinned
in ``benchmarks/bases/``): a row without ``base_val``, a ``base_val`` other than the base's validation
accuracy, or an adaptive-BN score the rebuilt candidate does not reproduce.
Run from the repository root::

    python benchmarks/bench_score_probe.py --rows benchmarks/results/scores/resnet20_trained.jsonl \\
        --configs-dir configs/bench --out benchmarks/results/scores/probe_resnet20_trained.jsonl
    python benchmarks/bench_score_probe.py --summarise benchmarks/results/scores/probe_*.jsonl
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FT_ITERATIONS = (5, 10, 30)
PROBES = ("adaptive_bn", "abn_acc", "abn_loss", "abn_kd", "abn_fid", "abn40_acc", "abn40_loss",
          *[f"ft{k}_{m}" for k in FT_ITERATIONS for m in ("acc", "loss")], "finetune", "final_val")


def _outputs(model, source, batch_size: int = 512):
    import torch

    from rayprune.engine import training_mode

    outs, ys = [], []
    with training_mode(model, False), torch.inference_mode():
        for xb, yb in source.batches(batch_size, device=torch.device("cpu")):
            outs.append(model(xb))
            ys.append(yb)
    return torch.cat(outs), torch.cat(ys)


def _stats(logits, y, teacher=None) -> dict[str, float]:
    import torch.nn.functional as F

    out = {"acc": float((logits.argmax(1) == y).float().mean()), "loss": -float(F.cross_entropy(logits, y))}
    if teacher is not None:
        log_p = F.log_softmax(logits, 1)
        log_t = F.log_softmax(teacher, 1)
        out["kd"] = -float(F.kl_div(log_p, log_t, log_target=True, reduction="batchmean"))
        out["fid"] = float((logits.argmax(1) == teacher.argmax(1)).float().mean())
    return out


def probe_rows(rows: list[dict], config: str) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    from bench_scores import _problem

    from rayprune.engine import fine_tune, recalibrate_batchnorm
    from rayprune.problem import _split_of
    from rayprune.search.score_signal import chance_and_base

    problem = _problem(config, float(rows[0]["budget"]))
    cfg = problem.config
    base_val = chance_and_base(problem)[1]
    if base_val is None:
        raise SystemExit(f"{config}: the probe's scores are accuracies of a classifier; this config's task or metric "
                         "is another.")
    for r in rows:
        row_base = r.get("base_val")
        if row_base is None or not abs(float(row_base) - base_val) <= 1e-9:  # NaN (a row without it) fails too
            raise SystemExit(f"{config}: the base model scores {base_val:.4f} on validation, row #{r['i']}'s base "
                             f"{row_base}; its final belongs to another base model. Re-run bench_scores.py.")
    val = _split_of(problem.data, "val", torch.device("cpu"), cfg.search.eval_samples, seed=cfg.seed).source
    full_val = problem.data.source("val")
    teacher, y = _outputs(problem.base_model, val)
    bn = cfg.search.adaptive_bn
    train = problem.data.source("train")
    out = []
    for r in rows:
        rec = {k: r[k] for k in ("config", "budget", "seed", "i", "adaptive_bn", "finetune", "final_val", "final_test")}
        t = time.perf_counter()
        recalibrated = problem.space.build(r["keep_ratios"])
        recalibrate_batchnorm(recalibrated, train, batch_size=bn.batch_size, max_batches=bn.batches)
        s = _stats(_outputs(recalibrated, val)[0], y, teacher)
        rec.update({f"abn_{k}": v for k, v in s.items()})
        rec["t_abn"] = time.perf_counter() - t
        if not abs(rec["abn_acc"] - float(r["adaptive_bn"])) <= 1e-6:  # float32 means; NaN fails too
            raise SystemExit(f"{config}: row #{r['i']} scored {r['adaptive_bn']} after adaptive BN, the rebuilt "
                             f"candidate {rec['abn_acc']}; the row was measured on another base model or code.")
        t = time.perf_counter()
        model = problem.space.build(r["keep_ratios"])
        recalibrate_batchnorm(model, train, batch_size=bn.batch_size, max_batches=40)
        s = _stats(_outputs(model, val)[0], y)
        rec["abn40_acc"], rec["abn40_loss"] = s["acc"], s["loss"]
        rec["t_abn40"] = time.perf_counter() - t
        for k in FT_ITERATIONS:  # each its own run (the re-rank's cosine schedule over k iterations)
            t0 = time.perf_counter()
            ft = copy.deepcopy(recalibrated)  # the adaptive-BN model above: built and recalibrated once
            engine = dataclasses.replace(cfg.search.finetune.engine_config(), iterations=k)
            fine_tune(ft, problem.data, engine, seed=int(r["i"]), loss_fn=problem.objective.loss)
            s = _stats(*_outputs(ft, full_val))
            rec[f"ft{k}_acc"], rec[f"ft{k}_loss"] = s["acc"], s["loss"]
            rec[f"t_ft{k}"] = rec["t_abn"] + time.perf_counter() - t0  # build and adaptive BN counted once, above
        out.append(rec)
        print(f"{config} {r['budget']} #{r['i']}: abn {rec['abn_acc']:.3f} (row {r['adaptive_bn']:.3f}) "
              f"kd {rec['abn_kd']:.3f} ft{k} {rec[f'ft{k}_acc']:.3f} final {r['final_test']:.3f}", flush=True)
    return out


def summarise(frame: pd.DataFrame) -> str:
    from scipy import stats

    lines = ["| model | params | n | score | Spearman ρ with final test | Kendall τ | s / candidate |", "|---|---|---|---|---|---|---|"]
    cost = {"abn_acc": "t_abn", "abn_loss": "t_abn", "abn_kd": "t_abn", "abn_fid": "t_abn", "abn40_acc": "t_abn40",
            "abn40_loss": "t_abn40", **{f"ft{k}_{m}": f"t_ft{k}" for k in FT_ITERATIONS for m in ("acc", "loss")}}
    for (config, budget), g in frame.groupby(["config", "budget"], sort=False):
        for score in PROBES:
            if score not in g or g[score].isna().all():
                continue
            rho = stats.spearmanr(g[score], g["final_test"]).statistic
            tau = stats.kendalltau(g[score], g["final_test"]).statistic
            seconds = f"{g[cost[score]].mean():.2f}" if score in cost else ""
            lines.append(f"| {config} | {budget:g} | {len(g)} | {score} | {rho:+.2f} | {tau:+.2f} | {seconds} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", nargs="+", help="bench_scores.py rows (jsonl)")
    ap.add_argument("--configs-dir", default="configs/bench")
    ap.add_argument("--out")
    ap.add_argument("--summarise", nargs="+")
    args = ap.parse_args()
    if args.summarise:
        print(summarise(pd.concat([pd.read_json(p, lines=True) for p in args.summarise], ignore_index=True)))
        return
    from bench_scores import append_rows

    if not args.rows:
        ap.error("give --rows (bench_scores.py output) or --summarise")
    frame = pd.concat([pd.read_json(p, lines=True) for p in args.rows], ignore_index=True)
    records = []
    for (config, budget), g in frame.groupby(["config", "budget"], sort=False):
        recs = probe_rows(g.to_dict("records"), str(Path(args.configs_dir) / f"{config}.yaml"))
        records += recs
        if args.out:
            append_rows(args.out, recs)
    print(summarise(pd.DataFrame(records)))


if __name__ == "__main__":
    main()
