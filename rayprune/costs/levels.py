"""Budget levels: the sets of budgets a search serves, with their absolute limits.

A single ``rayprune prune`` has one level (``budgets``); a sweep has one per combination of
``sweep.budgets``. A level is what a candidate is proposed for, but any scored candidate counts
for *every* level it fits: levels are only ever compared through :func:`fits`.

Example:
    >>> from rayprune.costs.budget import Budget
    >>> lvl = Level.from_budgets([Budget("params", 0.25, True)], {"params": 1000.0})
    >>> lvl.name, lvl.limits
    ('params=0.25', {'params': 250.0})
    >>> lvl.admits({"params": 240.0, "macs": 9.0})
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from ..errors import UserError
from .budget import Budget, fits

__all__ = ["Level", "level_name", "contains", "tightest", "levels_from_config"]


def level_name(values: Mapping[str, float], budgets: Sequence[Budget] = ()) -> str:
    """``params=0.25`` or ``params=0.5,latency_ms=4``: readable, stable, usable as a folder name. With the
    ``budgets``, a relative limit on a cost that is absolute by default reads ``latency_ms=90%``
    (:attr:`Budget.value_text`)."""
    texts = {b.metric: b.value_text for b in budgets}
    return ",".join(f"{k}={texts.get(k, f'{float(v):g}')}" for k, v in values.items())


@dataclass(frozen=True)
class Level:
    """One budget level: its name, its budgets and their absolute limits."""

    name: str
    values: dict[str, float]  # the budgets as written (fractions for relative ones)
    limits: dict[str, float]  # absolute upper limits

    @classmethod
    def from_budgets(cls, budgets: Sequence[Budget], base_costs: Mapping[str, float]) -> "Level":
        values = {b.metric: float(b.value) for b in budgets}
        limits = {b.metric: b.limit(base_costs[b.metric]) for b in budgets}
        return cls(name=level_name(values, budgets), values=values, limits=limits)

    def admits(self, costs: Mapping[str, float]) -> bool:
        """Whether measured ``costs`` meet every budget of this level."""
        return fits(costs, self.limits)

    def to_json(self) -> dict:
        return {"name": self.name, "values": dict(self.values), "limits": dict(self.limits)}

    @classmethod
    def from_json(cls, data: Mapping) -> "Level":
        return cls(name=str(data["name"]), values=dict(data["values"]), limits=dict(data["limits"]))


def contains(outer: Level, inner: Level) -> bool:
    """Whether every candidate that fits ``inner`` also fits ``outer`` (``outer`` is the larger level).

    True when ``outer`` limits no cost that ``inner`` leaves free and each of its limits is at least
    ``inner``'s. A model exported for ``inner`` is then a valid answer for ``outer`` too.

    >>> small = Level("params=0.1", {"params": 0.1}, {"params": 10.0})
    >>> large = Level("params=0.5", {"params": 0.5}, {"params": 50.0})
    >>> contains(large, small), contains(small, large)
    (True, False)
    """
    return all(name in inner.limits and inner.limits[name] <= limit for name, limit in outer.limits.items())


def tightest(levels: Sequence[Level], names: Sequence[str]) -> str:
    """Of the level ``names``, the one every other contains (the tightest); the first if none is (two
    levels on different costs), or if none of them is among ``levels``.

    >>> lv = [Level(f"params={v}", {"params": v}, {"params": 100 * v}) for v in (0.5, 0.1, 0.25)]
    >>> tightest(lv, ["params=0.5", "params=0.25"])
    'params=0.25'
    """
    known = {lvl.name: lvl for lvl in levels}
    named = [known[n] for n in names if n in known]
    for level in named:
        if all(contains(other, level) for other in named):
            return level.name
    return names[0]


def unswept_budget_lines(cfg) -> list[str]:
    """A warning per ``budgets`` cost that a sweep's levels do not carry: ``sweep.budgets`` sets a sweep's levels, and
    ``budgets`` (what ``prune`` meets) is not added to them; a cap every level must meet is a one-value list in
    ``sweep.budgets``."""
    if not cfg.sweep.budgets:
        return []
    return [f"warning: budgets.{name} ({budget.value:g}) is not a limit of the sweep's levels: sweep.budgets sets them, "
            f"and budgets is what `rayprune prune` meets. For a cap every level meets, add it to sweep.budgets as one "
            f"value ({name}: [{budget.value:g}]: the levels are the product of sweep.budgets' lists; from Python, "
            f"rayprune.sweep(..., levels={{..., {name!r}: [{budget.value:g}]}}) and no budgets=)."
            for name, budget in ((b.metric, b) for b in cfg.budget_list()) if name not in cfg.sweep.budgets]


def levels_from_config(cfg, base_costs: Mapping[str, float], *, sweep: bool = False) -> list[Level]:
    """The levels a run serves: ``budgets`` (one level), or with ``sweep`` every combination of
    ``sweep.budgets`` (``budgets`` if that is empty). Relative/absolute as the config says."""
    import itertools

    if sweep and cfg.sweep.budgets:
        names = list(cfg.sweep.budgets)
        combos = itertools.product(*(cfg.sweep.budgets[n] for n in names))
        return [Level.from_budgets([Budget(n, float(v), cfg.level_relative(n)) for n, v in zip(names, combo)], base_costs)
                for combo in combos]
    budgets = cfg.budget_list()
    if not budgets:
        raise UserError("No budget given: set 'budgets' in the config, pass budgets={NAME: VALUE} in Python or "
                        "--budget NAME=VALUE on the command line"
                        + (" (or sweep.budgets, levels= / --budgets for a sweep)." if sweep else "."))
    return [Level.from_budgets(budgets, base_costs)]
