"""An optimisation run (fine-tune) as a config section."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .base import Section as _Section

__all__ = ["TrainConfig"]


class TrainConfig(_Section):
    """An optimisation run (fine-tune): exactly one of ``iterations`` and ``epochs``."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = Field(0.01, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    iterations: Optional[int] = Field(None, ge=0)
    epochs: Optional[float] = Field(None, ge=0.0)
    batch_size: int = Field(128, gt=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_length(self) -> "TrainConfig":
        if (self.iterations is None) == (self.epochs is None):
            raise ValueError(
                "exactly one of 'iterations' and 'epochs' must be set; "
                f"got iterations={self.iterations}, epochs={self.epochs}."
            )
        return self

    def engine_config(self):
        """The :class:`rayprune.engine.FineTuneConfig` for this section."""
        from ..engine import FineTuneConfig

        return FineTuneConfig(**self.model_dump(include=set(TrainConfig.model_fields)))
