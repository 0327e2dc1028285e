"""crl's rewards from scores: standardised, ranked, or risk-seeking (only a level's recent best)."""

import numpy as np
import pytest

from rayprune.agents.crl import RewardNormalizer, centred_rank
from rayprune.config import parse_config


def test_level_mode_standardises_each_level_on_its_own_scores():
    norm = RewardNormalizer(levels=2)
    out = norm([0.9, 0.1, 0.95, 0.2], [0, 1, 0, 1])
    assert out == pytest.approx([-1.0, -1.0, 1.0, 1.0])


def test_rank_mode_is_not_swamped_by_one_outlier():
    scores = [0.80, 0.81, 0.82, 0.83, 0.01]
    ranked = RewardNormalizer(levels=1, mode="rank")(scores, [0] * 5)
    standard = RewardNormalizer(levels=1, mode="level")(scores, [0] * 5)
    assert ranked == pytest.approx([-0.2, 0.0, 0.2, 0.4, -0.4])
    # standardised, the four good scores sit within a tenth of a unit of each other: the outlier set the scale
    assert max(standard[:4]) - min(standard[:4]) < 0.15
    assert max(ranked[:4]) - min(ranked[:4]) == pytest.approx(0.6)


def test_elite_mode_rewards_only_the_levels_top_share_by_its_margin():
    rng = np.random.default_rng(0)
    history = list(rng.uniform(0.0, 1.0, 95))
    norm = RewardNormalizer(levels=1, mode="elite", elite=0.2)
    norm(history, [0] * len(history))
    batch = [0.05, 0.5, 0.7, 0.99, None]
    out = norm(batch, [0] * len(batch))
    h = np.asarray(norm.history[0])
    q = np.quantile(h, 0.8)
    assert out[0] == out[1] == out[4] == 0.0  # below the quantile, or failed
    assert out[3] == pytest.approx((0.99 - q) / h.std())
    assert out[3] > out[2] >= 0.0


def test_the_window_forgets_old_scores():
    norm = RewardNormalizer(levels=1, window=3, mode="rank")
    norm([0.9, 0.9, 0.9], [0, 0, 0])
    assert norm([0.1, 0.2, 0.3], [0, 0, 0]) == pytest.approx([-1 / 3, 0.0, 1 / 3])


def test_centred_rank_ends_and_ties():
    sample = np.array([0.2, 0.4, 0.4, 0.6])
    assert centred_rank(0.1, sample) == -0.5
    assert centred_rank(0.7, sample) == 0.5
    assert centred_rank(0.4, sample) == pytest.approx(0.0)


def test_bad_modes_and_shares_are_refused_with_the_field_named():
    with pytest.raises(ValueError, match="mode"):
        RewardNormalizer(levels=1, mode="z")
    with pytest.raises(ValueError, match="elite"):
        RewardNormalizer(levels=1, elite=0.0)
    with pytest.raises(Exception, match="elite_share"):
        parse_config({"name": "x", "model": {"name": "small_cnn"}, "data": {"name": "digits"},
                      "search": {"crl": {"elite_share": 1.5}}})
