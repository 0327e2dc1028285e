"""Budgets: an upper limit on one cost, relative to the unpruned model or absolute."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping, Optional

from ..errors import UserError

__all__ = ["Budget", "parse_budget", "parse_level_spec", "RELATIVE_BY_DEFAULT", "BUILTIN_COST_NAMES", "FEASIBILITY_RTOL",
           "within", "fits"]

#: The built-in costs (their functions are in :mod:`rayprune.costs.registry`).
BUILTIN_COST_NAMES = ("params", "macs", "latency_ms", "peak_memory_mb")

#: Relative slack of every budget comparison: a cost at the limit up to float round-off is within it.
FEASIBILITY_RTOL = 1e-9


def within(value: float, limit: float) -> bool:
    """Whether one cost meets its limit (:data:`FEASIBILITY_RTOL` of slack; NaN never does).

    >>> within(0.25 * 3, 0.75), within(0.76, 0.75), within(float("nan"), 1.0)
    (True, False, False)
    """
    return value is not None and value <= limit * (1.0 + FEASIBILITY_RTOL)


def fits(costs: "Mapping[str, float]", limits: "Mapping[str, float]") -> bool:
    """Whether measured ``costs`` meet every limit in ``limits`` (a missing cost does not).

    >>> fits({"params": 10.0, "macs": 5.0}, {"params": 10.0})
    True
    """
    return all(name in costs and within(costs[name], limit) for name, limit in limits.items())

#: Costs whose budget is a fraction of the base model's value unless written ``abs:``.
RELATIVE_BY_DEFAULT = frozenset({"params", "macs", "peak_memory_mb"})


@dataclass(frozen=True)
class Budget:
    """``cost(candidate) <= limit``, where ``limit = value * base`` if ``relative`` else ``value``.

    >>> Budget("params", 0.25, relative=True).limit(1_000_000)
    250000.0
    """

    metric: str
    value: float
    relative: bool

    def __post_init__(self) -> None:
        if not isinstance(self.value, numbers.Real) or isinstance(self.value, bool) or not math.isfinite(self.value):
            raise UserError(f"The budget of constraint {self.metric!r} must be a finite number; got {self.value!r}.")
        if self.relative and not 0.0 < self.value <= 1.0:
            raise UserError(
                f"The budget of constraint {self.metric!r} must be in (0, 1] for a relative budget; got {self.value}."
            )
        if not self.relative and self.value <= 0:
            raise UserError(f"The budget of constraint {self.metric!r} must be > 0; got {self.value}.")

    def limit(self, base_value: float) -> float:
        """The absolute upper limit, given the unpruned model's value of this cost."""
        return float(self.value) * float(base_value) if self.relative else float(self.value)

    def __str__(self) -> str:
        return f"{self.metric}<={self.value:g}{'x base' if self.relative else ''}"

    @property
    def value_text(self) -> str:
        """The value as a level's name writes it: ``0.25`` where the kind is the cost's default (a fraction of
        the base for params, an absolute limit for latency), ``93%`` for a relative budget of a cost that is
        absolute by default (``latency_ms=0.93`` would read as 0.93 ms).

        >>> Budget("params", 0.25, True).value_text, Budget("latency_ms", 0.93, True).value_text
        ('0.25', '93%')
        >>> Budget("latency_ms", 4.0, False).value_text, Budget("params", 4e4, False).value_text
        ('4', '40000')
        """
        if self.relative and self.metric not in RELATIVE_BY_DEFAULT:
            return f"{round(self.value * 100, 10):g}%"
        return f"{float(self.value):g}"


def parse_budget(text: str) -> Budget:
    """Parse ``NAME=VALUE`` from the command line.

    ``VALUE`` is a fraction of the base model for params, MACs and peak memory and an absolute
    value otherwise; ``rel:``/``abs:`` prefixes or a ``%`` suffix (relative) override that.

    >>> parse_budget("params=0.25")
    Budget(metric='params', value=0.25, relative=True)
    >>> parse_budget("latency_ms=4")
    Budget(metric='latency_ms', value=4.0, relative=False)
    >>> parse_budget("macs=abs:2e8").relative
    False
    """
    name, sep, raw = str(text).partition("=")
    name, raw = name.strip(), raw.strip()
    if not sep or not name or not raw:
        raise UserError(f"A budget must look like NAME=VALUE (e.g. params=0.25 or latency_ms=4.0); got {text!r}.")
    relative = name in RELATIVE_BY_DEFAULT
    prefix = raw[:4] if raw.startswith(("rel:", "abs:")) else ""
    if prefix:
        relative, raw = prefix == "rel:", raw[4:].strip()
    scale = 1.0
    if raw.endswith("%"):
        if prefix == "abs:":  # 'abs:50%' asks for an absolute limit and a share of the base at once
            raise UserError(f"Budget {name!r}: {raw[:-1]!r} after abs: says an absolute limit (in the cost's unit) "
                            f"and % a share of the base model's value; write {raw} for the share or abs:<number> for "
                            f"the limit.")
        relative, raw, scale = True, raw[:-1], 0.01
    try:
        value = float(raw) * scale
    except ValueError:
        raise UserError(f"The value of budget {name!r} must be a number; got {raw!r} in {text!r}.") from None
    return Budget(name, value, relative)


def parse_level_spec(text: str) -> tuple[str, list[float], Optional[bool]]:
    """``NAME=V1,V2,...`` -> ``(name, values, relative)``; each value as a prune budget is written (``rel:0.9``,
    ``90%``, ``abs:2e8`` or a plain number), ``relative`` True/False where the values say so, else None (the
    config decides: params, MACs and memory relative by default, latency and user costs absolute). A mark on
    any level applies to the unmarked ones too (``params=abs:1e6,5e5``: both absolute), and each level is
    checked with that meaning.

    >>> parse_level_spec("params=0.5,0.25"), parse_level_spec("latency_ms=90%,rel:0.8")
    (('params', [0.5, 0.25], None), ('latency_ms', [0.9, 0.8], True))
    """
    name, sep, raw = text.partition("=")
    if not sep or not name.strip() or not raw.strip():
        raise UserError(f"--budgets must look like NAME=V1,V2,... (e.g. params=0.5,0.25,0.1); got {text!r}.")
    name = name.strip()
    parts = [v.strip() for v in raw.split(",") if v.strip()]
    if not parts:
        raise UserError(f"--budgets {name!r} has no levels.")
    marked = [v for v in parts if v.startswith(("rel:", "abs:")) or v.endswith("%")]
    said = {v.startswith("rel:") or v.endswith("%") for v in marked}
    if len(said) > 1:
        raise UserError(f"--budgets {name!r} mixes relative and absolute levels ({raw!r}); a sweep's levels of one "
                        "cost are all one or the other.")
    # an unmarked level takes the marked ones' meaning (params=abs:1e6,5e5: both absolute), and is checked as such
    prefix = ("rel:" if said == {True} else "abs:") if said else ""
    try:
        budgets = [parse_budget(f"{name}={v if v in marked else prefix + v}") for v in parts]
    except UserError as exc:
        raise UserError(f"--budgets {name!r}: {exc}") from None
    return name, [b.value for b in budgets], (said.pop() if said else None)
