"""Token authentication for clients of a Ray cluster (Ray >= 2.52; on by default for local clusters in 2.60)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["use_cluster_token", "token_available"]


def token_available() -> bool:
    """Whether a Ray auth token is at hand: ``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``."""
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def use_cluster_token() -> None:
    """Set ``RAY_AUTH_MODE=token`` for this process when a token is available and no mode was chosen.

    A client of a cluster started with ``ray start --head`` must present the cluster's token; Ray
    reads ``RAY_AUTH_MODE`` when it is imported, so call this before ``import ray``. It never
    switches authentication off.
    """
    if not os.environ.get("RAY_AUTH_MODE") and token_available():
        os.environ["RAY_AUTH_MODE"] = "token"
