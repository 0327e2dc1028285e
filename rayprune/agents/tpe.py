"""``tpe``: Optuna's Tree-structured Parzen Estimator through its ask/tell API, one study per level.

Each trial samples a direction in ``[min_keep, 1]^G`` (one float per group); the proposal is that
direction projected onto the level's budget boundary, as random search's, and the study is told
the candidate's score (a failed or over-budget candidate is told as failed). ``constant_liar``
keeps a batch of asks from piling onto one point.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import TPEConfig
from .base import Outcome, Proposal, SearchAgent
from .space import SearchSpace

__all__ = ["TPEAgent"]

_STUDIES_FILE = "tpe_studies.pkl"


def _optuna():
    try:
        import optuna
    except ImportError as err:  # optional: only this agent needs it
        raise ImportError("The 'tpe' agent needs Optuna (a rayprune dependency): pip install optuna.") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class TPEAgent(SearchAgent):
    name = "tpe"
    pipelined = True  # Optuna's constant liar covers the trials of the batch still in flight

    def __init__(self, space: SearchSpace, *, seed: int, batch_size: int, config: TPEConfig) -> None:
        super().__init__(space, seed=seed, batch_size=batch_size)
        optuna = _optuna()
        self.config = config
        self.studies = [
            optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
                seed=self.seed * 1009 + level, n_startup_trials=config.startup, multivariate=config.multivariate,
                constant_liar=True))
            for level in range(space.num_levels)
        ]
        self._dist = optuna.distributions.FloatDistribution(space.min_keep, 1.0)

    def ask(self, n: Optional[int] = None) -> list[Proposal]:
        levels = self.levels_for(self.batch(n))
        trials = [self.studies[level].ask({f"g{i}": self._dist for i in range(self.space.num_groups)})
                  for level in levels]  # every ask first (the projection does not touch the studies)
        directions = [[t.params[f"g{i}"] for i in range(self.space.num_groups)] for t in trials]
        proposals = [Proposal(r, level, {"trial": t.number})
                     for r, level, t in zip(self.space.project_many(directions, levels), levels, trials)]
        self.asked += len(proposals)
        return proposals

    def tell(self, proposals: Sequence[Proposal], outcomes: Sequence[Outcome]) -> None:
        optuna = _optuna()
        for p, o in zip(proposals, outcomes):
            study = self.studies[p.level]
            if o.ok and o.feasible:
                study.tell(p.info["trial"], float(o.score))
            else:
                study.tell(p.info["trial"], state=optuna.trial.TrialState.FAIL)

    # Studies (trials and the sampler's random state) are pickled: resuming continues the same search.
    def save(self, directory: str | Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / _STUDIES_FILE).write_bytes(pickle.dumps(self.studies))

    def restore(self, directory: str | Path) -> None:
        self.studies = pickle.loads((Path(directory) / _STUDIES_FILE).read_bytes())

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict()
