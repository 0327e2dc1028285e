"""Pareto fronts over candidate rows: maximise accuracy, minimise every cost.

Row ``i`` is *dominated* if some row ``j`` is at least as good on every objective and strictly
better on one: ``acc_j >= acc_i``, ``cost_j <= cost_i`` for every cost, and one inequality strict.
Rows with identical objectives do not dominate each other, so duplicates all stay on the front
(:func:`pareto_front` then keeps one row per ``candidate_id``).

>>> pareto_mask([0.9, 0.8, 0.9], [[10], [5], [12]]).tolist()
[True, True, False]
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["pareto_mask", "pareto_front", "front_history", "with_served_levels"]


def pareto_mask(accuracy: Sequence[float], costs: Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (``costs`` is ``(n, k)``)."""
    acc = np.asarray(accuracy, dtype=float)
    c = np.asarray(costs, dtype=float).reshape(len(acc), -1)
    mask = np.ones(len(acc), dtype=bool)
    for i in range(len(acc)):  # O(n^2) but vectorised per row: fine for tens of thousands of rows
        at_least = (acc >= acc[i]) & np.all(c <= c[i], axis=1)
        strictly = (acc > acc[i]) | np.any(c < c[i], axis=1)
        mask[i] = not np.any(at_least & strictly)
    return mask


def pareto_front(frame: pd.DataFrame, costs: Sequence[str], *, accuracy: str = "accuracy",
                 feasible_only: bool = True) -> pd.DataFrame:
    """The non-dominated rows of ``frame`` (ok and, by default, feasible), sorted by the first cost."""
    rows = frame
    if "status" in rows.columns:
        rows = rows[rows["status"] == "ok"]
    if feasible_only and "feasible" in rows.columns:
        rows = rows[rows["feasible"].astype(bool)]
    rows = rows.dropna(subset=[accuracy, *costs])
    if rows.empty:
        return rows.copy()
    front = rows[pareto_mask(rows[accuracy].to_numpy(), rows[list(costs)].to_numpy())]
    if "candidate_id" in front.columns:
        front = front.drop_duplicates(subset=["candidate_id"])
    return front.sort_values(list(costs)).reset_index(drop=True)


def front_history(frame: pd.DataFrame, costs: Sequence[str], *, accuracy: str = "accuracy",
                  by: str = "trial_id", step: str = "iteration") -> pd.DataFrame:
    """For every ``by`` group and every ``step`` value, its front over the rows up to that step.

    Columns: ``by``, ``front_step`` (the step), then the front's rows.
    """
    parts = []
    for key, group in frame.groupby(by, sort=True):
        for s in sorted(group[step].dropna().unique()):
            front = pareto_front(group[group[step] <= s], costs, accuracy=accuracy)
            if not front.empty:
                parts.append(front.assign(front_step=int(s)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def with_served_levels(front: pd.DataFrame, finals: pd.DataFrame, levels: Sequence) -> pd.DataFrame:
    """``front`` with each member's ``levels`` (every level whose exported model it is, from ``finals``: the
    exported rows, one per level) and, for a member that serves several, the exported row of the tightest of
    them — its ``level``, ``export_path``, limits and ``found_for`` agree, and the name is the report's: a model
    found for params=0.25 that is also the best fit for 0.35 and 0.5 is the ``params=0.25`` row, with ``levels``
    [params=0.25, params=0.35, params=0.5], whichever level's row the front kept."""
    from ..costs.levels import tightest

    if front.empty or "candidate_id" not in front.columns or "level" not in front.columns:
        return front.assign(levels=pd.Series(dtype=object, index=front.index))
    by_cid = {cid: g for cid, g in finals.groupby("candidate_id", sort=False)} if "level" in finals.columns else {}
    rows, served = [], []
    for _, member in front.iterrows():
        own = by_cid.get(member["candidate_id"])
        names = [str(v) for v in own["level"]] if own is not None else [str(member["level"])]
        chosen = own[own["level"] == tightest(levels, names)] if own is not None else own
        rows.append(chosen.iloc[0] if chosen is not None and len(chosen) else member)
        served.append(names)
    out = pd.DataFrame(rows, columns=front.columns).reset_index(drop=True)
    return out.assign(levels=served)
