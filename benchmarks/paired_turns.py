"""Paired latency of one candidate measured many times with one turn and with several turns against the
base (``PairedTiming.measure(rounds=...)``), under whatever load the machine has: how much the quiet
checks' turns narrow the ratio a latency budget is judged on (BENCHMARKS.md, "Turns with the base").

    python benchmarks/paired_turns.py --config configs/bench/user_cnn_mnist.yaml --keep 0.5 --repeats 20
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    from bench_search import _problem

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/bench/user_cnn_mnist.yaml")
    ap.add_argument("--keep", type=float, default=0.5, help="the candidate: this keep ratio for every group")
    ap.add_argument("--repeats", type=int, default=20, help="measurements per block (two blocks per setting)")
    ap.add_argument("--rounds", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--out", help="JSON file of every measured ratio")
    args = ap.parse_args(argv)
    p = _problem(args.config, "latency_ms=rel:0.9")
    model = p.space.build([args.keep] * len(p.space.groups))
    ref = p.base_costs["latency_ms"]
    out: dict[int, list[float]] = {}
    for rounds in [*args.rounds, *args.rounds]:  # interleaved blocks: the load drifts for every setting alike
        out.setdefault(rounds, []).extend(p.measure_with_raw(model, ["latency_ms"], rounds=rounds)[0]["latency_ms"] / ref
                                          for _ in range(args.repeats))
    for r, v in out.items():
        v = np.asarray(v)
        far = np.mean(np.abs(v - np.median(v)) > 0.1)
        print(f"rounds={r}: ratio median {np.median(v):.3f}, range {v.min():.3f}-{v.max():.3f}, sd {v.std(ddof=1):.3f}, "
              f"share more than 0.1 from the median {far:.2f} (n={len(v)})")
    if args.out:
        Path(args.out).write_text(json.dumps({str(k): v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
