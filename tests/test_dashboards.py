"""dashboards/rayprune.json: every query names metrics rayprune exports (rayprune.telemetry, the single
source of truth) with the labels they carry, every exported metric is on some panel, and the dashboard
is importable anywhere (templated Prometheus datasource, unique panel ids).

The series names are the ones Ray's metrics agent exports (checked against a live scrape when the
dashboard was written): ``ray_`` + name, counters with ``_total``, histograms as ``_bucket``/``_sum``/``_count``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from rayprune.telemetry import BASE_TAGS, METRICS, prometheus_name

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "rayprune.json"

#: labels Ray adds to every application metric (plus Prometheus' own target labels)
RAY_LABELS = {"SessionName", "NodeAddress", "Component", "WorkerId", "Version", "instance", "job", "ray_io_cluster"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SERIES = re.compile(r"\b(ray_[A-Za-z0-9_:]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
RANGE_FN = re.compile(r"\b(rate|irate|increase|delta|deriv)\s*\(\s*(ray_[A-Za-z0-9_:]+)")
LEGEND = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dash: dict) -> list[dict]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))  # panels inside collapsed rows
    return out


def series_index() -> dict[str, tuple[str, str]]:
    """Prometheus series name -> (rayprune metric name, part) for everything rayprune exports."""
    index = {}
    for name, (kind, *_rest) in METRICS.items():
        base = prometheus_name(name)
        if kind == "histogram":
            for suffix in HISTOGRAM_SUFFIXES:
                index[base + suffix] = (name, suffix)
        else:
            index[base] = (name, "")
    return index


def labels_of(metric: str, part: str) -> set[str]:
    extra = set(METRICS[metric][2])
    return set(BASE_TAGS) | extra | RAY_LABELS | ({"le"} if part == "_bucket" else set())


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def balanced(expr: str) -> bool:
    pairs, stack = {")": "(", "]": "[", "}": "{"}, []
    for ch in strip_strings(expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack


def expr_problems(expr: str, where: str, used: set[str], legend: str = "") -> list[str]:
    """What is wrong with one PromQL expression; the rayprune metrics it uses are added to ``used``."""
    problems = []
    index = series_index()
    if not expr.strip():
        return [f"{where}: empty query"]
    if not balanced(expr):
        problems.append(f"{where}: unbalanced brackets in {expr!r}")
    available: set[str] = set()
    found = SERIES.findall(expr)
    if not found:
        problems.append(f"{where}: names no ray_ metric: {expr!r}")
    for series, selector in found:
        if series not in index:
            problems.append(f"{where}: {series} is not a series rayprune exports "
                            f"(known: {sorted(index)})")
            continue
        metric, part = index[series]
        used.add(metric)
        allowed = labels_of(metric, part)
        available |= allowed
        for label, _op, _value in MATCHER.findall(selector or ""):
            if label not in allowed:
                problems.append(f"{where}: {series} has no label {label!r} (it has {sorted(allowed - RAY_LABELS)})")
    for series_fn, series in RANGE_FN.findall(expr):
        if series in index and METRICS[index[series][0]][0] == "gauge":
            problems.append(f"{where}: {series_fn}() of the gauge {series}")
    for group in GROUPING.findall(expr):
        for label in filter(None, (g.strip() for g in group.split(","))):
            if label not in available:
                problems.append(f"{where}: groups by {label!r}, which none of its metrics carries")
    if "histogram_quantile" in expr and not re.search(r"by\s*\([^)]*\ble\b", expr):
        problems.append(f"{where}: histogram_quantile without `le` in its grouping")
    for label in LEGEND.findall(legend):
        groups = {g.strip() for group in GROUPING.findall(expr) for g in group.split(",")}
        if label not in (groups or available):
            problems.append(f"{where}: legend {{{{{label}}}}} is not a label of the result")
    return problems


def dashboard_problems(dash: dict) -> list[str]:
    problems: list[str] = []
    used: set[str] = set()
    for key in ("title", "uid", "panels", "templating", "schemaVersion"):
        if key not in dash:
            problems.append(f"dashboard has no {key!r}")
    variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
    ds = variables.get("datasource")
    if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
        problems.append("no templated Prometheus datasource variable `datasource`")
    for name, var in variables.items():
        if var.get("type") == "query":
            query = var["query"]["query"] if isinstance(var.get("query"), dict) else var.get("query", "")
            problems += expr_problems(re.sub(r"^label_values\(|\)$", "", query.strip()), f"variable {name}", set())
            if var.get("datasource", {}).get("uid") != "${datasource}":
                problems.append(f"variable {name}: datasource is not ${{datasource}}")
    ids: dict[int, str] = {}
    panels = all_panels(dash)
    for p in panels:
        title = p.get("title", "?")
        if "id" not in p:
            problems.append(f"panel {title!r} has no id")
        elif p["id"] in ids:
            problems.append(f"panel id {p['id']} used by {ids[p['id']]!r} and {title!r}")
        else:
            ids[p["id"]] = title
        grid = p.get("gridPos", {})
        if not (0 <= grid.get("x", -1) and grid.get("x", 99) + grid.get("w", 99) <= 24 and grid.get("h", 0) > 0):
            problems.append(f"panel {title!r}: bad gridPos {grid}")
        if p.get("type") == "row":
            continue
        if not p.get("targets"):
            problems.append(f"panel {title!r} has no queries")
        for source in [p.get("datasource")] + [t.get("datasource") for t in p.get("targets", [])]:
            if not isinstance(source, dict) or source.get("uid") != "${datasource}" or source.get("type") != "prometheus":
                problems.append(f"panel {title!r}: datasource {source!r} is not the templated ${{datasource}}")
        for t in p.get("targets", []):
            problems += expr_problems(t.get("expr", ""), f"panel {title!r} ({t.get('refId')})", used,
                                      t.get("legendFormat", ""))
    for metric in METRICS:
        if metric not in used:
            problems.append(f"{metric} ({prometheus_name(metric)}) is on no panel")
    return problems


def test_every_query_names_exported_metrics_and_every_metric_is_shown():
    problems = dashboard_problems(load())
    assert not problems, "\n".join(problems)


def test_the_dashboard_covers_what_the_issue_asks_for():
    titles = " | ".join(p["title"].lower() for p in all_panels(load()))
    for words in ("best feasible accuracy per budget", "lagrange multipliers", "candidates evaluated per second",
                  "evaluation time", "in flight", "busy fraction", "errors", "violation rate"):
        assert words in titles, words
    exprs = [t["expr"] for p in all_panels(load()) for t in p.get("targets", [])]
    assert any('status="error"' in e for e in exprs), "an errors panel filters status=\"error\""


def _targets(dash):
    return [t for p in all_panels(dash) for t in p.get("targets", [])]


def _drop_metric(metric):
    def mutate(dash):
        for p in dash["panels"]:
            p["targets"] = [t for t in p.get("targets", []) if metric not in t["expr"]]
    return mutate


BROKEN = {
    "unknown metric": (lambda d: _targets(d)[0].update(expr="max(ray_rayprune_best_accuracy)"),
                       "not a series rayprune exports"),
    "counter without _total": (lambda d: _targets(d)[0].update(
        expr="sum(rate(ray_rayprune_candidates_evaluated[5m]))"), "not a series rayprune exports"),
    "histogram without suffix": (lambda d: _targets(d)[0].update(
        expr="histogram_quantile(0.5, sum by (le) (rate(ray_rayprune_evaluation_seconds[5m])))"),
        "not a series rayprune exports"),
    "metric on no panel": (_drop_metric("ray_rayprune_lagrange_multiplier"), "is on no panel"),
    "duplicate panel id": (lambda d: d["panels"][2].update(id=d["panels"][1]["id"]), "used by"),
    "hard-coded datasource": (lambda d: d["panels"][1].update(datasource={"type": "prometheus", "uid": "P1809F7CD0C75ACF3"}),
                              "not the templated"),
    "no datasource variable": (lambda d: d["templating"].update(
        list=[v for v in d["templating"]["list"] if v["name"] != "datasource"]), "datasource variable"),
    "label the metric lacks": (lambda d: _targets(d)[0].update(
        expr='max(ray_rayprune_best_feasible_accuracy{constraint="params"})'), "has no label 'constraint'"),
    "grouping by a missing label": (lambda d: _targets(d)[0].update(
        expr="max by (phase) (ray_rayprune_best_feasible_accuracy)"), "groups by 'phase'"),
    "rate of a gauge": (lambda d: _targets(d)[0].update(
        expr="sum(rate(ray_rayprune_evaluations_queued[5m]))"), "rate() of the gauge"),
    "quantile without le": (lambda d: _targets(d)[0].update(
        expr="histogram_quantile(0.9, sum by (phase) (rate(ray_rayprune_evaluation_seconds_bucket[5m])))"),
        "without `le`"),
    "unbalanced": (lambda d: _targets(d)[0].update(expr="max(ray_rayprune_best_feasible_accuracy"), "unbalanced"),
    "legend label not in result": (lambda d: _targets(d)[0].update(legendFormat="{{constraint}}"), "legend"),
}


@pytest.mark.parametrize("mutation", list(BROKEN))
def test_a_broken_dashboard_is_caught(mutation):
    dash = copy.deepcopy(load())
    mutate, expected = BROKEN[mutation]
    mutate(dash)
    problems = dashboard_problems(dash)
    assert any(expected in p for p in problems), problems


def test_series_names_follow_rays_export_rules():
    # what the dashboard's names rest on: Ray adds `ray_`, counters end in `_total` (seen in a live scrape)
    assert prometheus_name("rayprune_candidates_evaluated") == "ray_rayprune_candidates_evaluated_total"
    assert prometheus_name("rayprune_evaluation_seconds") == "ray_rayprune_evaluation_seconds"
    assert prometheus_name("rayprune_best_feasible_accuracy") == "ray_rayprune_best_feasible_accuracy"
    assert all(name.startswith("rayprune_") for name in METRICS)
