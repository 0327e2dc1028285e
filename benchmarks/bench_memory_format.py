"""Benchmark: a candidate's fine-tune step and evaluation in NCHW against channels_last, on CPU.

Where a candidate's time goes is its fine-tune and evaluation (BENCHMARKS.md, "Throughput"), so
the layout of its activations matters. For each model this script builds the base and two pruned
candidates (keep ratio 0.5 and 0.25 for every group, ``round_to=1`` as the quickstart prunes), and
times, in the evaluator's thread setting (``torch.set_num_threads(--threads)``):

* one SGD fine-tune step (forward, backward, step) on a batch of ``--batch`` samples;
* one evaluation forward pass (``torch.no_grad``, eval mode) on the same batch;

each in the default contiguous layout (NCHW) and in ``torch.channels_last``. Measurements are
interleaved (contiguous and channels_last take turns, ``--rounds`` rounds of ``--steps`` steps)
so that machine noise hits both alike; the table gives the medians and the ratio
contiguous / channels_last (above 1: channels_last is faster).

``--scores CONFIG...`` times the product's own path instead: ``CandidateEvaluator.score`` of the
config's search score (adaptive BN) and re-rank score (a short fine-tune) on ``--candidates`` random
candidates (keep ratios uniform in [min_keep, 1], seeded), with ``evaluation.channels_last`` false
and true, interleaved candidate by candidate; the accuracies of both settings are compared too.

Run from the repository root::

    python benchmarks/bench_memory_format.py
    python benchmarks/bench_memory_format.py --models small_cnn:width_mult=2 --threads 1 2
    python benchmarks/bench_memory_format.py --scores configs/quickstart.yaml configs/bench/vgg11_mnist.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from rayprune.models import build_model
from rayprune.pruning import PruningSpace

MODELS = {
    "small_cnn:width_mult=2": ("small_cnn", {"width_mult": 2.0}, (1, 28, 28)),
    "vgg11:width_mult=0.25": ("vgg11", {"width_mult": 0.25}, (1, 32, 32)),
    "resnet20": ("resnet20", {}, (1, 32, 32)),
    "user_cnn:width=16": ("user_models:dsconv_net", {"width": 16}, (1, 28, 28)),
    "vgg16": ("vgg16", {}, (3, 32, 32)),
}


def _model(key: str) -> tuple[nn.Module, tuple[int, ...]]:
    name, kwargs, shape = MODELS[key]
    if name.startswith("user_models:"):
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from user_models import dsconv_net  # noqa: PLC0415 - the benchmark's own user model

        return dsconv_net(num_classes=10, in_channels=shape[0], **kwargs), shape
    return build_model(name, num_classes=10, in_channels=shape[0], **kwargs), shape


def crashes_in_channels_last_backward(model: nn.Module) -> bool:
    """A strided 1x1 convolution with fewer than 8 input channels: its channels_last weight gradient
    corrupts memory in torch 2.13's CPU build (oneDNN issue 6035), so the step is not timed."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1 and m.in_channels < 8
               for m in model.modules())


def _timer(model: nn.Module, x: torch.Tensor, y: torch.Tensor, train: bool):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        if train:
            model.train()
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        else:
            model.eval()
            with torch.no_grad():
                model(x)

    return step


def _time(step, steps: int) -> float:
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t) / steps


def measure(key: str, keep: float, threads: int, *, batch: int, rounds: int, steps: int) -> dict:
    torch.manual_seed(0)
    base, shape = _model(key)
    example = torch.randn(2, *shape)
    if keep >= 1.0:
        model = base
    else:
        space = PruningSpace(base, example, importance="l2", round_to=1)
        model = space.build([keep] * space.num_groups)
    torch.set_num_threads(threads)
    x = torch.randn(batch, *shape)
    y = torch.randint(0, 10, (batch,))
    layouts = {
        "contiguous": (model, x),
        "channels_last": (copy.deepcopy(model).to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)),
    }
    out: dict[str, dict[str, list[float]]] = {k: {"train": [], "eval": []} for k in layouts}
    kinds = ("eval",) if crashes_in_channels_last_backward(model) else ("train", "eval")
    timers = {(k, kind): _timer(m, xx, y, kind == "train") for k, (m, xx) in layouts.items() for kind in kinds}
    for t in timers.values():  # warm-up: oneDNN picks its kernels on the first calls
        for _ in range(2):
            t()
    for r in range(rounds):
        order = list(layouts) if r % 2 == 0 else list(reversed(layouts))
        for kind in kinds:
            for k in order:
                out[k][kind].append(_time(timers[(k, kind)], steps))
    med = {k: {kind: statistics.median(v) if v else float("nan") for kind, v in d.items()} for k, d in out.items()}
    params = sum(p.numel() for p in model.parameters())
    return {"model": key, "keep": keep, "threads": threads, "batch": batch, "params": params,
            "train_ms": {k: 1e3 * med[k]["train"] for k in med}, "eval_ms": {k: 1e3 * med[k]["eval"] for k in med},
            "train_ratio": med["contiguous"]["train"] / med["channels_last"]["train"],
            "eval_ratio": med["contiguous"]["eval"] / med["channels_last"]["eval"]}


def measure_scores(config: str, candidates: int, threads: int) -> dict:
    """Seconds per candidate of the product's scores with ``evaluation.channels_last`` false / true."""
    import numpy as np

    from rayprune.config import load_config
    from rayprune.evaluation.candidate import CandidateEvaluator
    from rayprune.evaluation.score import score_specs
    from rayprune.problem import PruningProblem

    torch.set_num_threads(threads)
    cfg = load_config(config)
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda *_: None)
    evaluators = {}
    for setting in (False, True):
        c = cfg.model_copy(deep=True)
        c.evaluation.channels_last = setting
        evaluators[setting] = CandidateEvaluator(PruningProblem.from_parts(
            c, problem.data, problem.base_model, problem.base_info, device=problem.device,
            base_costs=problem.base_costs, base_accuracy=problem.base_accuracy))
    rng = np.random.default_rng(0)
    lo = cfg.pruning.min_keep
    ratios = [list(rng.uniform(lo, 1.0, problem.space.num_groups)) for _ in range(candidates)]
    out: dict = {"config": config, "candidates": candidates, "threads": threads}
    for name, spec in zip(("adaptive_bn", "rerank"), score_specs(cfg)):
        if spec is None:
            continue
        n = candidates if name == "adaptive_bn" else max(2, candidates // 8)
        secs = {False: [], True: []}
        acc = {False: [], True: []}
        for i, r in enumerate(ratios[:n]):
            order = (False, True) if i % 2 == 0 else (True, False)
            for setting in order:
                row = evaluators[setting].score(r, spec, seed=i)
                secs[setting].append(row["t_total_s"])
                acc[setting].append(row["accuracy"])
        out[name] = {"n": n, "s_contiguous": statistics.median(secs[False]), "s_channels_last": statistics.median(secs[True]),
                     "ratio": sum(secs[False]) / sum(secs[True]),
                     "accuracy_max_abs_diff": max(abs(a - b) for a, b in zip(acc[False], acc[True]))}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS)[:4], choices=list(MODELS))
    parser.add_argument("--keeps", nargs="+", type=float, default=[1.0, 0.5, 0.25])
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="JSON-lines file of records (appended)")
    parser.add_argument("--scores", nargs="+", default=None, metavar="CONFIG",
                        help="time the product's scores on these configs instead of bare steps")
    parser.add_argument("--candidates", type=int, default=48)
    args = parser.parse_args(argv)
    if args.scores:
        print("| config | score | candidates | s / candidate: NCHW | channels_last | ratio (sums) | max accuracy diff |")
        print("|---|---|---|---|---|---|---|")
        for config in args.scores:
            rec = measure_scores(config, args.candidates, args.threads[0])
            for name in ("adaptive_bn", "rerank"):
                if name in rec:
                    r = rec[name]
                    print(f"| {config} | {name} | {r['n']} | {r['s_contiguous']:.3f} | {r['s_channels_last']:.3f} | "
                          f"{r['ratio']:.2f}x | {r['accuracy_max_abs_diff']:.4f} |", flush=True)
            if args.out:
                with args.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"batch {args.batch}, {args.rounds} rounds x {args.steps} steps, medians")
    print("| model | keep | threads | train step ms: NCHW | channels_last | ratio | eval ms: NCHW | channels_last | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key in args.models:
        for keep in args.keeps:
            for threads in args.threads:
                rec = measure(key, keep, threads, batch=args.batch, rounds=args.rounds, steps=args.steps)
                tr, ev = rec["train_ms"], rec["eval_ms"]
                print(f"| {key} | {keep:g} | {threads} | {tr['contiguous']:.1f} | {tr['channels_last']:.1f} | "
                      f"{rec['train_ratio']:.2f}x | {ev['contiguous']:.1f} | {ev['channels_last']:.1f} | "
                      f"{rec['eval_ratio']:.2f}x |", flush=True)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
