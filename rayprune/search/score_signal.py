"""Whether a level's search score can tell its candidates apart: how far above chance its best one scored.

Every agent searches on the cheap score (adaptive-BN accuracy on ``search.eval_samples`` validation
samples). When a budget is tight enough that one-shot pruning breaks every candidate, every score
sits near chance and the search ranks noise: no agent can learn anything there, and the model the
level exports is close to a blind pick from what fits. BENCHMARKS.md ("Is the search blind?") has the
measurement that motivated this: on a converged depthwise-separable CNN at 10 % of its parameters
the best of 85 adaptive-BN scores was 16.4 % (chance 10 %, the base model 98.4 %).

:func:`score_signal` measures one level: the share of the base model's margin over chance that the
level's best search score keeps,

    retained = (best − chance) / (base − chance),

and calls the level's score **weak** when ``retained < WEAK_BELOW``. It is defined for the built-in
accuracy metric of a classification task (chance = 1 / classes); a custom metric or a regression
has no chance level to compare with, and gets no verdict. The verdict is printed with what to do and
stored in the summary (``levels[].search_signal``); it changes a choice only through
``search.rerank.weak_finals`` (several final fine-tunes at a weak level, the best by validation wins).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

__all__ = ["ScoreSignal", "score_signal", "chance_and_base", "WEAK_BELOW", "near_chance_line", "NEAR_CHANCE_BELOW",
           "metric_direction_line", "say_metric_direction", "ABOVE_BASE_SHARE"]

#: a level's best search score keeping less than this share of the base model's margin over chance is
#: called weak. Set on two converged compact CNNs (BENCHMARKS.md "Is the search blind?"), with retained
#: measured as the product measures it (the best of a 512-candidate search): the depthwise-separable
#: CNN keeps 0.28 at 25 % of its parameters, where adaptive BN still ranks the final accuracy (Spearman
#: +0.63), and 0.09-0.11 at 10 %, where it ranks it backwards (-0.41); ResNet-20 (width 0.5) keeps 0.21
#: at 10 % and 0.165 at 5 %, where adaptive BN ranks at only +0.27 and +0.18 (16 candidates each). Any
#: value in (0.21, 0.278] separates both models' levels; the Spearman estimates are coarse.
WEAK_BELOW = 0.25


@dataclass(frozen=True)
class ScoreSignal:
    """One level's search scores against chance and the base model (accuracies as fractions)."""

    best: float
    median: float
    chance: float
    base: float
    candidates: int

    @property
    def retained(self) -> float:
        """Share of the base's margin over chance kept by the best candidate (can be < 0 or > 1).

        >>> ScoreSignal(best=0.625, median=0.3, chance=0.25, base=1.0, candidates=8).retained
        0.5
        """
        margin = self.base - self.chance
        return (self.best - self.chance) / margin if margin > 0 else math.nan

    @property
    def weak(self) -> bool:
        """Whether the best candidate keeps less than :data:`WEAK_BELOW` of the margin (False if undefined)."""
        return bool(self.retained < WEAK_BELOW)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "retained": round(self.retained, 4) if math.isfinite(self.retained) else None,
                "weak": self.weak}

    def advice(self, level: str) -> str:
        """The warning a user reads when the score is weak at ``level``."""
        return (f"warning: {level}: the search score stays close to chance — the best of {self.candidates} "
                f"candidate(s) scored {100 * self.best:.1f} % (median {100 * self.median:.1f} %, chance "
                f"{100 * self.chance:.1f} %, base model {100 * self.base:.1f} %), so one-shot pruning leaves every "
                f"candidate this budget allows far below the base and the search score ranks them poorly. The selection gives several "
                f"of its re-ranked candidates the final fine-tune (search.rerank.weak_finals; with "
                f"search.rerank.weak_uniform, the level's uniform candidate too) and keeps the best by validation. A looser budget moves the level away from this. A score that trains before it measures "
                f"(search.score: finetune) is worth trying: on one converged CNN at such a level, 64 such "
                f"candidates ended +1.1 test points on average against 512 adaptive-BN ones, by seed between -1.5 "
                f"and +6.5 (not resolved; BENCHMARKS.md, 'Is the search blind?'). Another agent searching the same "
                f"scores does not help.")


def score_signal(scores: Sequence[float], *, chance: Optional[float], base: Optional[float]) -> Optional[ScoreSignal]:
    """The :class:`ScoreSignal` of one level's search scores; None without scores or a reference.

    >>> s = score_signal([0.16, 0.13, 0.12], chance=0.1, base=0.98)
    >>> round(s.retained, 3), s.weak
    (0.068, True)
    >>> score_signal([0.9, 0.8], chance=0.1, base=0.98).weak
    False
    >>> score_signal([], chance=0.1, base=0.98) is None, score_signal([0.5], chance=None, base=0.9) is None
    (True, True)
    """
    values = sorted(float(s) for s in scores if s is not None and math.isfinite(float(s)))
    if not values or chance is None or base is None:
        return None
    return ScoreSignal(best=values[-1], median=statistics.median(values), chance=float(chance), base=float(base),
                       candidates=len(values))


def chance_and_base(problem) -> tuple[Optional[float], Optional[float]]:
    """``(chance, base)`` for a problem: ``1 / classes`` and the base model's validation accuracy, for
    the built-in accuracy metric of a classification task; ``(None, None)`` otherwise."""
    objective = getattr(problem, "objective", None)
    data = getattr(problem, "data", None)
    classes = getattr(data, "num_classes", None)
    if (objective is None or objective.custom_metric or objective.metric_name != "accuracy"
            or getattr(data, "task", "classification") != "classification" or not classes or classes < 2):
        return None, None
    base = (getattr(problem, "base_accuracy", None) or {}).get("val")
    return 1.0 / classes, (float(base) if base is not None else None)


#: the share of a search's candidates scoring above the unpruned model that suggests a lower-is-better metric
ABOVE_BASE_SHARE = 0.75


def metric_direction_line(scores: Sequence[Any], base: Optional[float], metric: str) -> Optional[str]:
    """A warning when most candidates (at least 16 scores, :data:`ABOVE_BASE_SHARE` of them) score above the
    unpruned model on a metric of the user's, with no fine-tune yet: pruning rarely helps a model before it is
    fine-tuned, so the metric is most likely lower-is-better (an error, a loss), and rayprune is choosing the worst
    candidates; else None.

    >>> metric_direction_line([0.9] * 20, 0.5, "proj.objective:mae")[:77]
    'search.metric proj.objective:mae: 20 of 20 candidates scored above the unprun'
    >>> metric_direction_line([0.4] * 20, 0.5, "proj.objective:r2") is None
    True
    """
    values = [float(v) for v in scores if v is not None and math.isfinite(float(v))]
    if base is None or len(values) < 16:
        return None
    above = sum(v > base for v in values)
    if above < ABOVE_BASE_SHARE * len(values):
        return None
    return (f"search.metric {metric}: {above} of {len(values)} candidates scored above the unpruned model "
            f"({base:.4g} on validation) before any fine-tune. rayprune maximises the metric; pruning rarely makes "
            "a model better before it is fine-tuned, so if lower is better for this metric (an error, a loss), set "
            "search.metric_mode: min, or the models chosen are the worst ones.")


def say_metric_direction(rows: Any, problem: Any, log: Callable[[str], None]) -> None:
    """:func:`metric_direction_line` for a run's search rows (a metric of the user's, maximised), logged."""
    objective = getattr(problem, "objective", None)
    search = problem.config.search
    if objective is None or not objective.custom_metric or getattr(search, "metric_mode", "max") != "max":
        return
    if getattr(search, "score", "two_stage") == "finetune":  # fine-tuned candidates may well beat a weak base
        return
    ok = rows[(rows["stage"] == "search") & (rows["status"] == "ok")] if {"stage", "status"} <= set(rows.columns) else rows
    if ok.empty or "accuracy" not in ok.columns:
        return
    line = metric_direction_line(ok.drop_duplicates("candidate_id")["accuracy"].tolist() if "candidate_id" in ok.columns
                                 else ok["accuracy"].tolist(), (problem.base_accuracy or {}).get("val"),
                                 objective.metric_name)
    if line:
        log(line)


#: an exported model that keeps less than this share of the base's margin over chance is called out
NEAR_CHANCE_BELOW = 0.25


def near_chance_line(level: str, accuracy: Optional[float], signal: Optional[Mapping[str, Any]]) -> Optional[str]:
    """A line for an exported model whose validation accuracy (after its final fine-tune) keeps less than
    :data:`NEAR_CHANCE_BELOW` of the base's margin over chance, else None (also without a reference: a
    regression, a metric of one's own). ``signal``: the level's ``search_signal`` (its chance and base).

    >>> near_chance_line("params=0.3", 0.287, {"chance": 0.25, "base": 0.828})[:57]
    'params=0.3: NEAR CHANCE: the exported model scores 28.7 %'
    >>> near_chance_line("params=0.5", 0.80, {"chance": 0.25, "base": 0.828}) is None
    True
    """
    if accuracy is None or not signal or signal.get("chance") is None or signal.get("base") is None:
        return None
    chance, base = float(signal["chance"]), float(signal["base"])
    if not (math.isfinite(float(accuracy)) and base > chance):
        return None
    kept = (float(accuracy) - chance) / (base - chance)
    if kept >= NEAR_CHANCE_BELOW:
        return None
    return (f"{level}: NEAR CHANCE: the exported model scores {100 * accuracy:.1f} % on validation after its final "
            f"fine-tune (chance {100 * chance:.1f} %, base {100 * base:.1f} %: {100 * kept:.0f} % of the base's margin "
            f"over chance). It is the best model found that fits the level, not a usable one: check it before "
            f"deploying it; a looser budget, more search.evaluations or a longer search.final_finetune may help")
