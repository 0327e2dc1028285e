"""The GPU check (issue #12, item 5): what scoring costs on one CUDA GPU, and how evaluators share it.

On a machine with one CUDA GPU, in about 3 to 4 minutes (at most 5), for CIFAR-shaped VGG16 and
ResNet18 at full width (random weights and random 3x32x32 tensors with 10 random labels: enough for
timing, meaningless for accuracy), this script measures and prints

(a) **score time per candidate**: the real scoring path, :meth:`CandidateEvaluator.score` of a
    :class:`~rayprune.problem.PruningProblem` built with ``from_parts`` on the GPU, for the search's
    adaptive-BN score and the re-rank's short fine-tune (both from
    :func:`~rayprune.evaluation.score.score_specs` of the product's default ``search`` settings),
    with the rows' split into build / BN / fine-tune / evaluate;
(b) **evaluators sharing one GPU**: the same candidates through the real
    :class:`~rayprune.evaluation.pool.EvaluatorPool` with 1, 2 and 4 Ray actors of ``num_gpus=1/k``
    (1 CPU each), candidates/s and the ratio to one actor (the issue's target: 4 >= 2.5x one, on an
    idle GPU, for small models);
(c) **channels_last and mixed precision** on/off for the fine-tune step. rayprune's
    ``evaluation.channels_last`` (off by default) covers forward passes only and it has no switch for mixed precision, so this script measures them with its own loop on a pruned candidate (the same
    optimiser, loss and device-resident batches as :func:`rayprune.engine.fine_tune`), next to the
    library's ``fine_tune`` itself as the reference;
(d) **GPU utilisation** while scoring: ``pynvml`` if importable, else ``nvidia-smi`` sampled in a
    background thread; mean and max per phase ('n/a' without either).

Everything printed is also written under ``--out``: ``results.json`` (all of it, with the machine,
the command and the date) and one CSV per table. Run from anywhere::

    bash benchmarks/gpu_check.sh --out gpu-check            # on the GPU machine
    bash benchmarks/gpu_check.sh --dry-run --out /tmp/gc   # CPU, tiny sizes: checks the script only

``--dry-run`` runs the same steps on CPU with tiny models and data (evaluators 1 and 2, no GPU
share) so that the test suite can check the script end to end; its numbers are not GPU numbers and
it says so. Without CUDA and without ``--dry-run`` the script exits with status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

NO_CUDA_EXIT = 2
DRY_RUN_LINE = "DRY RUN on CPU — not GPU numbers (tiny models and data; checks that the script works)"
TIME_BUDGET_S = 300.0
POOL_TARGET = 2.5  # the target: 4 fractional evaluators >= 2.5x one
_STARTED = time.perf_counter()


def log(message: str) -> None:
    """A progress line, with the seconds since the script started."""
    print(f"[{time.perf_counter() - _STARTED:5.0f} s] {message}", flush=True)


@dataclass(frozen=True)
class Sizes:
    """How big each measurement is (GPU defaults, or tiny for ``--dry-run``)."""

    width_mult: float
    train: int
    val: int
    test: int
    score_candidates: dict[str, int]  # (a) per model and score, after one warm-up candidate
    pool_candidates: dict[str, int]  # (b) per model, score and evaluator count, after a warm-up per actor
    variant_iterations: int  # (c) timed fine-tune iterations per variant
    variant_warmup: int
    search: dict[str, Any] = field(default_factory=dict)  # config `search` overrides (empty: product defaults)


GPU_SIZES = Sizes(width_mult=1.0, train=4096, val=1000, test=256,
                  score_candidates={"adaptive_bn": 8, "finetune": 4},
                  pool_candidates={"adaptive_bn": 32, "finetune": 16},
                  variant_iterations=50, variant_warmup=10)
DRY_SIZES = Sizes(width_mult=0.25, train=256, val=128, test=64,
                  score_candidates={"adaptive_bn": 2, "finetune": 2},
                  pool_candidates={"adaptive_bn": 4, "finetune": 2},
                  variant_iterations=2, variant_warmup=1,
                  search={"adaptive_bn": {"batches": 2, "batch_size": 32}, "eval_samples": 64,
                          "finetune": {"iterations": 3, "batch_size": 32}})


# -- (d) GPU utilisation ------------------------------------------------------------------------------
class UtilSampler:
    """Samples the GPU's utilisation (%) in a background thread; :meth:`phase` marks what ran when.

    ``pynvml`` (package ``nvidia-ml-py``) when importable, else a long-running ``nvidia-smi -lms``;
    without either (or on CPU) every statistic is None, printed 'n/a'. The GPU sampled is the first
    of ``CUDA_VISIBLE_DEVICES`` when that is a number, else GPU 0.
    """

    def __init__(self, enabled: bool, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.samples: list[tuple[float, float]] = []
        self.phases: list[tuple[str, float, float]] = []
        self.source = "n/a"
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._proc: Optional[subprocess.Popen] = None
        if enabled:
            self._start()

    def _gpu_index(self) -> int:
        first = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip()
        return int(first) if first.isdigit() else 0

    def _start(self) -> None:
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import pynvml
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(self._gpu_index())
            read = lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)  # noqa: E731
            self.source = "pynvml"
            self._thread = threading.Thread(target=self._poll, args=(read,), daemon=True)
        except Exception:  # noqa: BLE001 - no pynvml, or no driver behind it: try nvidia-smi
            smi = shutil.which("nvidia-smi")
            if smi is None:
                return
            self._proc = subprocess.Popen(
                [smi, f"--id={self._gpu_index()}", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 f"--loop-ms={max(50, int(self.interval_s * 1000))}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.source = "nvidia-smi"
            self._thread = threading.Thread(target=self._read_smi, daemon=True)
        self._thread.start()

    def _poll(self, read: Callable[[], float]) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.samples.append((time.monotonic(), read()))

    def _read_smi(self) -> None:
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                self.samples.append((time.monotonic(), float(line.strip())))

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((name, t0, time.monotonic()))

    def stats(self, name: str) -> dict[str, Optional[float]]:
        """Mean and max utilisation (%) over the samples taken during the phases called ``name``."""
        values = [u for t, u in self.samples for n, t0, t1 in self.phases if n == name and t0 <= t <= t1]
        if not values:
            return {"gpu_util_mean": None, "gpu_util_max": None, "gpu_util_samples": 0}
        return {"gpu_util_mean": statistics.fmean(values), "gpu_util_max": max(values),
                "gpu_util_samples": len(values)}

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
        if self._thread is not None:
            self._thread.join(timeout=5)


# -- problem and candidates ---------------------------------------------------------------------------
def cifar_shaped_data(sizes: Sizes, seed: int = 0):
    """Random 3x32x32 images with 10 random labels, as a rayprune Dataset (CIFAR's crop+flip)."""
    import torch

    from rayprune.data import dataset_from_splits

    gen = torch.Generator().manual_seed(seed)

    def split(n: int):
        return torch.randn(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)

    return dataset_from_splits(split(sizes.train), split(sizes.val), split(sizes.test), name="cifar-shaped random",
                               num_classes=10, normalise=False, augment="crop_flip")


def make_problem(model_name: str, data, sizes: Sizes, device: str):
    """A PruningProblem (``from_parts``) for a randomly initialised zoo model on ``data``."""
    import torch

    from rayprune.config import parse_config
    from rayprune.models import build_model
    from rayprune.names import in_memory_name
    from rayprune.problem import PruningProblem

    cfg = parse_config({
        "name": f"gpu-check-{model_name}",
        "model": {"name": model_name, "kwargs": {"width_mult": sizes.width_mult}},
        "data": {"name": in_memory_name(data.name), "device": device},
        "budgets": {"params": 0.5},
        "search": dict(sizes.search),
    })
    torch.manual_seed(0)
    model = build_model(model_name, num_classes=data.num_classes, width_mult=sizes.width_mult)
    return PruningProblem.from_parts(cfg, data, model, {"source": "random weights (gpu_check)"},
                                     device=torch.device(device))


def distinct_candidates(problem, n: int, rng, taken: set[str]) -> list[list[float]]:
    """``n`` random keep-ratio vectors (each ratio in [0.25, 0.9]) whose rounded channel counts differ
    from each other and from ``taken``, so that no score is a cache hit."""
    from rayprune.pruning.rounding import candidate_id

    out: list[list[float]] = []
    for _ in range(100 * n):
        if len(out) == n:
            break
        ratios = [float(r) for r in rng.uniform(0.25, 0.9, len(problem.space.groups))]
        cid = candidate_id(problem.space.keep_counts(ratios))
        if cid not in taken:
            taken.add(cid)
            out.append(ratios)
    if len(out) < n:
        raise RuntimeError(f"found only {len(out)} distinct candidates of {n}; the model is too narrow")
    return out


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


# -- (a) score time per candidate ---------------------------------------------------------------------
def score_times(problem, model_name: str, specs: dict, sizes: Sizes, rng, taken: set[str], device: str,
                sampler: UtilSampler) -> list[dict[str, Any]]:
    """Per-candidate wall time of ``CandidateEvaluator.score`` in this process, per score kind."""
    from rayprune.evaluation.candidate import CandidateEvaluator

    evaluator = CandidateEvaluator(problem)
    out = []
    for kind, spec in specs.items():
        n = sizes.score_candidates[kind]
        warm, *timed = distinct_candidates(problem, n + 1, rng, taken)
        evaluator.score(warm, spec)  # first call: kernels, allocator, autotuning
        walls, rows = [], []
        phase = f"score {model_name} {kind}"
        with sampler.phase(phase):
            for i, ratios in enumerate(timed):
                _sync(device)
                t0 = time.perf_counter()
                rows.append(evaluator.score(ratios, spec, seed=i))
                _sync(device)
                walls.append(time.perf_counter() - t0)
        _check_rows(rows, phase)
        mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
        out.append({"model": model_name, "score": kind, "score_key": spec.key, "device": device, "candidates": n,
                    "s_per_candidate": statistics.fmean(walls), "s_median": statistics.median(walls),
                    "candidates_per_s": 1.0 / statistics.fmean(walls), "build_s": mean("t_build_s"),
                    "bn_s": mean("t_bn_s"), "finetune_s": mean("t_finetune_s"), "eval_s": mean("t_eval_s"),
                    **sampler.stats(phase)})
    return out


def _check_rows(rows: Sequence[dict], what: str) -> None:
    bad = [r for r in rows if r.get("status") != "ok" or r.get("cached")]
    if bad:
        raise RuntimeError(f"{what}: {len(bad)} of {len(rows)} rows failed or were cache hits; first: "
                           f"{bad[0].get('status')} {bad[0].get('error')}")


# -- (b) evaluators sharing one GPU -------------------------------------------------------------------
def pool_throughput(problem, model_name: str, specs: dict, sizes: Sizes, evaluators: Sequence[int],
                    cpus: float, gpu: bool, rng, taken: set[str], sampler: UtilSampler) -> list[dict[str, Any]]:
    """Candidates/s of the real EvaluatorPool with k actors of ``num_gpus=1/k`` (0 on CPU), same candidates for every k."""
    from rayprune.evaluation.pool import EvaluatorPool

    timed = {kind: distinct_candidates(problem, sizes.pool_candidates[kind], rng, taken) for kind in specs}
    out = []
    for k in evaluators:
        share = 1.0 / k if gpu else 0.0
        pool = EvaluatorPool(problem, size=k, num_cpus=cpus, num_gpus=share, name=f"gpu-check-{model_name}-k{k}")
        try:
            pool.wait_ready(timeout=600)
            log(f"{model_name}: {k} evaluator(s) ready")
            for kind, spec in specs.items():
                warm = distinct_candidates(problem, k, rng, taken)
                pool.score_batch(warm, spec, chunk_size=1)  # one per actor: first-call costs off the clock
                phase = f"pool {model_name} k={k} {kind}"
                with sampler.phase(phase):
                    t0 = time.perf_counter()
                    rows = pool.score_batch(timed[kind], spec)
                    wall = time.perf_counter() - t0
                errors = [r for r in rows if r.get("status") != "ok"]
                if errors:
                    print(f"  {phase}: {len(errors)} error row(s); first: {errors[0].get('error')}", flush=True)
                scoring = sum(r.get("t_total_s") or 0.0 for r in rows if not r.get("cached"))
                out.append({"model": model_name, "score": kind, "evaluators": k, "gpu_per_evaluator": share,
                            "cpus_per_evaluator": cpus, "candidates": len(rows), "errors": len(errors),
                            "cache_hits": sum(bool(r.get("cached")) for r in rows), "wall_s": wall,
                            "candidates_per_s": len(rows) / wall, "busy": scoring / (k * wall),
                            **sampler.stats(phase)})
        finally:
            pool.shutdown()
            del pool  # drops its copy of the problem in the object store before the next pool puts its own
    ones = {(r["model"], r["score"]): r["candidates_per_s"] for r in out if r["evaluators"] == min(evaluators)}
    for r in out:
        r["vs_fewest"] = r["candidates_per_s"] / ones[(r["model"], r["score"])]
    return out


# -- (c) channels_last and mixed precision ------------------------------------------------------------
def finetune_variants(problem, model_name: str, sizes: Sizes, device: str, sampler: UtilSampler) -> list[dict[str, Any]]:
    """ms per fine-tune iteration of one pruned candidate: the library's ``fine_tune`` (fp32) as the
    reference, then this script's own loop with channels_last and autocast on and off."""
    import torch
    import torch.nn.functional as F

    from rayprune.data import DeviceBatches, make_augment
    from rayprune.engine import FineTuneConfig, fine_tune

    data = problem.data
    ft = problem.config.search.finetune
    pruned = problem.space.build([0.5] * len(problem.space.groups))
    iters, warmup = sizes.variant_iterations, sizes.variant_warmup
    amp_dtype = torch.bfloat16 if (not device.startswith("cuda") or torch.cuda.is_bf16_supported()) else torch.float16
    amp_name = "bf16" if amp_dtype is torch.bfloat16 else "fp16"
    rows = []

    def record(variant: str, seconds: float, note: str) -> None:
        rows.append({"model": model_name, "variant": variant, "iterations": iters, "batch_size": ft.batch_size,
                     "ms_per_iteration": 1000.0 * seconds / iters, "note": note})

    reference = FineTuneConfig(iterations=iters, batch_size=ft.batch_size, lr=ft.lr, momentum=ft.momentum,
                               weight_decay=ft.weight_decay, optimizer=ft.optimizer, schedule=ft.schedule)
    fine_tune(copy.deepcopy(pruned), data, FineTuneConfig(iterations=warmup, batch_size=ft.batch_size))
    _sync(device)
    t0 = time.perf_counter()
    fine_tune(copy.deepcopy(pruned), data, reference)
    _sync(device)
    record("rayprune fine_tune (fp32)", time.perf_counter() - t0, "library reference")

    for channels_last in (False, True):
        for amp in (False, True):
            model = copy.deepcopy(pruned).train()
            if channels_last:
                model = model.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(model.parameters(), lr=ft.lr, momentum=ft.momentum, weight_decay=ft.weight_decay)
            scaler = torch.amp.GradScaler("cuda") if amp and amp_dtype is torch.float16 else None
            batches = DeviceBatches(data.x_train, data.y_train, batch_size=min(ft.batch_size, len(data.x_train)),
                                    shuffle=True, augment=make_augment(data.augment, image_size=data.input_shape[-1]),
                                    drop_last=True, seed=0).infinite()
            variant = f"loop {'channels_last' if channels_last else 'contiguous'} {'amp ' + amp_name if amp else 'fp32'}"
            with sampler.phase(f"finetune {model_name} {variant}"):
                for step in range(warmup + iters):
                    if step == warmup:
                        _sync(device)
                        t0 = time.perf_counter()
                    xb, yb = next(batches)
                    if channels_last:
                        xb = xb.contiguous(memory_format=torch.channels_last)
                    with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp):
                        loss = F.cross_entropy(model(xb), yb)
                    opt.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.step(opt)
                        scaler.update()
                    else:
                        loss.backward()
                        opt.step()
                _sync(device)
                seconds = time.perf_counter() - t0
            if not math.isfinite(last := float(loss.detach())):
                raise FloatingPointError(f"{variant}: loss is {last}")
            record(variant, seconds, "script loop (no rayprune switch)")
    base = next(r["ms_per_iteration"] for r in rows if r["variant"] == "loop contiguous fp32")
    for r in rows:
        r["speedup_vs_loop_fp32"] = base / r["ms_per_iteration"]
    return rows


# -- output -------------------------------------------------------------------------------------------
def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _util(row: dict) -> str:
    mean, top = row.get("gpu_util_mean"), row.get("gpu_util_max")
    return "n/a" if mean is None else f"{mean:.0f} / {top:.0f} %"


def render(results: dict[str, Any]) -> str:
    """The tables as printed (same structure in a dry run and on the GPU)."""
    from rayprune.text_table import format_table

    meta = results["meta"]
    lines = [f"rayprune GPU check — {meta['date']}; device: {meta['device_name']}; torch {meta['torch']} "
             f"(CUDA {meta['cuda'] or 'none'}); {meta['cpu_count']} CPU cores; Ray {meta['ray']}; "
             f"MPS {'on' if meta.get('mps') else 'off'}"]
    if meta["dry_run"]:
        lines.append(DRY_RUN_LINE)
    lines.append(f"models {', '.join(meta['models'])} at width_mult {meta['width_mult']}, CIFAR-shaped random data "
                 f"({meta['train']}/{meta['val']}/{meta['test']} samples); scores: "
                 + "; ".join(f"{k} = {v}" for k, v in meta["score_keys"].items()))
    lines += ["", "(a) score time per candidate (CandidateEvaluator.score in one process, after one warm-up)"]
    lines.append(format_table(
        ["model", "score", "n", "s/candidate", "median s", "build s", "bn s", "finetune s", "eval s", "GPU util"],
        [[r["model"], r["score"], r["candidates"], _fmt(r["s_per_candidate"]), _fmt(r["s_median"]),
          _fmt(r["build_s"]), _fmt(r["bn_s"]), _fmt(r["finetune_s"]), _fmt(r["eval_s"]), _util(r)]
         for r in results["score_times"]]))
    share = "num_gpus=1/k each" if not meta["dry_run"] else "num_gpus=0 (CPU)"
    lines += ["", f"(b) evaluators sharing one GPU (EvaluatorPool, {share}, {meta['cpus_per_evaluator']:g} CPU each)"]
    lines.append(format_table(
        ["model", "score", "evaluators", "GPU share", "n", "wall s", "candidates/s", "vs 1", "busy", "GPU util",
         "errors"],
        [[r["model"], r["score"], r["evaluators"], _fmt(r["gpu_per_evaluator"], ".2f"), r["candidates"],
          _fmt(r["wall_s"], ".2f"), _fmt(r["candidates_per_s"], ".2f"), f"{r['vs_fewest']:.2f}x",
          f"{100 * r['busy']:.0f} %", _util(r), r["errors"]] for r in results["pool"]]))
    lines += ["", "(c) fine-tune step: channels_last and mixed precision (rayprune's evaluation.channels_last covers forward passes only, and there is no switch for mixed precision; "
                  "measured by this script's own loop on a candidate at keep 0.5, the library's fine_tune as reference)"]
    lines.append(format_table(
        ["model", "variant", "iterations", "batch", "ms/iteration", "vs loop fp32"],
        [[r["model"], r["variant"], r["iterations"], r["batch_size"], _fmt(r["ms_per_iteration"], ".2f"),
          f"{r['speedup_vs_loop_fp32']:.2f}x"] for r in results["finetune_variants"]]))
    lines += ["", f"(d) GPU utilisation while scoring (source: {meta['gpu_util_source']}; mean / max over the phase)"]
    lines.append(format_table(["phase", "seconds", "samples", "GPU util"],
                              [[r["phase"], _fmt(r["seconds"], ".1f"), r["gpu_util_samples"], _util(r)]
                               for r in results["gpu_util"]]))
    lines += ["", "target: 4 evaluators sharing the GPU >= 2.5x one (issue #12)"]
    for t in results["targets"]:
        lines.append(f"  {t['model']} {t['score']}: {t['evaluators']} vs 1 = {t['ratio']:.2f}x -> {t['verdict']}")
    lines.append(f"total {meta['wall_s']:.0f} s (budget on a GPU: {TIME_BUDGET_S:.0f} s)"
                 + ("" if meta["dry_run"] or meta["wall_s"] <= TIME_BUDGET_S else " — OVER BUDGET"))
    return "\n".join(lines)


def targets(pool_rows: Sequence[dict], dry_run: bool) -> list[dict[str, Any]]:
    """The issue's scaling target, judged on the largest evaluator count against one."""
    out = []
    counts = sorted({r["evaluators"] for r in pool_rows})
    if not counts or counts[0] != 1 or counts[-1] == 1:
        return out
    for r in pool_rows:
        if r["evaluators"] == counts[-1]:
            if dry_run:
                verdict = "not judged (dry run on CPU)"
            elif counts[-1] != 4:
                verdict = "not judged (the target is for 4 evaluators)"
            else:
                verdict = "met" if r["vs_fewest"] >= POOL_TARGET else "missed"
            out.append({"model": r["model"], "score": r["score"], "evaluators": counts[-1], "ratio": r["vs_fewest"],
                        "verdict": verdict})
    return out


def write_outputs(out: Path, results: dict[str, Any]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "results.json"]
    written[0].write_text(json.dumps(results, indent=2, default=str) + "\n")
    for name in ("score_times", "pool", "finetune_variants", "gpu_util", "targets"):
        rows = results[name]
        path = out / f"{name}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["empty"])
            writer.writeheader()
            writer.writerows(rows)
        written.append(path)
    return written


def start_ray(num_cpus: int, num_gpus: Optional[int]) -> None:
    """A fresh local Ray (never a cluster named by ``RAY_ADDRESS``: the check is about this machine's GPU).

    Tried twice, as :func:`rayprune.ray_session.connect` does: on a loaded machine the raylet can
    miss its start-up deadline once.
    """
    import ray

    for attempt in (1, 2):
        try:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     object_store_memory=200 * 1024**2, log_to_driver=False)
            return
        except Exception as exc:
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
            log(f"Ray did not start in time ({exc}); trying once more")
            ray.shutdown()


# -- main ---------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="gpu-check", help="folder for results.json and the CSVs (default: gpu-check)")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes: checks the script, not GPU numbers")
    ap.add_argument("--models", nargs="+", default=["vgg16", "resnet18"])
    ap.add_argument("--evaluators", nargs="+", type=int, default=None,
                    help="evaluator counts sharing the GPU (default 1 2 4; dry run 1 2)")
    ap.add_argument("--cpus-per-evaluator", type=float, default=1.0)
    ap.add_argument("--width-mult", type=float, default=None, help="model width (default 1.0; dry run 0.25)")
    args = ap.parse_args(argv)
    if args.evaluators is None:
        args.evaluators = [1, 2] if args.dry_run else [1, 2, 4]
    if sorted(set(args.evaluators)) != args.evaluators or args.evaluators[0] != 1:
        ap.error(f"--evaluators must be increasing counts starting at 1; got {args.evaluators}")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False). Run it on a machine with a CUDA "
              "GPU and a CUDA build of torch, or pass --dry-run to check the script on CPU (not GPU numbers).",
              file=sys.stderr)
        return NO_CUDA_EXIT
    sizes = DRY_SIZES if args.dry_run else GPU_SIZES
    if args.width_mult is not None:
        sizes = Sizes(**{**asdict(sizes), "width_mult": args.width_mult})
    device = "cpu" if args.dry_run else "cuda"
    torch.set_num_threads(max(1, int(args.cpus_per_evaluator)))  # (a) and (c) on the CPU share of one evaluator

    import numpy as np
    import ray

    from rayprune.evaluation.gpu_sharing import mps_running
    from rayprune.evaluation.score import score_specs

    if args.dry_run:
        print(DRY_RUN_LINE, flush=True)
    ray_cpus = math.ceil(max(args.evaluators) * args.cpus_per_evaluator)
    start_ray(num_cpus=ray_cpus, num_gpus=0 if args.dry_run else None)
    log(f"Ray started: {ray.cluster_resources()}")
    sampler = UtilSampler(enabled=not args.dry_run)
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {"score_times": [], "pool": [], "finetune_variants": []}
    score_keys: dict[str, str] = {}
    try:
        data = cifar_shaped_data(sizes)
        for model_name in args.models:
            log(f"{model_name}: building the problem on {device}")
            problem = make_problem(model_name, data, sizes, device)
            cheap, rerank = score_specs(problem.config)
            specs = {"adaptive_bn": cheap, "finetune": rerank}
            score_keys.update({k: s.key for k, s in specs.items()})
            taken: set[str] = set()
            log(f"{model_name}: (a) score time per candidate")
            results["score_times"] += score_times(problem, model_name, specs, sizes, rng, taken, device, sampler)
            log(f"{model_name}: (b) pools of {args.evaluators} evaluator(s)")
            results["pool"] += pool_throughput(problem, model_name, specs, sizes, args.evaluators,
                                               args.cpus_per_evaluator, not args.dry_run, rng, taken, sampler)
            log(f"{model_name}: (c) channels_last / mixed precision")
            results["finetune_variants"] += finetune_variants(problem, model_name, sizes, device, sampler)
            del problem
            if device == "cuda":
                torch.cuda.empty_cache()
    finally:
        sampler.close()
        ray.shutdown()
    results["gpu_util"] = [{"phase": name, "seconds": t1 - t0, **sampler.stats(name)}
                           for name, t0, t1 in sampler.phases]
    results["targets"] = targets(results["pool"], args.dry_run)
    results["meta"] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join([sys.argv[0], *sys.argv[1:]]),
        "dry_run": args.dry_run, "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
        "torch": torch.__version__, "cuda": torch.version.cuda, "ray": ray.__version__, "python": platform.python_version(),
        "host": platform.node(), "cpu_count": os.cpu_count(), "ray_cpus": ray_cpus, "models": list(args.models),
        "width_mult": sizes.width_mult, "train": sizes.train, "val": sizes.val, "test": sizes.test,
        "evaluators": list(args.evaluators), "cpus_per_evaluator": args.cpus_per_evaluator, "score_keys": score_keys,
        "gpu_util_source": sampler.source, "mps": mps_running(), "sizes": asdict(sizes), "wall_s": time.perf_counter() - _STARTED,
    }
    print("\n" + render(results), flush=True)
    written = write_outputs(Path(args.out), results)
    print(f"wrote {', '.join(str(p) for p in written)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
