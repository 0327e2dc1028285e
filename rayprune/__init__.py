"""rayprune: budget-constrained, RL-driven structured pruning of PyTorch models, swept on Ray.

The core (``models``, ``data``, ``pruning``, ``costs``, ``engine``) is plain PyTorch; Ray appears
only from ``evaluation`` up.
"""

__version__ = "0.1.0"

from .pruning.export import load_pruned, save_pruned  # noqa: E402

__all__ = ["__version__", "load_pruned", "save_pruned"]
