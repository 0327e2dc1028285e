"""Ray metrics of a search or sweep (``ray.util.metrics``), shown in the Ray dashboard and Grafana.

Every name starts with ``rayprune_``; Ray's metrics agent exports application metrics to
Prometheus with a ``ray_`` prefix (``ray_rayprune_best_feasible_accuracy``), counters with a
``_total`` suffix. Every metric carries the tags ``sweep``, ``trial`` and ``budget``
(e.g. ``params=0.25``); some add ``status``, ``phase``, ``constraint`` or ``evaluator``.
The names are defined once here and used by the evaluators, the pool, the search loop, the
Grafana dashboard (``dashboards/``) and its test.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = ["METRICS", "BASE_TAGS", "Telemetry", "prometheus_name"]

#: Tag keys every metric carries.
BASE_TAGS = ("sweep", "trial", "budget")

#: name -> (kind, description, extra tag keys, histogram boundaries)
METRICS: dict[str, tuple[str, str, tuple[str, ...], Optional[list[float]]]] = {
    "rayprune_candidates_evaluated": ("counter", "Candidates evaluated, by status (ok, error, cached).", ("status",), None),
    "rayprune_evaluation_seconds": (
        "histogram", "Seconds per candidate evaluation, by phase (total, build, bn, finetune, evaluate, costs).",
        ("phase",), [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300]),
    "rayprune_evaluations_in_flight": ("gauge", "Candidates being evaluated by the pool's actors right now.", (), None),
    "rayprune_evaluations_queued": ("gauge", "Candidates waiting for an idle evaluator.", (), None),
    "rayprune_best_feasible_accuracy": ("gauge", "Best search-time accuracy among feasible candidates so far.", (), None),
    "rayprune_lagrange_multiplier": ("gauge", "Lagrange multiplier of each constraint.", ("constraint",), None),
    "rayprune_constraint_violation_rate": (
        "gauge", "Fraction of the iteration's episodes over budget, per constraint.", ("constraint",), None),
    "rayprune_evaluator_busy_fraction": ("gauge", "Fraction of an evaluator actor's lifetime spent evaluating.",
                                         ("evaluator",), None),
}


def prometheus_name(name: str) -> str:
    """The series name Prometheus sees for metric ``name`` (Ray adds ``ray_``; counters get ``_total``)."""
    kind = METRICS[name][0]
    return f"ray_{name}" + ("_total" if kind == "counter" else "")


class Telemetry:
    """Lazily created Ray metric objects with this search's base tags.

    >>> t = Telemetry({"sweep": "s1", "trial": "t1", "budget": "params=0.25"})   # doctest: +SKIP
    >>> t.gauge("rayprune_best_feasible_accuracy", 0.93)                          # doctest: +SKIP
    """

    def __init__(self, tags: Mapping[str, str]) -> None:
        self.tags = {k: str(tags.get(k, "")) for k in BASE_TAGS}
        self._metrics: dict[str, Any] = {}

    def _metric(self, name: str):
        if name not in self._metrics:
            from ray.util import metrics

            kind, description, extra, boundaries = METRICS[name]
            keys = (*BASE_TAGS, *extra)
            if kind == "counter":
                m = metrics.Counter(name, description=description, tag_keys=keys)
            elif kind == "gauge":
                m = metrics.Gauge(name, description=description, tag_keys=keys)
            else:
                m = metrics.Histogram(name, description=description, boundaries=boundaries, tag_keys=keys)
            m.set_default_tags(self.tags)
            self._metrics[name] = m
        return self._metrics[name]

    def count(self, name: str, value: float = 1.0, **tags: str) -> None:
        self._metric(name).inc(value, tags={k: str(v) for k, v in tags.items()})

    def gauge(self, name: str, value: Optional[float], **tags: str) -> None:
        if value is not None:
            self._metric(name).set(float(value), tags={k: str(v) for k, v in tags.items()})

    def observe(self, name: str, value: Optional[float], **tags: str) -> None:
        if value is not None:
            self._metric(name).observe(float(value), tags={k: str(v) for k, v in tags.items()})
