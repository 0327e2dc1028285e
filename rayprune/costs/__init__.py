"""Costs of a pruned model: one signature ``f(model, context) -> float`` for all of them.

Names are loaded on first use, so ``rayprune.costs.budget`` (what the config layer needs) is
importable without torch.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "AnalyticCosts": "analytic",
    "Budget": "budget", "parse_budget": "budget", "RELATIVE_BY_DEFAULT": "budget", "BUILTIN_COST_NAMES": "budget",
    "FEASIBILITY_RTOL": "budget", "within": "budget", "fits": "budget",
    "CostContext": "context", "CostFn": "context",
    "count_macs": "metrics", "count_params": "metrics", "measure_latency_ms": "metrics",
    "measure_peak_memory_mb": "metrics",
    "ANALYTIC_COSTS": "registry", "BUILTIN_COSTS": "registry", "CostFunctionError": "registry",
    "measure_costs": "registry", "measure_base_costs": "registry", "TIMED_COSTS": "registry",
    "resolve_cost": "registry", "resolve_costs": "registry",
    "Level": "levels", "levels_from_config": "levels",
    "PairedTiming": "paired", "paired_columns": "paired",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
