"""How much of a timed cost pruning can remove: the fixed part of latency, read from a search's own timings.

On a CPU at batch 1 a small model's latency is mostly fixed cost (framework and kernel-launch overhead): halving
its MACs can leave 85-90 % of its latency (BENCHMARKS.md, session 26). A latency budget close to that floor is
met only by candidates pruned to a sliver of their MACs, and the exported model then loses accuracy for little
latency. Users see a poor model and no reason; this module gives the reason, from the timings the search took
anyway: a least-squares line ``cost / base ≈ a + b · MACs / base`` over the scored candidates, whose intercept
``a`` is the share of the base's cost that no pruning removes (at this device, batch size and runtime), and the
MACs share a level needs, ``(limit − a) / b``.

Plain pandas/NumPy (no Ray).

>>> macs = np.arange(20.0, 101.0, 10.0)                      # nine candidates, 20-100 % of the base's MACs
>>> rows = pd.DataFrame({"status": "ok", "macs": macs, "latency_ms": 8.0 + 0.02 * macs})
>>> fit = fixed_share(rows, "latency_ms", {"latency_ms": 10.0, "macs": 100.0})
>>> round(fit.fixed, 2), round(fit.needed(0.9), 2), fit.needed(0.75)   # 80 % stays; 90 % needs half the MACs
(0.8, 0.5, None)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd

from ..costs.levels import Level
from ..names import STATUS_OK

__all__ = ["FixedShare", "fixed_share", "fixed_cost_notes", "FIXED_SHARE_NOTE"]

#: a timed cost whose line keeps at least this share of the base's value at zero MACs gets a note
FIXED_SHARE_NOTE = 0.5
#: fewest distinct MACs values (and their spread, as a share of the base's) a line needs to mean anything
MIN_POINTS, MIN_SPAN = 8, 0.2


@dataclass(frozen=True)
class FixedShare:
    """``cost / base ≈ fixed + slope · MACs / base`` over ``points`` scored candidates."""

    fixed: float
    slope: float
    points: int

    def needed(self, limit_share: float) -> Optional[float]:
        """The MACs share (of the base's) at which the line meets ``limit_share`` of the base's cost; None when the
        line never does (limit at or below the fixed part, or a cost that does not grow with MACs)."""
        if self.slope <= 0 or limit_share <= self.fixed:
            return None
        return (limit_share - self.fixed) / self.slope


def fixed_share(rows: pd.DataFrame, cost: str, base_costs: Mapping[str, float]) -> Optional[FixedShare]:
    """The line through the scored candidates' ``cost`` against their MACs, both as shares of the base's; None
    without enough distinct candidates spread along MACs (or without the columns)."""
    if cost not in rows.columns or "macs" not in rows.columns or not base_costs.get(cost) or not base_costs.get("macs"):
        return None
    ok = rows[(rows["status"] == STATUS_OK)] if "status" in rows.columns else rows
    ok = ok[ok[cost].notna() & ok["macs"].notna()]
    x = ok["macs"].to_numpy(dtype=float) / float(base_costs["macs"])
    y = ok[cost].to_numpy(dtype=float) / float(base_costs[cost])
    if len(np.unique(np.round(x, 4))) < MIN_POINTS or np.ptp(x) < MIN_SPAN:
        return None
    slope, fixed = np.polyfit(x, y, 1)
    return FixedShare(fixed=float(fixed), slope=float(slope), points=int(len(x)))


def fixed_cost_notes(rows: pd.DataFrame, levels: Sequence[Level], base_costs: Mapping[str, float],
                     timed: Sequence[str]) -> list[str]:
    """One note per timed cost with a level whose limit sits near its fixed part: what share of the base's cost
    stays at zero MACs, and how far each such level must cut the MACs."""
    notes = []
    for cost in timed:
        limited = [lvl for lvl in levels if cost in lvl.limits]
        fit = fixed_share(rows, cost, base_costs) if limited else None
        if fit is None or fit.fixed < FIXED_SHARE_NOTE:
            continue
        needs = []
        for lvl in limited:
            share = lvl.limits[cost] / float(base_costs[cost])
            x = fit.needed(share)
            needs.append(f"{lvl.name} needs the MACs down to about {100 * x:.0f} % of the base's" if x is not None
                         else f"{lvl.name} is at or below that floor: pruning alone cannot reach it")
        notes.append(
            f"note: {cost} is mostly a fixed cost here: a line through {fit.points} scored candidates' timings keeps "
            f"{100 * fit.fixed:.0f} % of the base's {cost} at zero MACs, so {'; '.join(needs)}. Where this holds "
            f"(a small model on a CPU at costs.latency.batch_size 1, or a busy machine), pruning buys little "
            f"{cost} and costs accuracy; timing on the device and batch size the model will serve at, or a MACs "
            f"budget, shows what pruning saves.")
    return notes
