"""A sweep of many trials on one machine: does it complete, and does the driver's memory stay flat?

Issue #11's load figure: 16 trials (4 agents x 4 seeds) with ``max_concurrent_trials: 2`` on a tiny
problem (small_cnn on digits), run as a user runs it (``rayprune sweep`` in a subprocess). The
driver's resident memory (``VmRSS`` of the ``rayprune sweep`` process) is sampled every second.
Reports the exit status, wall time, rows (search rows per trial, none duplicated), models
exported, and the driver's RSS once the trials are running, at the end and at its peak::

    python benchmarks/bench_load.py --out benchmarks/results/load/sweep16.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
name: load-16
model: {name: small_cnn, kwargs: {width_mult: 0.5}}
data: {name: digits, device: cpu}
base_training: {epochs: 3, lr: 0.05, batch_size: 64}
pruning: {min_keep: 0.2}
search:
  evaluations: EVALS
  batch_size: 8
  rerank: {top_k: 2}
  finetune: {iterations: 5, batch_size: 64}
  final_finetune: {iterations: 20, batch_size: 64}
  eval_samples: 200
evaluation: {evaluators: 1, cpus: 0.75}
sweep:
  budgets: {params: [0.5, 0.3]}
  agents: [random, evolution, tpe, crl]
  seeds: SEEDS
  max_concurrent_trials: 2
  trial_cpus: 0.25
"""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--evaluations", type=int, default=32)
    ap.add_argument("--out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    cfg = work / "sweep.yaml"
    cfg.write_text(CONFIG.replace("EVALS", str(args.evaluations)).replace("SEEDS", str(args.seeds)))
    out = work / "out"
    env = {**os.environ, "RAYPRUNE_CACHE": str(work / "cache")}
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "rayprune.cli", "sweep", str(cfg), "--out", str(out), "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []  # (seconds, rss MiB, trials started)
    while proc.poll() is None:
        started = len(list((out / "tune").glob("*/params.json"))) if (out / "tune").exists() else 0
        rss = rss_mib(proc.pid)
        if rss is not None:
            samples.append((time.time() - t0, rss, started))
        time.sleep(1.0)
    output = proc.stdout.read()
    wall = time.time() - t0
    import pandas as pd

    rows = pd.read_parquet(out / "candidates.parquet") if (out / "candidates.parquet").exists() else pd.DataFrame()
    search = rows[rows["stage"] == "search"] if not rows.empty else rows
    running = [s for s in samples if s[2] >= 1]
    record = {
        "exit": proc.returncode, "wall_s": wall, "trials": int(search["trial_id"].nunique()) if len(search) else 0,
        "search_rows": int(len(search)), "rows_per_trial": sorted(set(search.groupby("trial_id").size())) if len(search) else [],
        "duplicated_rows": int(rows["row_id"].duplicated().sum()) if len(rows) else 0,
        "models": len(list((out / "models").glob("*/spec.json"))),
        "driver_rss_first_trial_mib": running[0][1] if running else None,
        "driver_rss_end_mib": samples[-1][1] if samples else None,
        "driver_rss_peak_mib": max(s[1] for s in samples) if samples else None,
        "status": json.loads((out / "sweep.json").read_text()).get("status") if (out / "sweep.json").exists() else None,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
    }
    print(json.dumps(record, indent=1))
    if proc.returncode != 0:
        print(output[-3000:])
    if args.out:
        Path(args.out).write_text(json.dumps({**record, "rss_samples": samples}, indent=1))


if __name__ == "__main__":
    main()
