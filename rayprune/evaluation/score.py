"""How a candidate is scored: the cheap score agents search on, and the short fine-tune that re-ranks.

Two kinds (``search.score`` picks how they are combined, see :mod:`rayprune.search.selection`):

* ``adaptive_bn`` (EagleEye, SEARCH.md): re-estimate every BatchNorm's statistics on
  ``bn_batches × bn_batch_size`` training samples (forward passes only, no gradient step), then
  top-1 accuracy on the first ``eval_samples`` validation samples. A model without BatchNorm is
  scored as pruned (AMC's "no fine-tune" score).
* ``finetune``: BatchNorm re-calibrated (``pruning.recalibrate_bn``), ``finetune`` iterations of
  SGD/Adam, then the same accuracy.

A :class:`ScoreSpec` is plain data (it travels to evaluator actors with every batch) and has a
:attr:`~ScoreSpec.key`: two rows with the same candidate and key are the same measurement.

Example:
    >>> spec = ScoreSpec.adaptive_bn(bn_batches=10, bn_batch_size=64, eval_samples=500)
    >>> spec.key
    'adaptive_bn:10x64:500'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..engine import FineTuneConfig

__all__ = ["ScoreSpec", "SCORE_KINDS", "score_specs"]

#: The score kinds a candidate can be measured with.
SCORE_KINDS = ("adaptive_bn", "finetune")


#: distinct (candidate, score) rows an evaluator and the pool keep for repeats; the oldest go first
#: beyond it (a few KB each: a 10⁵-candidate search must not grow without bound)
SCORE_CACHE_SIZE = 50_000

@dataclass(frozen=True)
class ScoreSpec:
    """One way of scoring a candidate (see the module docstring)."""

    kind: Literal["adaptive_bn", "finetune"]
    eval_samples: Optional[int] = None  # None: the whole validation split
    bn_batches: int = 10
    bn_batch_size: int = 64
    finetune: Optional[FineTuneConfig] = None
    recalibrate_bn: bool = True  # for "finetune": re-estimate BN statistics before training

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"The score kind must be one of {list(SCORE_KINDS)}; got {self.kind!r}.")
        if self.kind == "finetune" and self.finetune is None:
            raise ValueError("A 'finetune' score needs its fine-tune settings ('finetune').")
        for name in ("bn_batches", "bn_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"The score's '{name}' must be a positive integer; got {value!r}.")

    @classmethod
    def adaptive_bn(cls, *, bn_batches: int = 10, bn_batch_size: int = 64,
                    eval_samples: Optional[int] = None) -> "ScoreSpec":
        return cls("adaptive_bn", eval_samples=eval_samples, bn_batches=bn_batches, bn_batch_size=bn_batch_size)

    @classmethod
    def fine_tuned(cls, finetune: FineTuneConfig, *, eval_samples: Optional[int] = None, recalibrate_bn: bool = True,
                   bn_batches: int = 10, bn_batch_size: int = 64) -> "ScoreSpec":
        """A short fine-tune, after BatchNorm statistics re-estimated as adaptive BN does (if ``recalibrate_bn``)."""
        return cls("finetune", eval_samples=eval_samples, finetune=finetune, recalibrate_bn=recalibrate_bn,
                   bn_batches=bn_batches, bn_batch_size=bn_batch_size)

    @property
    def finetune_iterations(self) -> Optional[int]:
        """Fine-tune iterations of this score (0 for adaptive BN; None if given in epochs)."""
        if self.kind == "adaptive_bn":
            return 0
        return self.finetune.iterations

    @property
    def key(self) -> str:
        """Identifies the measurement: equal keys give comparable (and cacheable) scores."""
        samples = "all" if self.eval_samples is None else str(self.eval_samples)
        if self.kind == "adaptive_bn":
            return f"adaptive_bn:{self.bn_batches}x{self.bn_batch_size}:{samples}"
        ft = self.finetune
        length = f"{ft.iterations}it" if ft.iterations is not None else f"{ft.epochs}ep"
        bn = f"{self.bn_batches}x{self.bn_batch_size}" if self.recalibrate_bn else "0"
        return f"finetune:{length}:{ft.optimizer}:{ft.lr:g}:{ft.batch_size}:{ft.schedule}:bn={bn}:{samples}"


def score_specs(cfg) -> tuple[ScoreSpec, Optional[ScoreSpec]]:
    """The search score and the re-rank score (None without a re-rank) of a config's ``search.score``.

    ``two_stage``: search on adaptive BN, re-rank with ``search.finetune`` on the whole validation
    split; ``adaptive_bn`` / ``finetune``: search on that, no re-rank.
    """
    s = cfg.search
    bn = dict(bn_batches=s.adaptive_bn.batches, bn_batch_size=s.adaptive_bn.batch_size)
    cheap = ScoreSpec.adaptive_bn(eval_samples=s.eval_samples, **bn)
    tuned_search = ScoreSpec.fine_tuned(s.finetune.engine_config(), eval_samples=s.eval_samples,
                                        recalibrate_bn=cfg.pruning.recalibrate_bn, **bn)
    if s.score == "finetune":
        return tuned_search, None
    if s.score == "adaptive_bn":
        return cheap, None
    rerank = ScoreSpec.fine_tuned(s.finetune.engine_config(), eval_samples=None,
                                  recalibrate_bn=cfg.pruning.recalibrate_bn, **bn)
    return cheap, rerank
