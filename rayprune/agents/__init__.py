"""Search agents. ``baselines`` is plain PyTorch; the RL agents (PPO-Lagrangian, NEON) need Ray
and are imported from their own modules so that importing this package does not start Ray."""

from .baselines import meets_budgets, random_keep_ratios, scale_to_budget, uniform_keep_ratio

__all__ = ["meets_budgets", "uniform_keep_ratio", "scale_to_budget", "random_keep_ratios"]
