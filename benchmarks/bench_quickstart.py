"""The quickstart sweep's wall clock by phase (BENCHMARKS.md, "The quickstart sweep").

Runs ``rayprune sweep CONFIG --out OUT`` as a user would (a fresh process), times it from process
start, and splits the time with the rows' wall clocks: until the sweep claims its folder, until the
first scored candidate, search, hand-over to the selection, re-rank, finals, and the rest.

    python benchmarks/bench_quickstart.py --out /tmp/qs [--config configs/quickstart.yaml]

Not a timed test: compare runs side by side on a quiet machine and quote ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path


def phases(out: Path, t0: float, t1: float) -> dict[str, float]:
    """Seconds per phase, from ``sweep.json`` and the rows' ``wall_start``/``wall_end``."""
    from rayprune.results import read_candidates

    state = json.loads((out / "sweep.json").read_text())
    rows = read_candidates(out)

    def span(stage: str) -> tuple[float, float]:
        g = rows[(rows["stage"] == stage) & rows["wall_start"].notna()]
        return float(g["wall_start"].min()) - t0, float(g["wall_end"].max()) - t0

    s0, s1 = span("search")
    r0, r1 = span("rerank") if (rows["stage"] == "rerank").any() else (s1, s1)
    f0, f1 = span("final")
    return {"until the sweep claims its folder": state["started"] - t0, "until the first scored row": s0,
            "search": s1 - s0, "search end until the first re-rank row": r0 - s1, "re-rank": r1 - r0,
            "final fine-tunes": f1 - r1, "after the finals": t1 - t0 - f1, "total": t1 - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/quickstart.yaml")
    ap.add_argument("--out", required=True, help="the sweep's output folder (replaced)")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    res = subprocess.run([sys.executable, "-m", "rayprune.cli", "sweep", args.config, "--out", str(out), "-q"],
                         capture_output=True, text=True)
    t1 = time.time()
    if res.returncode != 0:
        sys.exit(f"rayprune sweep failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    for name, seconds in phases(out, t0, t1).items():
        print(f"{name:40s} {seconds:7.1f} s")
    print(res.stdout.strip().splitlines()[0])


if __name__ == "__main__":
    main()
