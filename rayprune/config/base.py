"""The base of every config section, the config error and the cache folder."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ..errors import UserError

__all__ = ["ConfigError", "default_cache_dir", "Section"]


class ConfigError(UserError):
    """A configuration that does not validate; the message lists every problem with its key path."""


def default_cache_dir() -> Path:
    """``$RAYPRUNE_CACHE`` (``~`` expanded) or, unset or empty, ``~/.cache/rayprune``: where trained base models are
    cached (an empty value put the cache in the working directory, a literal ``~`` made a folder of that name)."""
    value = os.environ.get("RAYPRUNE_CACHE", "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "rayprune"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
