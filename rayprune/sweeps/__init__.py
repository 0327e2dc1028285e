"""Budget sweeps on Ray Tune: trials, Pareto fronts, results, resume (``rayprune sweep``)."""

from .pareto import front_history, pareto_front, pareto_mask

__all__ = ["pareto_mask", "pareto_front", "front_history"]
