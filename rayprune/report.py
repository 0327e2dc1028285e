"""The sweep report: accuracy against each cost (PNG and a self-contained HTML page) and the front table.

``rayprune report DIR`` (and the end of ``rayprune sweep``) reads only files under ``DIR``:
``sweep.json``, ``candidates.parquet`` and ``pareto.parquet``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .names import STAGE_SEARCH, STATUS_OK
from .results import exported_rows
from .text_table import format_table, human

__all__ = ["make_report", "summary_text", "front_table", "agent_table", "trial_table"]


def _load(out: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    from .results import read_candidates, with_current_paths
    from .sweeps.driver import load_state

    state = load_state(out)
    rows = read_candidates(out)  # the shards: complete even when candidates.parquet was not merged yet
    front = pd.read_parquet(out / "pareto.parquet") if (out / "pareto.parquet").is_file() else pd.DataFrame()
    return state, with_current_paths(rows, out), with_current_paths(front, out)  # a sweep moved or copied


def _costs(state: dict[str, Any], rows: pd.DataFrame) -> list[str]:
    base = state["setup"]["base_costs"]
    return [c for c in base if not rows.empty and c in rows.columns]


def _served(rows: pd.DataFrame) -> dict[str, list[str]]:
    """Per exported candidate, the levels it is the model of (a small level's model may serve larger ones)."""
    if rows.empty or "stage" not in rows.columns:
        return {}
    final = exported_rows(rows)
    return {cid: list(g["level"]) for cid, g in final.groupby("candidate_id", sort=False)} if "level" in final else {}


def _tightest(state: dict[str, Any], names: list[str]) -> str:
    """Of the levels ``names``, the one every other contains (the tightest; the first if none is)."""
    from .costs.levels import Level, tightest

    return tightest([Level.from_json(lvl) for lvl in state.get("setup", {}).get("levels", [])], names)


def metric_of(state: dict[str, Any]) -> str:
    """The sweep's metric: ``accuracy``, ``neg_mse`` (regression) or the user's ``search.metric`` (``module:-function``
    when minimised), as :func:`~rayprune.engine.objective.metric_label` names it."""
    from .engine.objective import metric_label

    cfg = state.get("config", {})
    search = cfg.get("search", {})
    return metric_label(cfg.get("data", {}).get("task", "classification"), search.get("metric"),
                        search.get("metric_mode", "max"))


def metric_axis_label(metric: str) -> str:
    """The plot's y label for a sweep's metric.

    >>> metric_axis_label("accuracy"), metric_axis_label("proj.objective:-mae")
    ('validation accuracy (%)', 'validation -mae (higher is better)')
    """
    return "validation accuracy (%)" if metric == "accuracy" else f"validation {metric.rsplit(':', 1)[-1]} (higher is better)"


def format_metric(value: Any, metric: str = "accuracy") -> str:
    """``95.20%`` for accuracy, ``-0.0123`` for any other metric, ``-`` when missing.

    >>> format_metric(0.952), format_metric(-0.01234, "neg_mse"), format_metric(None)
    ('95.20%', '-0.01234', '-')
    """
    if value is None or pd.isna(value):
        return "-"
    return f"{100 * value:.2f}%" if metric == "accuracy" else f"{value:.4g}"


def front_table(state: dict[str, Any], front: pd.DataFrame, rows: pd.DataFrame | None = None) -> str:
    """The base model and every front member: accuracy (val, test) and each cost (absolute and vs base).

    A member is named by the levels whose exported model it is (``params=0.25 (+0.35, 0.5)``: found
    for 0.25, and the best model that fits 0.35 and 0.5 as well)."""
    base_costs, base_acc = state["setup"]["base_costs"], state["setup"]["base_accuracy"]
    costs = list(base_costs)
    served = _served(rows) if rows is not None else {}
    metric = metric_of(state)
    label = "acc" if metric == "accuracy" else metric.rsplit(":", 1)[-1]
    headers = ["model", f"val {label}", f"test {label}", *[f"{c}" for c in costs], *[f"{c}/base" for c in costs]]
    rows_out = [["base", format_metric(base_acc["val"], metric), format_metric(base_acc["test"], metric),
                 *[human(base_costs[c]) for c in costs], *["1.000" for _ in costs]]]
    for _, r in front.iterrows():
        name = r.get("found_for") or r.get("level") or r.get("trial_name") or r.get("trial_id")
        exported = served.get(r.get("candidate_id"), [])
        if exported and name not in exported:  # found for a level it did not end up meeting (re-timed over it)
            name = _tightest(state, exported)
        others = [lvl for lvl in exported if lvl != name]
        if others:
            name = f"{name} (+{', '.join(v.split('=', 1)[-1] if '=' in v else v for v in others)})"
        rows_out.append([name, format_metric(r["accuracy"], metric), format_metric(r.get("accuracy_final"), metric),
                     *[human(r[c]) for c in costs if c in r],
                     *[f"{r[c] / base_costs[c]:.3f}" if base_costs[c] else "-" for c in costs if c in r]])
    return format_table(headers, rows_out)


def _seeds_of(group: pd.DataFrame) -> int:
    return int(group["seed"].nunique()) if "seed" in group.columns else 1


def _several_seeds(rows: pd.DataFrame) -> bool:
    """Whether some agent's search ran more than one trial (seed)."""
    search = _search_rows(rows)
    return not search.empty and "agent" in search.columns and any(
        _seeds_of(group) > 1 for _, group in search.groupby("agent"))


def format_spread(values: Sequence[float], metric: str = "accuracy") -> str:
    """Mean ± sample sd of per-trial values (``-`` when none), in the metric's unit.

    >>> format_spread([0.90, 0.92, 0.94]), format_spread([0.9]), format_spread([-0.5, -0.3], "neg_mse")
    ('92.00 ± 2.00%', '90.00%', '-0.4 ± 0.1414')
    """
    values = [float(v) for v in values if v is not None and not pd.isna(v)]
    if len(values) < 2:
        return format_metric(values[0] if values else None, metric)
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    return f"{100 * mean:.2f} ± {100 * sd:.2f}%" if metric == "accuracy" else f"{mean:.4g} ± {sd:.4g}"


def _search_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[(rows["stage"] == STAGE_SEARCH) & (rows["status"] == STATUS_OK)] if not rows.empty else rows


def agent_table(state: dict[str, Any], rows: pd.DataFrame) -> str:
    """Per agent and level: the best search score among the candidates that fit the level — with several seeds,
    each trial's best as mean ± sd over the agent's seeds (a comparison at equal candidates per trial, not the
    best of all its trials) — and the candidates proposed for the level (all seeds); the final column says which
    agent found each exported model."""
    search = _search_rows(rows)
    if search.empty or "agent" not in search.columns:
        return ""
    from .costs.levels import Level
    from .search.selection import candidates_for, prior_agent

    levels = [Level.from_json(lvl) for lvl in state["setup"].get("levels", [])]
    metric = metric_of(state)
    final = exported_rows(rows)
    table = []
    for agent, group in search.groupby("agent", sort=True):
        cells = []
        for level in levels:
            mine = int((group["level"] == level.name).sum()) if "level" in group.columns else len(group)
            if _seeds_of(group) > 1:
                best = [candidates_for(trial, level)["accuracy"].max() for _, trial in group.groupby("seed")]
                found = sum(1 for b in best if b is not None and not pd.isna(b))
                some = f" [{found}/{len(best)} trials]" if found < len(best) else ""  # the others: nothing fits
                cells.append(f"{format_spread(best, metric)}{some} ({mine})")
                continue
            fit = candidates_for(group, level)
            cells.append(f"{format_metric(fit['accuracy'].max(), metric)} ({mine})" if not fit.empty else f"- ({mine})")
        # every level whose exported model this agent's search scored too (two agents can find the same network)
        won = final[final["candidate_id"].isin(set(group["candidate_id"]))]["level"].tolist() \
            if "candidate_id" in final and "candidate_id" in group else []
        table.append([agent, *cells, ", ".join(won) or "-"])
    if "agent" in final:  # the selection's own structured candidates (weak levels) that won a level
        for agent in sorted(a for a in set(final["agent"].dropna()) if str(a).endswith(prior_agent(""))):
            won = final[final["agent"] == agent]["level"].tolist()
            table.append([agent, *["-" for _ in levels], ", ".join(won)])
    seeds = _seeds_of(search)
    head = "best {} (n)" if seeds <= 1 else f"best {{}} per trial, mean ± sd (n: all {seeds} seeds)"
    return format_table(["agent", *[head.format(lvl.name) for lvl in levels], "exported"], table)


def trial_table(state: dict[str, Any], rows: pd.DataFrame) -> str:
    """One line per trial (agent, seed): its best search score among the candidates that fit each level, and how
    many candidates it scored; empty when every agent ran one seed (the agent table says it all then)."""
    search = _search_rows(rows)
    if not _several_seeds(rows):
        return ""
    from .costs.levels import Level
    from .search.selection import candidates_for

    levels = [Level.from_json(lvl) for lvl in state["setup"].get("levels", [])]
    metric = metric_of(state)
    table = [[agent, str(int(seed)), *[format_metric(candidates_for(trial, level)["accuracy"].max(), metric)
                                  for level in levels], str(len(trial))]
             for (agent, seed), trial in search.groupby(["agent", "seed"], sort=True)]
    return format_table(["agent", "seed", *[f"best {lvl.name}" for lvl in levels], "scored"], table)


def incomplete_note(state: dict, out: Path) -> str:
    """`` -- INCOMPLETE: ...`` for the summary's first line when the sweep did not finish, or finished with failed
    trials (its models then come from a partial search); else empty.

    >>> print(incomplete_note({"status": "finished", "summary": {"failed_trials": []}}, Path("/s")))
    <BLANKLINE>
    >>> print(incomplete_note({"status": "finished", "summary": {"failed_trials": [
    ...     {"trial": "random,seed=0", "evaluations": 64, "error": "ActorDiedError: the actor died"}]}}, Path("/s")))
     -- INCOMPLETE: 1 trial(s) failed before their search ended (random,seed=0 after 64 candidates: ActorDiedError: \
the actor died); these models come from what was scored before them. rayprune sweep --resume --out /s (rayprune \
submit --resume for a submitted sweep) retries them and selects again
    """
    from .names import is_in_memory

    config = state.get("config") or {}
    in_memory = any(is_in_memory((config.get(section) or {}).get("name")) for section in ("model", "data"))
    resume = (f"rayprune.sweep(model, data, out={str(out)!r}, resume=True)" if in_memory else
              f"rayprune sweep --resume --out {out} (rayprune submit --resume for a submitted sweep)")
    if state.get("status") != "finished":
        return f" -- INCOMPLETE: the sweep did not finish ({resume} continues it)"
    failed = (state.get("summary") or {}).get("failed_trials") or []
    if not failed:
        return ""
    return (f" -- INCOMPLETE: {len(failed)} trial(s) failed before their search ended ("
            + "; ".join(f"{f['trial']} after {f['evaluations']} candidates: {f['error']}" for f in failed)
            + f"); these models come from what was scored before them. {resume} retries them and selects again")


def summary_text(out_dir: str | Path) -> str:
    out = Path(out_dir)
    state, rows, front = _load(out)
    n_search = int((rows["stage"] == STAGE_SEARCH).sum()) if not rows.empty else 0
    finals = exported_rows(rows) if not rows.empty else rows
    n_final = len(finals)
    distinct = finals["candidate_id"].nunique() if n_final and "candidate_id" in finals else n_final
    trials = len(state.get("agents", [None])) * int(state.get("seeds", 1))
    status = incomplete_note(state, out.resolve())
    head = (f"sweep {state['setup']['sweep_id']}: {len(state['levels'])} budget level(s), {trials} trial(s) "
            f"({', '.join(state.get('agents', []))} x {state.get('seeds', 1)} seed(s)); {n_search} candidates scored, "
            f"{n_final} models exported" + (f" ({distinct} distinct: a smaller level's model serves a larger one)"
                                              if distinct < n_final else "")
            + f"; Pareto front: {len(front)} model(s){status}")
    agents = agent_table(state, rows)
    weak = missing_level_lines(state) + near_chance_lines(state) + weak_score_lines(state)
    spread = "each trial's best, mean ± sd over its seeds," if _several_seeds(rows) else "best"
    return (head + "\n" + front_table(state, front, rows) + (f"\nsearch, by agent ({spread} cheap score among "
            f"candidates that fit each level; n: proposed for it):\n{agents}" if agents else "")
            + "".join(f"\n{line}" for line in weak) + f"\nreport: {out / 'report.html'}")


def missing_level_lines(state: dict[str, Any]) -> list[str]:
    """One line per level that ended without a model, with the reason (else the level would be absent from the
    tables without a word).

    >>> missing_level_lines({"summary": {"levels": [{"level": "latency_ms=0.23", "candidate_id": None,
    ...     "error": "no scored candidate fits this level"}, {"level": "params=0.5", "candidate_id": "c1"}]}})
    ['latency_ms=0.23: NO MODEL: no scored candidate fits this level']
    """
    return [f"{level['level']}: NO MODEL: {level.get('error') or 'no final model fits this level'}"
            for level in (state.get("summary") or {}).get("levels", []) if level.get("candidate_id") is None]


def near_chance_lines(state: dict[str, Any]) -> list[str]:
    """One line per level whose exported model stays close to chance after its final fine-tune
    (:func:`rayprune.search.score_signal.near_chance_line`): exported, on the front, and not usable."""
    from .search.score_signal import near_chance_line

    lines = [near_chance_line(level["level"], level.get("accuracy_val"), level.get("search_signal"))
             for level in (state.get("summary") or {}).get("levels", []) if level.get("candidate_id") is not None]
    return [line for line in lines if line]


def weak_score_lines(state: dict[str, Any]) -> list[str]:
    """One line per level whose search score barely rose above chance (:mod:`rayprune.search.score_signal`).

    >>> weak_score_lines({"summary": {"levels": [{"level": "params=0.1", "search_signal": {"best": 0.164,
    ...     "chance": 0.1, "base": 0.984, "retained": 0.072, "weak": True}}]}})[0][:60]
    'params=0.1: weak search score (best 16.4 %, chance 10.0 %, b'
    """
    lines = []
    for level in (state.get("summary") or {}).get("levels", []):
        sig = level.get("search_signal") or {}
        if sig.get("weak"):
            lines.append(f"{level['level']}: weak search score (best {100 * sig['best']:.1f} %, chance "
                         f"{100 * sig['chance']:.1f} %, base {100 * sig['base']:.1f} %: {100 * sig['retained']:.0f} % "
                         "of the base's margin over chance): the search could not rank this level's candidates "
                         "(docs/search.md, \"A weak search score\")")
    return lines


def _plot(state: dict[str, Any], rows: pd.DataFrame, front: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base_costs, base_acc = state["setup"]["base_costs"], state["setup"]["base_accuracy"]
    metric = metric_of(state)
    k = 100.0 if metric == "accuracy" else 1.0  # accuracy in %; any other metric as it is
    costs = _costs(state, rows) or list(base_costs)
    fig, axes = plt.subplots(1, len(costs), figsize=(5.2 * len(costs), 4.2), squeeze=False)
    search = _search_rows(rows)
    final = exported_rows(rows)
    # with several agents, each agent's candidates in its own colour (a user comparing searches sees whose are where)
    agents = sorted(search["agent"].dropna().unique()) if not search.empty and "agent" in search.columns else []
    palette = [plt.get_cmap("tab10")(i) for i in (2, 4, 1, 5, 6, 8, 9, 7)]  # not the exported blue nor the front's red
    colours = {a: palette[i % len(palette)] for i, a in enumerate(agents)} if len(agents) > 1 else {}
    for ax, cost in zip(axes[0], costs):
        scale = base_costs[cost] or 1.0
        if not search.empty:
            feas = search[search["feasible"].astype(bool)]
            infeas = search[~search["feasible"].astype(bool)]
            if colours:
                for agent, colour in colours.items():
                    mine = feas[feas["agent"] == agent]
                    ax.scatter(mine[cost] / scale, k * mine["accuracy"], s=9, color=colour, alpha=0.6,
                               label=f"{agent}'s candidates (search score)")
            else:
                ax.scatter(feas[cost] / scale, k * feas["accuracy"], s=9, c="0.6",
                           label="candidates (search score, not fine-tuned)")
            ax.scatter(infeas[cost] / scale, k * infeas["accuracy"], s=9, c="0.85", marker="x", label="over budget")
        if not final.empty:
            ax.scatter(final[cost] / scale, k * final["accuracy"], s=36, c="tab:blue",
                       label="exported (after the final fine-tune)")
        if not front.empty and cost in front.columns:
            f = front.sort_values(cost)
            ax.plot(f[cost] / scale, k * f["accuracy"], "-o", c="tab:red", ms=6, label="Pareto front")
        ax.scatter([1.0], [k * base_acc["val"]], marker="*", s=160, c="black", label="base model", zorder=5)
        for level in state["levels"]:
            if cost in level:
                rel = state["setup"]["relative"].get(cost, True)
                x = level[cost] if rel else level[cost] / scale
                ax.axvline(x, ls="--", lw=0.8, c="tab:green")
        ax.set_xlabel(f"{cost} (fraction of base {human(base_costs[cost])})")
        ax.set_ylabel(metric_axis_label(metric))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"rayprune sweep {state['setup']['sweep_id']} (dashed: budget levels)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def make_report(out_dir: str | Path) -> Path:
    """Write ``report.png`` and ``report.html`` (PNG embedded) under ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    state, rows, front = _load(out)
    png = out / "report.png"
    _plot(state, rows, front, png)
    image = base64.b64encode(png.read_bytes()).decode()
    cols = [c for c in ["level", "agent", "found_for", "accuracy", "accuracy_final", *_costs(state, rows), "keep_counts", "export_path"]
            if c in front.columns]
    shown = front[cols].copy()
    for cost in _costs(state, rows):  # as the text tables write them (12.9k, 250k), not 1.293e+04
        if cost in shown.columns:
            shown[cost] = [human(v) if v is not None and v == v else "" for v in shown[cost]]
    table = shown.to_html(index=False, float_format=lambda v: f"{v:.4g}") if not front.empty else "<p>No feasible model.</p>"
    near, weak = near_chance_lines(state), weak_score_lines(state)
    trials = trial_table(state, rows)
    trials = (f"<h2>Search, by trial</h2><p>Each trial's best search score (the cheap score, before any fine-tune) among the "
              f"candidates that fit each level.</p><pre>{html.escape(trials)}</pre>") if trials else ""
    weak = "".join(f"<h2>{title}</h2><pre>{html.escape(chr(10).join(lines))}</pre>"
                   for title, lines in (("Models near chance", near), ("Weak search scores", weak)) if lines)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>rayprune sweep {html.escape(state['setup']['sweep_id'])}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1200px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}</style>
</head><body><h1>rayprune sweep {html.escape(state['setup']['sweep_id'])}</h1>
<p>{len(state['levels'])} budget level(s); agents {html.escape(', '.join(state.get('agents', [])))} x {state['seeds']} seed(s); {len(rows)} rows in candidates.parquet.</p>
<img alt="the metric against each cost" src="data:image/png;base64,{image}" style="max-width:100%">
<h2>Pareto front (exported models)</h2>{table}
<h2>Summary</h2><pre>{html.escape(front_table(state, front, rows))}</pre>
<h2>Search, by agent</h2><pre>{html.escape(agent_table(state, rows))}</pre>{trials}{weak}</body></html>"""
    path = out / "report.html"
    path.write_text(page)
    return path
