"""rayprune: budget-constrained, RL-driven structured pruning of PyTorch models, swept on Ray.

The core (``models``, ``data``, ``pruning``, ``costs``, ``engine``) is plain PyTorch; Ray appears
only from ``evaluation`` up. Importing ``rayprune`` (or ``rayprune.config``) imports neither torch
nor Ray: ``load_pruned``, ``save_pruned`` and the Python API (``prune``, ``sweep``: see
:mod:`rayprune.api`) are loaded on first use.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_pruned", "save_pruned", "prune", "sweep", "PruneResult", "SweepResult"]


def __getattr__(name: str) -> Any:
    if name in ("load_pruned", "save_pruned"):
        from .pruning import export

        return getattr(export, name)
    if name in ("prune", "sweep", "PruneResult", "SweepResult"):
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'rayprune' has no attribute {name!r}")
