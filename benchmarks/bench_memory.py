"""Does memory stay flat over a long search? Issue #12 item 6.

Runs ``rayprune prune`` (a subprocess, as a user runs it) for N candidates on a small problem
(small_cnn on digits, adaptive-BN score) and samples, every second, the resident memory (VmRSS) of
the driver (the ``rayprune prune`` process) and of each evaluator actor (processes titled
``ray::Evaluator``). Progress lines ("batch k: n/N scored") give the candidates scored at each
sample. Reports, per process, RSS once 10 % of the candidates are scored, at 50 %, at 100 %, the
peak, and the growth per 1,000 candidates between 10 % and 100 % (a least-squares slope)::

    python benchmarks/bench_memory.py --agent random --evaluations 2000 --model vgg11 --width 0.25 --data mnist5k \
        --out benchmarks/results/memory/random_vgg11_2000.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from bench_load import rss_mib  # benchmarks/ is on sys.path when this script runs

CONFIG = """
name: memory
model: {name: MODEL, kwargs: {width_mult: WIDTH}}
data: {name: DATA, device: cpu}
base_training: {epochs: 3, lr: 0.05, batch_size: 64}
pruning: {min_keep: 0.2}
budgets: {params: 0.3}
search:
  evaluations: EVALS
  batch_size: 32
  score: two_stage
  rerank: {top_k: 2}
  finetune: {iterations: 5, batch_size: 64}
  final_finetune: {iterations: 20, batch_size: 64}
  eval_samples: 200
evaluation: {evaluators: 2, cpus: 0.75}
"""

SCORED = re.compile(r"batch \d+: (\d+)/(\d+) scored")


def _parent(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def evaluator_pids(root: int) -> list[int]:
    """Evaluator actors (processes titled ``ray::Evaluator``) descending from ``root`` (the driver
    starts its own local Ray, whose raylet starts the workers): other Ray sessions are left out."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if not title.startswith("ray::Evaluator"):
                continue
            pid, hops = int(entry.name), 0
            while pid not in (None, 0, 1, root) and hops < 20:
                pid, hops = _parent(pid), hops + 1
            if pid == root:
                out.append(int(entry.name))
    return sorted(out)


def summarise(samples: list[dict], total: int) -> dict:
    """Per process: RSS at 10/50/100 % of the candidates, peak, slope (MiB per 1,000 candidates)."""
    procs = sorted({k for s in samples for k in s["rss"]})
    out = {}
    for proc in procs:
        pts = [(s["scored"], s["rss"][proc]) for s in samples if proc in s["rss"] and s["scored"] is not None]
        if not pts:
            continue
        x, y = np.array([p[0] for p in pts], float), np.array([p[1] for p in pts], float)

        def at(frac: float) -> float | None:
            idx = np.nonzero(x >= frac * total)[0]
            return round(float(y[idx[0]]), 1) if len(idx) else None

        window = x >= 0.1 * total
        slope = float(np.polyfit(x[window], y[window], 1)[0]) * 1000 if window.sum() >= 3 and np.ptp(x[window]) else None
        out[proc] = {"at_10pct": at(0.1), "at_50pct": at(0.5), "at_100pct": at(1.0), "peak": round(float(y.max()), 1),
                     "mib_per_1000_candidates": None if slope is None else round(slope, 2)}
    return out


def _cached(out: Path) -> dict | None:
    """Search rows and how many were served from the evaluators' cache (fresh ones exercise memory)."""
    try:
        import pandas as pd

        rows = pd.read_parquet(out / "candidates.parquet")
    except Exception:  # noqa: BLE001 - a failed run has no merged file
        return None
    search = rows[rows["stage"] == "search"]
    return {"search_rows": int(len(search)), "cached": int(search["cached"].sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agent", default="evolution")
    ap.add_argument("--evaluations", type=int, default=2000)
    ap.add_argument("--model", default="small_cnn", help="zoo model (vgg11 gives a space where few candidates repeat)")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--data", default="digits")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rp-mem-"))
    cfg = work / "memory.yaml"
    cfg.write_text(CONFIG.replace("EVALS", str(args.evaluations)).replace("MODEL", args.model)
                   .replace("WIDTH", str(args.width)).replace("DATA", args.data))
    env = {**os.environ, "RAYPRUNE_CACHE": str(work / "cache"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "rayprune.cli", "prune", str(cfg), "--agent", args.agent, "--out", str(work / "out")]
    started = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = {"scored": None}
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            m = SCORED.search(line)
            if m:
                state["scored"] = int(m.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []
    while proc.poll() is None:
        rss = {"driver": rss_mib(proc.pid)}
        for i, pid in enumerate(evaluator_pids(proc.pid)):
            rss[f"evaluator{i}"] = rss_mib(pid)
        samples.append({"t": round(time.time() - started, 1), "scored": state["scored"],
                        "rss": {k: v for k, v in rss.items() if v is not None}})
        time.sleep(1.0)
    reader.join(timeout=5)
    result = {
        "command": " ".join(cmd), "agent": args.agent, "evaluations": args.evaluations, "returncode": proc.returncode,
        "seconds": round(time.time() - started, 1), "memory": summarise(samples, args.evaluations),
        "cached": _cached(work / "out"),
        "samples": samples, "tail": "".join(lines[-12:]),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
