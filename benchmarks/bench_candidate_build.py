"""Benchmark: building a pruned candidate vs evaluating it, on CPU.

DESIGN.md asks that building a pruned candidate be small next to evaluating it (target: build
<= 10 % of a 1,000-image evaluation). For each model this script measures

* the one-off cost of ``PruningSpace(model, example, importance="l2", round_to=8)``
  (tracing with Torch-Pruning's DepGraph + ranking every group);
* ``space.build(ratios)`` (fast path: copy + replay a plan, no tracing) and
  ``space.build_retrace(ratios)`` (plain Torch-Pruning: re-trace a copy, prune group by group)
  on ``--candidates`` random keep-ratio vectors, each component uniform in [0.2, 1] (seeded);
* ``rayprune.engine.evaluate`` of each fast-built candidate on 1,000 random 3x32x32 images
  (the accuracy is meaningless; only the forward cost matters).

Measurements are interleaved so that machine noise hits every path alike: in each round, every
candidate is built by both paths in alternating order (fast first on even (round + candidate),
retrace first on odd), and evaluations are spread over the rounds. The speed-up is the median of
the paired per-(round, candidate) ratios retrace/fast, which cancels slow drifts of the machine.

Run from the repository root::

    python benchmarks/bench_candidate_build.py         # VGG16 + ResNet18, ~3-4 min on 2 shared cores
    python benchmarks/bench_candidate_build.py --models resnet18 --repeats 3 --out raw.json --profile

It prints two Markdown tables ready for BENCHMARKS.md: wall clock, and CPU time of this process
(which other processes on a shared machine disturb much less). ``--profile`` adds where the time
of ``space.build`` goes (cProfile).
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import gc
import json
import os
import platform
import pstats
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch_pruning as tp

from rayprune.engine import evaluate
from rayprune.models import build_model
from rayprune.pruning import PruningSpace

NUM_CLASSES = 10
INPUT_SHAPE = (3, 32, 32)
NUM_VAL_IMAGES = 1000
KEEP_RATIO_RANGE = (0.2, 1.0)
IMPORTANCE = "l2"
ROUND_TO = 8

# Kinds of raw timing rows (one name each, shared by the JSON/CSV output and the summary).
SPACE, BUILD_FAST, BUILD_RETRACE, EVALUATE = "space", "build_fast", "build_retrace", "evaluate"


@dataclass(frozen=True)
class Options:
    """Command-line options of the benchmark."""

    models: tuple[str, ...] = ("vgg16", "resnet18")
    candidates: int = 3  # random keep-ratio vectors per model
    repeats: int = 5  # builds of each candidate by each path
    eval_repeats: int = 1  # evaluations of each candidate (a ResNet18 evaluation is ~10-20 s here)
    space_repeats: int = 2  # constructions of the PruningSpace
    threads: int = 2
    batch_size: int = 250
    seed: int = 0
    out: Path | None = None
    profile: bool = False  # also cProfile 10 fast builds per model and print where the time goes


@dataclass(frozen=True)
class Timing:
    """One raw measurement."""

    model: str
    kind: str  # SPACE | BUILD_FAST | BUILD_RETRACE | EVALUATE
    candidate: int  # -1 for SPACE
    round: int
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process, all threads (less sensitive to other processes)


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(Options.models), help="zoo model names")
    parser.add_argument("--candidates", type=int, default=Options.candidates, help="random candidates per model")
    parser.add_argument("--repeats", type=int, default=Options.repeats, help="builds of each candidate per path")
    parser.add_argument("--eval-repeats", type=int, default=Options.eval_repeats, help="evaluations of each candidate")
    parser.add_argument("--space-repeats", type=int, default=Options.space_repeats, help="PruningSpace constructions")
    parser.add_argument("--threads", type=int, default=Options.threads, help="torch.set_num_threads")
    parser.add_argument("--batch-size", type=int, default=Options.batch_size, help="evaluate() batch size")
    parser.add_argument("--seed", type=int, default=Options.seed, help="seed of weights, ratios and inputs")
    parser.add_argument("--out", type=Path, default=None, help="write raw timings to this .json or .csv file")
    parser.add_argument("--profile", action="store_true", help="cProfile 10 fast builds per model, print a breakdown")
    args = parser.parse_args(argv)
    for name in ("candidates", "repeats", "eval_repeats", "space_repeats", "threads", "batch_size"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}.")
    if args.eval_repeats > args.repeats:
        parser.error(f"--eval-repeats must be <= --repeats ({args.repeats}); got {args.eval_repeats}.")
    if args.out is not None and args.out.suffix not in (".json", ".csv"):
        parser.error(f"--out must end in .json or .csv; got {str(args.out)!r}.")
    return Options(**{**vars(args), "models": tuple(args.models)})


def timed(fn: Callable[[], object]) -> tuple[tuple[float, float], object]:
    """((wall s, CPU s), result) of ``fn()``, with garbage collected before and paused during it."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        return (time.perf_counter() - wall, time.process_time() - cpu), result
    finally:
        gc.enable()


def random_keep_ratios(num_groups: int, count: int, rng: np.random.Generator) -> list[list[float]]:
    """``count`` keep-ratio vectors, each component uniform in KEEP_RATIO_RANGE."""
    low, high = KEEP_RATIO_RANGE
    return [rng.uniform(low, high, num_groups).tolist() for _ in range(count)]


def eval_rounds(candidate: int, candidates: int, repeats: int, eval_repeats: int) -> set[int]:
    """Rounds in which ``candidate`` is evaluated: spread over the run, staggered across candidates.

    Example: 3 candidates, 5 rounds, 1 evaluation each -> rounds {0}, {1}, {3}.
    """
    offset = candidate * repeats // candidates
    return {(offset + e * repeats // eval_repeats) % repeats for e in range(eval_repeats)}


def num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench_model(name: str, opts: Options) -> tuple[list[Timing], dict]:
    """All raw timings of one model, plus facts about it (groups, parameter counts)."""
    torch.manual_seed(opts.seed)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=INPUT_SHAPE[0], input_size=INPUT_SHAPE[1])
    example = torch.randn(1, *INPUT_SHAPE)
    x = torch.randn(NUM_VAL_IMAGES, *INPUT_SHAPE)
    y = torch.randint(0, NUM_CLASSES, (NUM_VAL_IMAGES,))
    timings: list[Timing] = []

    def make_space() -> PruningSpace:
        return PruningSpace(model, example, importance=IMPORTANCE, round_to=ROUND_TO)

    space = None
    for r in range(opts.space_repeats):
        del space
        cost, space = timed(make_space)
        timings.append(Timing(name, SPACE, -1, r, *cost))

    ratios = random_keep_ratios(space.num_groups, opts.candidates, np.random.default_rng(opts.seed))
    # Warm-up (not recorded): first calls pay for lazy imports, allocator growth, oneDNN kernels.
    space.build(ratios[0])
    space.build_retrace(ratios[0])
    evaluate(space.build(ratios[0]), x[: opts.batch_size], y[: opts.batch_size], batch_size=opts.batch_size)

    kept = []
    for r in range(opts.repeats):
        for c, keep in enumerate(ratios):
            paths = [(BUILD_FAST, space.build), (BUILD_RETRACE, space.build_retrace)]
            built = {}
            for kind, build in paths if (r + c) % 2 == 0 else paths[::-1]:
                cost, built[kind] = timed(lambda build=build: build(keep))
                timings.append(Timing(name, kind, c, r, *cost))
            if r == 0:
                fast, ref = num_params(built[BUILD_FAST]), num_params(built[BUILD_RETRACE])
                if fast != ref:
                    raise RuntimeError(f"{name} candidate {c}: fast path has {fast} params, retrace {ref}.")
                kept.append(fast)
            if r in eval_rounds(c, opts.candidates, opts.repeats, opts.eval_repeats):
                candidate = built[BUILD_FAST]
                cost, _ = timed(lambda: evaluate(candidate, x, y, batch_size=opts.batch_size))
                timings.append(Timing(name, EVALUATE, c, r, *cost))
            del built
        print(f"  {name}: round {r + 1}/{opts.repeats} done", file=sys.stderr, flush=True)
    facts = dict(groups=space.num_groups, params=num_params(model), kept_params=kept)
    return timings, facts


def profile_fast_build(name: str, opts: Options, builds: int = 10) -> list[tuple[str, float]]:
    """Share of ``space.build`` time (under cProfile) per step, largest first.

    ``build = deepcopy(base) + plan(ratios) + apply_plan``; the copy is split into tensor copies
    (``Tensor.clone``) and the Python of ``copy.deepcopy``, ``apply_plan`` into
    ``torch.index_select`` (Torch-Pruning's pruners slicing weights) and the rest of it (Python
    around it: index bookkeeping, new ``nn.Parameter``\ s, ``setattr``).
    """
    torch.manual_seed(opts.seed)
    model = build_model(name, num_classes=NUM_CLASSES, in_channels=INPUT_SHAPE[0], input_size=INPUT_SHAPE[1])
    space = PruningSpace(model, torch.randn(1, *INPUT_SHAPE), importance=IMPORTANCE, round_to=ROUND_TO)
    ratios = random_keep_ratios(space.num_groups, builds, np.random.default_rng(opts.seed))
    space.build(ratios[0])
    profiler = cProfile.Profile()
    profiler.enable()
    for keep in ratios:
        space.build(keep)
    profiler.disable()

    def seconds(path_end: str, function: str, cumulative: bool = True) -> float:
        return sum(
            ct if cumulative else tt
            for (filename, _, fn), (_, _, tt, ct, _) in pstats.Stats(profiler).stats.items()
            if fn == function and filename.replace("\\", "/").endswith(path_end)
        )

    total = seconds("rayprune/pruning/space.py", "build")
    clone = seconds("~", "<method 'clone' of 'torch._C.TensorBase' objects>", cumulative=False)
    index_select = seconds("~", "<built-in method torch.index_select>", cumulative=False)
    deepcopy = seconds("/copy.py", "deepcopy")
    apply = seconds("rayprune/pruning/plan.py", "apply_plan")
    plan = seconds("rayprune/pruning/space.py", "plan")
    steps = {
        "deepcopy: Tensor.clone": clone,
        "deepcopy: Python": deepcopy - clone,
        "apply_plan: torch.index_select": index_select,
        "apply_plan: Python": apply - index_select,
        "plan(ratios)": plan,
        "other": total - deepcopy - apply - plan,
    }
    return sorted(((k, v / total) for k, v in steps.items()), key=lambda kv: -kv[1])


# -- summary ---------------------------------------------------------------------------------------
def median_iqr(values: Sequence[float]) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return float(q50), float(q75 - q25)


def _select(timings: Sequence[Timing], kind: str, candidate: int | None = None, field: str = "seconds") -> list[float]:
    return [getattr(t, field) for t in timings if t.kind == kind and (candidate is None or t.candidate == candidate)]


def build_over_eval(timings: Sequence[Timing], kind: str, candidates: int, field: str = "seconds") -> np.ndarray:
    """Per candidate: median build time of path ``kind`` / median evaluation time."""
    return np.asarray([
        float(np.median(_select(timings, kind, c, field))) / float(np.median(_select(timings, EVALUATE, c, field)))
        for c in range(candidates)
    ])


def summarize(name: str, timings: Sequence[Timing], facts: dict, candidates: int, clock: str) -> dict:
    """Medians, IQRs and the two ratios of one model, on one clock (``"seconds"`` or ``"cpu_seconds"``).

    speed-up   = median over (round, candidate) of  t_retrace / t_fast  (paired, same round)
    build/eval = median over candidates of  median_r(t_build) / median_r(t_eval)  (and the max)
    """
    fast = {(t.round, t.candidate): getattr(t, clock) for t in timings if t.kind == BUILD_FAST}
    retrace = {(t.round, t.candidate): getattr(t, clock) for t in timings if t.kind == BUILD_RETRACE}
    speedups = [retrace[k] / fast[k] for k in fast]
    fast_ratio = build_over_eval(timings, BUILD_FAST, candidates, clock)
    retrace_ratio = build_over_eval(timings, BUILD_RETRACE, candidates, clock)
    return dict(
        model=name,
        groups=facts["groups"],
        params_m=facts["params"] / 1e6,
        space=median_iqr(_select(timings, SPACE, field=clock)),
        fast=median_iqr(_select(timings, BUILD_FAST, field=clock)),
        retrace=median_iqr(_select(timings, BUILD_RETRACE, field=clock)),
        evaluate=median_iqr(_select(timings, EVALUATE, field=clock)),
        speedup=median_iqr(speedups),
        fast_over_eval=(float(np.median(fast_ratio)), float(np.max(fast_ratio))),
        retrace_over_eval=(float(np.median(retrace_ratio)), float(np.max(retrace_ratio))),
    )


def markdown_table(rows: Sequence[dict]) -> str:
    """One row per model; time cells are ``median (IQR)``, ratio cells ``median / max over candidates``."""

    def ms(pair):
        return f"{1e3 * pair[0]:.0f} ({1e3 * pair[1]:.0f})"

    def s(pair):
        return f"{pair[0]:.2f} ({pair[1]:.2f})"

    def pct(pair):
        return f"{100 * pair[0]:.1f} % / {100 * pair[1]:.1f} %"

    lines = [
        "| model | groups | PruningSpace() s | build fast ms | build retrace ms | speed-up | "
        "evaluate 1k s | fast build / eval (median / max) | retrace build / eval (median / max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['params_m']:.1f} M params) | {r['groups']} | {s(r['space'])} | {ms(r['fast'])} | "
            f"{ms(r['retrace'])} | {r['speedup'][0]:.1f}x ({r['speedup'][1]:.1f}) | {s(r['evaluate'])} | "
            f"{pct(r['fast_over_eval'])} | {pct(r['retrace_over_eval'])} |"
        )
    return "\n".join(lines)


def write_raw(path: Path, timings: Sequence[Timing], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps({"meta": meta, "timings": [asdict(t) for t in timings]}, indent=1))
        return
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(Timing.__dataclass_fields__))
        writer.writeheader()
        writer.writerows(asdict(t) for t in timings)


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_options(argv)
    torch.set_num_threads(opts.threads)
    meta = dict(
        options={**asdict(opts), "out": str(opts.out) if opts.out else None},
        python=platform.python_version(),
        torch=torch.__version__,
        torch_pruning=tp.__version__,
        threads=torch.get_num_threads(),
        machine=platform.processor() or platform.machine(),
    )
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    timings, facts = [], {}
    for name in opts.models:
        model_timings, facts[name] = bench_model(name, opts)
        timings += model_timings
    meta["wall_seconds"] = time.perf_counter() - started
    meta["loadavg_1min"] = (load_before, os.getloadavg()[0])
    if opts.out is not None:
        write_raw(opts.out, timings, meta)

    print(
        f"CPU, torch.set_num_threads({meta['threads']}), python {meta['python']}, torch {meta['torch']}, "
        f"torch-pruning {meta['torch_pruning']}; importance={IMPORTANCE}, round_to={ROUND_TO}; "
        f"{opts.candidates} candidates (keep ratios ~ U{KEEP_RATIO_RANGE}, seed {opts.seed}) x "
        f"{opts.repeats} builds per path, {opts.eval_repeats} evaluation(s) of {NUM_VAL_IMAGES} images "
        f"each (batch {opts.batch_size}); PruningSpace built {opts.space_repeats}x. Run took "
        f"{meta['wall_seconds']:.0f} s; 1-min load average {load_before:.1f} before, "
        f"{meta['loadavg_1min'][1]:.1f} after (on {os.cpu_count()} CPUs)."
    )
    for clock, title in [("seconds", "Wall clock"), ("cpu_seconds", "CPU time of this process (all threads)")]:
        rows = [summarize(n, [t for t in timings if t.model == n], facts[n], opts.candidates, clock) for n in opts.models]
        print(f"\n{title}; cells: median (IQR); ratios: median / max over candidates.\n")
        print(markdown_table(rows))
    print()
    for name in opts.models:
        kept = ", ".join(f"{100 * k / facts[name]['params']:.0f} %" for k in facts[name]["kept_params"])
        print(f"- {name}: the candidates keep {kept} of the parameters.")
    if opts.profile:
        for name in opts.models:
            shares = ", ".join(f"{k} {100 * v:.0f} %" for k, v in profile_fast_build(name, opts))
            print(f"- {name}, where space.build spends its time (cProfile, 10 builds): {shares}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
