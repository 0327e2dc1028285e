"""rayprune.search.fixed_cost: the share of a timed cost that pruning cannot remove, from a search's own rows."""

import numpy as np
import pandas as pd

from rayprune.costs.levels import Level
from rayprune.search.fixed_cost import fixed_cost_notes, fixed_share

BASE = {"latency_ms": 2.0, "macs": 1000.0}


def _rows(fixed: float, slope: float, n: int = 40, noise: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.05, 1.0, n)
    share = fixed + slope * x + rng.normal(0, noise, n)
    return pd.DataFrame({"status": "ok", "macs": x * BASE["macs"], "latency_ms": share * BASE["latency_ms"]})


def test_the_line_recovers_the_fixed_part_and_the_macs_a_limit_needs():
    fit = fixed_share(_rows(0.82, 0.3, noise=0.03), "latency_ms", BASE)
    assert abs(fit.fixed - 0.82) < 0.03 and abs(fit.slope - 0.3) < 0.05 and fit.points == 40
    assert abs(fit.needed(0.9) - 0.08 / 0.3) < 0.1  # the user CNN's 90 %: about a quarter of the MACs
    assert fit.needed(0.8) is None  # below the fixed part: pruning alone never reaches it


def test_a_level_near_the_floor_gets_a_note_and_a_cost_that_scales_with_macs_none():
    level = Level("latency_ms=90%", {"latency_ms": 0.9}, {"latency_ms": 0.9 * BASE["latency_ms"]})
    [note] = fixed_cost_notes(_rows(0.82, 0.3), [level], BASE, ["latency_ms"])
    assert "keeps 82 % of the base's latency_ms at zero MACs" in note
    assert "latency_ms=90% needs the MACs down to about 27 % of the base's" in note
    floor = Level("latency_ms=70%", {"latency_ms": 0.7}, {"latency_ms": 0.7 * BASE["latency_ms"]})
    [note] = fixed_cost_notes(_rows(0.82, 0.3), [floor], BASE, ["latency_ms"])
    assert "at or below that floor: pruning alone cannot reach it" in note
    assert fixed_cost_notes(_rows(0.1, 0.9), [level], BASE, ["latency_ms"]) == []  # latency follows the MACs
    params = Level("params=0.5", {"params": 0.5}, {"params": 50.0})
    assert fixed_cost_notes(_rows(0.82, 0.3), [params], BASE, ["latency_ms"]) == []  # no timed limit: nothing to say


def test_too_few_or_too_alike_candidates_say_nothing():
    rows = _rows(0.82, 0.3)
    assert fixed_share(rows.head(5), "latency_ms", BASE) is None  # five points: no line
    bunched = rows.assign(macs=BASE["macs"] * (0.5 + np.arange(len(rows)) * 1e-3))  # all at half the MACs
    assert fixed_share(bunched, "latency_ms", BASE) is None
    assert fixed_share(rows.drop(columns=["macs"]), "latency_ms", BASE) is None
    failed = rows.assign(status="error")
    assert fixed_share(failed, "latency_ms", BASE) is None  # failed candidates have no timing to trust
