"""The settings of a NEON episode, defined once.

:class:`EpisodeSettings` is the one definition of what an episode does besides its network, data,
tolerance and seed: the keep fractions, passes, retraining, activation sample, rollback, idle stop
and reward units, with their defaults. Everything else derives from it:

* :class:`~rayprune.neon.episode.PruningEpisode` takes one (``PruningEpisode(model, data, settings)``);
* pretraining builds one from the config (:meth:`EpisodeSettings.from_config`, ``neon`` section);
* a policy records the ones it was trained with (:meth:`to_meta`, ``policy.json`` → ``episode``)
  and prune time reads them back (:meth:`from_meta`);
* the config's ``neon`` fields are the user's spelling of the same settings; a value the config
  leaves unset (``None``) takes the default here, and ``tests/test_neon_episode.py`` checks that
  the config's defaults agree with these.

Example:
    >>> settings = EpisodeSettings(passes=2, rollback=False)
    >>> EpisodeSettings.from_meta(settings.actions, settings.to_meta()) == settings
    True
    >>> EpisodeSettings(passes=0)
    Traceback (most recent call last):
    ...
    ValueError: 'passes' must be an integer >= 1; got 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rayprune.neon.reward import UNITS
from rayprune.neon.training import RetrainSettings

if TYPE_CHECKING:
    from rayprune.data import Dataset
    from rayprune.neon.episode import PruningEpisode

__all__ = ["DEFAULT_ACTIONS", "EpisodeSettings"]

DEFAULT_ACTIONS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6)
"""The method's keep fractions."""


@dataclass(frozen=True)
class EpisodeSettings:
    """How an episode runs; a policy is trained under one and applied under one.

    Attributes:
        actions: keep fractions in (0, 1]; an action is an index into them.
        passes: passes over the hidden layers (the method: one).
        retrain: how the layers a step touched are retrained.
        activation_samples: training samples whose activations describe neurons.
        rollback: undo a step that leaves the network beyond the tolerance (after paying its reward).
        stop_when_idle: end the episode after a pass that changed nothing.
        reward_units: ``s`` in NEON's reward in percent (the method) or as a fraction (an ablation).
    """

    actions: tuple[float, ...] = DEFAULT_ACTIONS
    passes: int = 1
    retrain: RetrainSettings = field(default_factory=RetrainSettings)
    activation_samples: int = 512
    rollback: bool = True
    stop_when_idle: bool = True
    reward_units: str = "percent"

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(float(a) for a in self.actions))
        if not self.actions or any(not 0.0 < a <= 1.0 for a in self.actions):
            raise ValueError(f"'actions' must be keep fractions in (0, 1]; got {list(self.actions)!r}.")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise ValueError(f"'passes' must be an integer >= 1; got {self.passes!r}.")
        if isinstance(self.activation_samples, bool) or not isinstance(self.activation_samples, int) \
                or self.activation_samples < 1:
            raise ValueError(f"'activation_samples' must be an integer >= 1; got {self.activation_samples!r}.")
        if self.reward_units not in UNITS:
            raise ValueError(f"'reward_units' must be one of {list(UNITS)}; got {self.reward_units!r}.")

    @classmethod
    def from_config(cls, neon) -> EpisodeSettings:
        """Pretraining's settings from a :class:`rayprune.config.NeonConfig` (``passes`` and
        ``reward_units`` from ``neon.pretrain``); a value left ``None`` takes the default here."""
        given = {
            "actions": neon.actions, "passes": neon.pretrain.passes,
            "retrain": None if neon.retrain is None else RetrainSettings.from_config(neon.retrain),
            "activation_samples": neon.activation_samples, "rollback": neon.rollback,
            "stop_when_idle": neon.stop_when_idle, "reward_units": neon.pretrain.reward_units,
        }
        return cls(**{name: value for name, value in given.items() if value is not None})

    @classmethod
    def from_meta(cls, actions: Sequence[float], meta: dict[str, Any]) -> EpisodeSettings:
        """The settings a policy was trained with (the inverse of :meth:`to_meta`); keys a policy
        predates take the defaults here."""
        known = {f.name for f in fields(cls)} - {"actions", "retrain"}
        kwargs: dict[str, Any] = {name: meta[name] for name in known if name in meta}
        if "retrain" in meta:
            kwargs["retrain"] = RetrainSettings(**meta["retrain"])
        return cls(actions=tuple(actions), **kwargs)

    def to_meta(self) -> dict[str, Any]:
        """What a policy records about the episodes it was trained in (``policy.json``'s ``episode``;
        the actions are recorded with the policy itself)."""
        return {"passes": self.passes, "activation_samples": self.activation_samples, "retrain": self.retrain.to_dict(),
                "rollback": self.rollback, "stop_when_idle": self.stop_when_idle, "reward_units": self.reward_units}

    def episode(self, model, data: Dataset, *, tolerance: float, seed: int, base_accuracy: float | None = None,
                **options: Any) -> PruningEpisode:
        """A :class:`~rayprune.neon.episode.PruningEpisode` under these settings (``options``:
        ``importance``, ``ignored_layers``)."""
        from rayprune.neon.episode import PruningEpisode  # the episode module imports this one

        return PruningEpisode(model, data, self, tolerance=tolerance, seed=seed, base_accuracy=base_accuracy, **options)
