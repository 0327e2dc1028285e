"""Structured pruning on Torch-Pruning's dependency graph: groups, plans, candidates, export."""

from .export import load_pruned, read_spec, save_pruned
from .importance import IMPORTANCES, get_importance
from .plan import PlanEntry, PruningPlan, apply_plan
from .rounding import candidate_id, check_keep_ratio, keep_channels, keep_counts
from .space import GroupMember, PrunableGroup, PruningSpace, find_output_layers

__all__ = [
    "PruningSpace",
    "PrunableGroup",
    "GroupMember",
    "PruningPlan",
    "PlanEntry",
    "apply_plan",
    "keep_channels",
    "keep_counts",
    "candidate_id",
    "check_keep_ratio",
    "get_importance",
    "IMPORTANCES",
    "find_output_layers",
    "save_pruned",
    "load_pruned",
    "read_spec",
]
