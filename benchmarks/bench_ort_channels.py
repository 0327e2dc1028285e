"""ONNX Runtime and channel counts: does a layer's latency follow its channels, or their alignment?

A block of an inverted residual (1x1 conv, depthwise 3x3, 1x1 conv, ReLUs) at 14x14, batch 1, timed at channel counts
on both sides of multiples of 8, in ONNX Runtime (CPU execution provider) and in PyTorch eager, one thread each, side by
side in one run: the lowest of ``--rounds`` means of ``--calls`` calls. A pruner that keeps any count (``pruning.round_to:
1``) can make a model slower under ONNX Runtime if unaligned counts cost more than the channels they save.

Run from the repository root::

    python benchmarks/bench_ort_channels.py --out benchmarks/results/ort_channels.json
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn


def block(channels: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(channels, channels, 1), nn.ReLU(),
                         nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.ReLU(),
                         nn.Conv2d(channels, channels, 1)).eval()


def lowest_mean(call, *, calls: int, rounds: int) -> float:
    """The lowest of ``rounds`` means of ``calls`` calls, in microseconds (after ``calls`` warm-up calls)."""
    for _ in range(calls):
        call()
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return min(means)


def time_counts(counts: list[int], *, size: int, calls: int, rounds: int) -> list[dict]:
    import onnxruntime as ort

    torch.set_num_threads(1)
    rows = []
    for channels in counts:
        model, x = block(channels), torch.randn(1, channels, size, size)
        buffer = io.BytesIO()
        torch.onnx.export(model, (x,), buffer, dynamo=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.numpy()}
        with torch.no_grad():
            eager = lowest_mean(lambda: model(x), calls=calls, rounds=rounds)
        onnx = lowest_mean(lambda: session.run(None, feed), calls=calls, rounds=rounds)
        rows.append({"channels": channels, "aligned_8": channels % 8 == 0, "onnxruntime_us": onnx, "torch_us": eager})
        print(f"{channels:4d} channels: onnxruntime {onnx:7.1f} us, torch {eager:7.1f} us", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[40, 46, 47, 48, 49, 55, 56, 57, 63, 64, 65, 72])
    ap.add_argument("--size", type=int, default=14)
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    import onnxruntime as ort

    rows = time_counts(args.counts, size=args.size, calls=args.calls, rounds=args.rounds)
    print("\n| channels | ONNX Runtime µs | per channel | torch eager µs | per channel |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['channels']}{' (x8)' if r['aligned_8'] else ''} | {r['onnxruntime_us']:.1f} | "
              f"{r['onnxruntime_us'] / r['channels']:.2f} | {r['torch_us']:.1f} | {r['torch_us'] / r['channels']:.2f} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "size": args.size, "calls": args.calls, "rounds": args.rounds,
                                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        "torch": torch.__version__, "onnxruntime": ort.__version__,
                                        "python": platform.python_version(), "machine": platform.machine()},
                                       indent=1))


if __name__ == "__main__":
    main()
