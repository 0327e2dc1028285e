"""The PPO-Lagrangian objective (METHODS.md §1) as small functions, and the names of its metrics."""

from __future__ import annotations

import torch

__all__ = [
    "COST_SURROGATE_KEY", "COST_VF_EXPLAINED_VAR_KEY", "COST_VF_LOSS_KEY", "EPISODE_COST_METRIC", "LAGRANGE_METRIC",
    "LAGRANGE_STATE_KEY", "REWARD_SURROGATE_KEY", "SET_MULTIPLIERS_METHOD", "VIOLATION_RATE_METRIC",
    "clipped_surrogate", "lagrangian_policy_loss", "metric_name",
]

# --- names shared with the Tune reporter, Parquet rows and dashboards -------------------------
#: ``result["lagrange/<key>"]``: the multiplier ν used in this iteration's policy update.
LAGRANGE_METRIC = "lagrange"
#: ``result["cost/<key>"]``: mean episode cost (sum over steps) of the episodes that finished in
#: this iteration's rollout; ``None`` in an iteration where no episode finished.
EPISODE_COST_METRIC = "cost"
#: ``result["cost_violation_rate/<key>"]``: fraction of those episodes with cost > budget.
VIOLATION_RATE_METRIC = "cost_violation_rate"
#: Learner results, per module: the cost critic's (clamped) squared error and the cost term.
COST_VF_LOSS_KEY = "cost_vf_loss"
COST_VF_EXPLAINED_VAR_KEY = "cost_vf_explained_var"
COST_SURROGATE_KEY = "cost_surrogate"
REWARD_SURROGATE_KEY = "reward_surrogate"
#: Algorithm-state entry holding the multipliers (θ and Adam state) in checkpoints.
LAGRANGE_STATE_KEY = "lagrange"
#: Envs (vector or sub-envs) defining this method receive ``{cost_key: ν}`` every iteration.
SET_MULTIPLIERS_METHOD = "set_multipliers"


def metric_name(prefix: str, cost_key: str) -> str:
    """``metric_name(LAGRANGE_METRIC, "params") == "lagrange/params"``."""
    return f"{prefix}/{cost_key}"


# --- the maths ------------------------------------------------------------------------------
def clipped_surrogate(ratio: torch.Tensor, adv: torch.Tensor, clip_param: float) -> torch.Tensor:
    """PPO's per-sample objective ``min(ρ·A, clip(ρ, 1-ε, 1+ε)·A)`` (to be maximised)."""
    return torch.min(ratio * adv, torch.clamp(ratio, 1.0 - clip_param, 1.0 + clip_param) * adv)


def lagrangian_policy_loss(
    ratio: torch.Tensor,
    adv_r: torch.Tensor,
    adv_c: torch.Tensor,
    multipliers: torch.Tensor,
    clip_param: float,
) -> torch.Tensor:
    """Per-sample policy loss of PPO-Lagrangian (METHODS.md §1), to be minimised::

        L = [ -min(ρ·A_R, clip(ρ, 1±ε)·A_R) + Σ_i ν_i·ρ·A_Ci ] / (1 + Σ_i ν_i)

    Shapes: ``ratio``, ``adv_r`` ``(B,)``; ``adv_c`` ``(B, num_costs)``; ``multipliers``
    ``(num_costs,)``. With ``ν = 0`` this is PPO's clipped loss; the cost term is not clipped.
    """
    cost_term = ratio * (adv_c @ multipliers)
    return (-clipped_surrogate(ratio, adv_r, clip_param) + cost_term) / (1.0 + multipliers.sum())
