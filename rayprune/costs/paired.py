"""Timed costs measured next to the base model: a candidate's latency as a ratio to the base's.

A timing depends on the process and the moment as much as on the model: on a shared 2-vCPU
machine one process measured the base VGG11 at 4.7 ms where others measured 3.0-3.3 ms, and a
relative budget (``latency_ms=rel:0.5``) set from one process's base timing then judged every
candidate timed in another process at another moment (BENCHMARKS.md, "The latency budget after
the steering fix": the limit moved by half between runs). Timing the base model in the same
process just before the candidate and using the *ratio* cancels that speed:

    reported = candidate_measured / base_measured_now × reference

where ``reference`` is the run's one base measurement (:func:`~rayprune.costs.registry.measure_base_costs`,
the number the budget limits were computed from). A relative budget is then judged on the ratio
alone (``reported ≤ v·reference`` ⇔ ``ratio ≤ v``), whichever process measured it; an absolute one
on the candidate's latency at the speed the base had when the run measured it.

Rows keep the two raw medians (``<cost>_measured``, ``<cost>_base``) so nothing is hidden.

Example:
    >>> ticks = iter([4.0, 2.0])                       # the base, then the candidate, in one slow process
    >>> timer = PairedTiming("BASE", {"latency_ms": lambda m, c: next(ticks)}, None, {"latency_ms": 3.0})
    >>> timer.measure("CAND")
    ({'latency_ms': 1.5}, {'latency_ms_measured': 2.0, 'latency_ms_base': 4.0})
    >>> ticks = iter([6.0, 1.0, 2.0, 1.1])             # the first base timing caught in a burst of other work
    >>> timer.measure("CAND", rounds=2)                 # lowest of each: 1.0 / 2.0, not 1.0 / 6.0
    ({'latency_ms': 1.5}, {'latency_ms_measured': 1.0, 'latency_ms_base': 2.0})
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from ..errors import UserError
from .context import CostContext, CostFn

__all__ = ["PairedTiming", "paired_columns"]


#: how many of a process's recent base timings :meth:`PairedTiming.measure` compares a new one with
RECENT = 16
#: a base timing this far above the median of the recent ones (with at least 4 of them) takes one more turn
OUTLIER_FACTOR = 1.4


def _off(timed: float, recent: Sequence[float]) -> bool:
    """Whether ``timed`` is above the median of ``recent`` by more than :data:`OUTLIER_FACTOR` (never with fewer
    than 4); a low one is not: the lowest of the turns is kept, so another turn could not replace it.

    >>> _off(4.5, [2.0, 1.9, 2.1, 2.0]), _off(2.3, [2.0, 1.9, 2.1, 2.0]), _off(1.2, [2.0, 1.9, 2.1, 2.0]), _off(9, [2])
    (True, False, False, False)
    """
    if len(recent) < 4:
        return False
    return timed > OUTLIER_FACTOR * sorted(recent)[len(recent) // 2]


def paired_columns(name: str) -> tuple[str, str]:
    """The raw columns a paired cost adds to a row: the candidate's and the base's own medians."""
    return f"{name}_measured", f"{name}_base"


class PairedTiming:
    """Measures timed costs of candidates as ratios to ``base_model`` timed next to them.

    Args:
        base_model: the unpruned model (timed before every candidate).
        costs: the timed costs to pair (name -> function); others are not this class's business.
        context: the measuring context (device, threads, repeats, runtime).
        reference: the run's base value of each cost, the unit reported values are scaled to.
    """

    def __init__(self, base_model: Any, costs: Mapping[str, CostFn], context: CostContext,
                 reference: Mapping[str, float]) -> None:
        missing = [n for n in costs if n not in reference]
        if missing:
            raise ValueError(f"Paired timing needs the base value of {missing}; got base values for {sorted(reference)}.")
        self.base_model = base_model
        self.costs = dict(costs)
        self.context = context
        self.reference = {n: float(reference[n]) for n in costs}
        self._base_on_device = None
        self._recent: dict[str, list[float]] = {n: [] for n in costs}  # this process's last base timings

    def _base(self) -> Any:
        """The base model on the measuring device, copied there once (not once per candidate)."""
        if self._base_on_device is None:
            from .metrics import on_device

            ctx = self.context
            self._base_on_device = self.base_model if ctx is None else on_device(self.base_model, ctx.device)
        return self._base_on_device

    def measure(self, model: Any, names: Optional[Sequence[str]] = None, *,
                rounds: int = 1) -> tuple[dict[str, float], dict[str, float]]:
        """``(values, raw)``: each cost (``names``, default all) scaled to the reference, and the two
        raw medians per cost.

        The base is timed first, then the candidate, with the same function and context; with
        ``rounds`` > 1 the two take turns that many times and each keeps its lowest median (the speed
        it has when nothing else interferes, as the run's reference base timing is taken), so that a
        burst of other work during one timing does not move the ratio (one base timing caught in such
        a burst reported a candidate at 0.47 of the base where its size reads 0.8-0.9). One more turn
        is taken when the base's first timing is above this process's recent ones by more than
        :data:`OUTLIER_FACTOR` (a search's one-round timings: a base caught at 4.5 ms among 1.9-2.1 ms made a
        candidate at 90 % of the MACs read 0.45 of the base and count as within a latency budget). A cost
        function that raises is reported by name (:func:`~rayprune.costs.registry.measure_costs`);
        a base time that is not positive is a :class:`~rayprune.errors.UserError`.
        """
        from .registry import measure_costs

        if rounds < 1:
            raise ValueError(f"rounds must be at least 1; got {rounds}.")
        values, raw = {}, {}
        for name in self.costs if names is None else names:
            fn = self.costs[name]
            base_now, measured = float("inf"), float("inf")
            turns = 0
            while turns < rounds:
                timed = measure_costs(self._base(), {name: fn}, self.context)[name]
                if not timed > 0:
                    raise UserError(f"Cost {name!r} measured the base model at {timed}; a timing paired with "
                                    "the base needs it > 0 (or set costs.latency.paired: false).")
                if turns == 0 and _off(timed, self._recent[name]):
                    rounds += 1  # this turn's base is an outlier: the lowest of one more decides
                self._recent[name] = [*self._recent[name], timed][-RECENT:]
                base_now = min(base_now, timed)
                measured = min(measured, measure_costs(model, {name: fn}, self.context)[name])
                turns += 1
            values[name] = measured / base_now * self.reference[name]
            measured_col, base_col = paired_columns(name)
            raw[measured_col], raw[base_col] = measured, base_now
        return values, raw
