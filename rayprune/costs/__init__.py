"""Costs of a pruned model: one signature ``f(model, context) -> float`` for all of them."""

from .analytic import AnalyticCosts
from .budget import RELATIVE_BY_DEFAULT, Budget, parse_budget
from .context import CostContext, CostFn
from .metrics import count_macs, count_params, measure_latency_ms, measure_peak_memory_mb
from .registry import ANALYTIC_COSTS, BUILTIN_COSTS, measure_costs, resolve_cost, resolve_costs

__all__ = [
    "CostContext",
    "CostFn",
    "count_params",
    "count_macs",
    "measure_latency_ms",
    "measure_peak_memory_mb",
    "BUILTIN_COSTS",
    "ANALYTIC_COSTS",
    "resolve_cost",
    "resolve_costs",
    "measure_costs",
    "Budget",
    "parse_budget",
    "RELATIVE_BY_DEFAULT",
    "AnalyticCosts",
]
