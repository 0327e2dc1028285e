"""The sweep report's tables and plot: how a user comparing agents over several seeds reads them."""

from __future__ import annotations

import doctest

import pandas as pd
import pytest

from rayprune.costs.levels import Level

LOOSE = Level("params=0.5", {"params": 0.5}, {"params": 50.0})
TIGHT = Level("params=0.1", {"params": 0.1}, {"params": 10.0})
STATE = {"setup": {"levels": [LOOSE.to_json(), TIGHT.to_json()], "base_costs": {"params": 100.0},
                   "base_accuracy": {"val": 0.9, "test": 0.9}, "sweep_id": "s", "relative": {"params": True}},
         "levels": [LOOSE.values, TIGHT.values], "agents": ["crl", "random"], "seeds": 2}


def _row(agent: str, seed: int, accuracy: float, params: float, level: str = TIGHT.name) -> dict:
    return {"stage": "search", "status": "ok", "agent": agent, "seed": seed, "level": level, "accuracy": accuracy,
            "params": params, "feasible": True, "candidate_id": f"{agent}{seed}-{accuracy}-{params}"}


def _rows() -> pd.DataFrame:
    return pd.DataFrame([
        _row("crl", 0, 0.80, 9.0), _row("crl", 0, 0.95, 40.0, LOOSE.name),  # crl seed 0: 80 % at the tight level
        _row("crl", 1, 0.70, 8.0), _row("crl", 1, 0.90, 45.0, LOOSE.name),  # crl seed 1: 70 %
        _row("random", 0, 0.99, 30.0),  # proposed for the tight level but over it: fits only the loose one
        _row("random", 0, 0.60, 10.0), _row("random", 1, 0.62, 9.5)])


def test_with_several_seeds_the_agent_table_gives_each_trials_best_as_mean_and_sd_not_the_best_of_all():
    """A user comparing agents over seeds saw the best of all of an agent's trials: an agent with more trials, or
    one lucky seed, looked better than an equal search."""
    from rayprune.report import agent_table

    table = agent_table(STATE, _rows())
    crl = next(x for x in table.splitlines() if x.startswith("crl"))
    random = next(x for x in table.splitlines() if x.startswith("random"))
    assert "75.00 ± 7.07% (2)" in crl and "92.50 ± 3.54% (2)" in crl  # 80/70 at 0.1; 95/90 at 0.5
    assert "61.00 ± 1.41% (3)" in random  # its 99 % candidate is over the tight level
    assert "80.50 ± 26.16% (0)" in random  # none proposed for the loose level, but every candidate under it fits it
    assert "per trial, mean ± sd (n: all 2 seeds)" in table.splitlines()[0]  # the header says n counts every seed
    lost = _rows()[lambda r: ~((r["agent"] == "crl") & (r["seed"] == 1))]  # crl seed 1: nothing fits 0.1
    lost = pd.concat([lost, pd.DataFrame([_row("crl", 1, 0.9, 45.0, LOOSE.name)])], ignore_index=True)
    assert "80.00% [1/2 trials] (1)" in next(x for x in agent_table(STATE, lost).splitlines() if x.startswith("crl"))
    one_seed = _rows()[lambda r: r["seed"] == 0]
    assert "80.00% (1)" in next(x for x in agent_table(STATE, one_seed).splitlines() if x.startswith("crl"))
    assert "(n)" in agent_table(STATE, one_seed).splitlines()[0]


def test_the_trial_table_has_one_line_per_agent_and_seed_and_is_empty_with_one_seed_each():
    from rayprune.report import trial_table

    lines = trial_table(STATE, _rows()).splitlines()
    assert lines[0].split() == ["agent", "seed", "best", "params=0.5", "best", "params=0.1", "scored"]
    assert [x.split() for x in lines[2:]] == [
        ["crl", "0", "95.00%", "80.00%", "2"], ["crl", "1", "90.00%", "70.00%", "2"],
        ["random", "0", "99.00%", "60.00%", "2"], ["random", "1", "62.00%", "62.00%", "1"]]
    assert trial_table(STATE, _rows()[lambda r: r["seed"] == 0]) == ""


def test_the_plot_draws_each_agents_candidates_in_its_own_colour(tmp_path, monkeypatch):
    import matplotlib.figure

    from rayprune import report

    drawn = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, path, **kw: drawn.update(labels=fig.axes[0].get_legend_handles_labels()[1]))
    report._plot(STATE, _rows(), pd.DataFrame(), tmp_path / "p.png")
    assert "crl's candidates (search score)" in drawn["labels"] and "random's candidates (search score)" in drawn["labels"]
    report._plot(STATE, _rows()[lambda r: r["agent"] == "crl"], pd.DataFrame(), tmp_path / "p.png")
    assert "candidates (search score, not fine-tuned)" in drawn["labels"]  # one agent: one colour, as before


def test_the_plot_draws_a_metric_of_ones_own_as_it_is_and_names_it(tmp_path, monkeypatch):
    """A regression sweep's plot said 'validation accuracy (%)' and multiplied minus the MAE by 100."""
    import matplotlib.figure

    from rayprune import report

    drawn = {}

    def keep(fig, path, **kw):
        ax = fig.axes[0]
        drawn.update(label=ax.get_ylabel(), ys=[y for c in ax.collections for _, y in c.get_offsets()])

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    regression = {**STATE, "config": {"data": {"task": "regression"},
                                      "search": {"metric": "proj.objective:mae", "metric_mode": "min"}},
                  "setup": {**STATE["setup"], "base_accuracy": {"val": -0.4, "test": -0.5}}}
    rows = _rows().assign(accuracy=lambda r: -r["accuracy"])
    report._plot(regression, rows, pd.DataFrame(), tmp_path / "p.png")
    assert drawn["label"] == "validation -mae (higher is better)"
    assert min(drawn["ys"]) == pytest.approx(-0.99) and -0.4 in drawn["ys"]  # as recorded, not in per cent
    report._plot(STATE, _rows(), pd.DataFrame(), tmp_path / "p.png")
    assert drawn["label"] == "validation accuracy (%)" and 99.0 in drawn["ys"]


@pytest.mark.parametrize("values", [[0.9], []])
def test_a_spread_of_fewer_than_two_values_is_the_value_itself(values):
    from rayprune.report import format_metric, format_spread

    assert format_spread(values) == format_metric(values[0] if values else None)


def test_the_examples_in_the_docstrings_hold():
    import rayprune.report as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
