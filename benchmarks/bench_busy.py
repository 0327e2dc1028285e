"""How busy were the evaluators during a search? Read from a run's own rows, no re-run needed.

Every search row carries the evaluator that scored it (``evaluator``, ``pid``) and the wall-clock
interval of its scoring (``wall_start``, ``wall_end``). For each trial this script reports, over
the search phase (first start to last end of the trial's search rows):

* ``busy``: the share of the phase each evaluator spent scoring (mean over evaluators);
* ``lockstep idle``: per batch (``iteration``), the time evaluators sat idle between finishing
  their part and the batch's last candidate finishing, as a share of evaluators x phase — the
  cost of scoring batches in lockstep (the agent needs the whole batch before it asks again);
* ``between batches``: the rest of the idle time (the agent's ``tell``/``ask``, Parquet, Ray calls).

Usage (any output folder of ``rayprune prune``/``sweep``, or a benchmark's rows)::

    python benchmarks/bench_busy.py runs/quickstart [more folders ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def busy_table(rows: pd.DataFrame) -> pd.DataFrame:
    search = rows[(rows["stage"] == "search") & ~rows["cached"].astype(bool) & rows["wall_start"].notna()]
    out = []
    for trial, t in search.groupby("trial_id"):
        t = t.assign(worker=t["pid"].astype(str) + "/" + t["evaluator"].astype(str))
        start, end = float(t["wall_start"].min()), float(t["wall_end"].max())
        span = max(end - start, 1e-9)
        workers = t["worker"].nunique()
        evaluators = t["evaluator"].nunique()
        scoring = float((t["wall_end"] - t["wall_start"]).sum())
        lockstep = 0.0
        for _, batch in t.groupby("iteration"):
            batch_end = float(batch["wall_end"].max())
            for _, w in batch.groupby("evaluator"):
                lockstep += batch_end - float(w["wall_end"].max())
        capacity = evaluators * span
        out.append({"trial": trial, "agent": t["agent"].iloc[0] if "agent" in t else "", "candidates": len(t),
                    "evaluators": evaluators, "processes": workers, "search_s": span,
                    "busy": scoring / capacity, "lockstep_idle": lockstep / capacity,
                    "between_batches": max(0.0, 1 - scoring / capacity - lockstep / capacity)})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+")
    args = ap.parse_args()
    from rayprune.results import read_candidates

    frames = []
    for folder in args.folders:
        table = busy_table(read_candidates(folder))
        table.insert(0, "run", Path(folder).name)
        frames.append(table)
    table = pd.concat(frames, ignore_index=True)
    print("| run | trial | agent | fresh candidates | evaluators | search s | busy | lockstep idle | between batches |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table.itertuples():
        print(f"| {r.run} | {r.trial} | {r.agent} | {r.candidates} | {r.evaluators} | {r.search_s:.0f} | "
              f"{100 * r.busy:.0f} % | {100 * r.lockstep_idle:.0f} % | {100 * r.between_batches:.0f} % |")


if __name__ == "__main__":
    main()
