"""NEON's reward: its three regimes, their boundaries, and the learning scale."""

import pytest

from rayprune.neon.reward import REGIMES, neon_reward, reward_regime, reward_scale


@pytest.mark.parametrize(
    "removed, delta, tau, expected, regime",
    [
        (30.0, -2.0, 1.0, -27000.0, "beyond_tolerance"),  # more than tau lost: -s^3
        (30.0, -1.0, 1.0, 30.0, "within_tolerance"),      # exactly tau lost: still tolerated, +s
        (30.0, -0.4, 1.0, 30.0, "within_tolerance"),
        (30.0, 0.0, 1.0, 30.0, "within_tolerance"),       # no change is not an improvement
        (30.0, 0.3, 1.0, 27000.0, "improved"),            # more accurate than before: +s^3
        (10.0, -4.0, 5.0, 10.0, "within_tolerance"),      # the same loss is fine under a larger tau
        (10.0, -6.0, 5.0, -1000.0, "beyond_tolerance"),
    ],
)
def test_three_regimes(removed, delta, tau, expected, regime):
    assert neon_reward(removed, delta, tolerance=tau) == pytest.approx(expected)
    assert reward_regime(delta, tolerance=tau) == regime
    assert regime in REGIMES


def test_removing_nothing_is_worth_nothing_in_every_regime():
    assert {neon_reward(0.0, d, tolerance=1.0) for d in (-5.0, -0.5, 0.0, 2.0)} == {0.0}


def test_reward_grows_with_the_cut_unless_beyond_tolerance():
    cuts = [10.0, 20.0, 30.0, 40.0]
    for delta in (-0.5, 0.5):
        rewards = [neon_reward(s, delta, tolerance=1.0) for s in cuts]
        assert rewards == sorted(rewards) and rewards[0] > 0
    punished = [neon_reward(s, -3.0, tolerance=1.0) for s in cuts]
    assert punished == sorted(punished, reverse=True) and punished[-1] == -64000.0


@pytest.mark.parametrize("kwargs, match", [
    ({"removed_percent": 120.0, "accuracy_change": 0.0, "tolerance": 1.0}, "removed_percent"),
    ({"removed_percent": 10.0, "accuracy_change": float("nan"), "tolerance": 1.0}, "accuracy_change"),
    ({"removed_percent": 10.0, "accuracy_change": 0.0, "tolerance": -1.0}, "tolerance"),
])
def test_bad_inputs_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        neon_reward(kwargs.pop("removed_percent"), kwargs.pop("accuracy_change"), **kwargs)


def test_scale_maps_the_largest_cut_to_one():
    scale = reward_scale([1.0, 0.9, 0.8, 0.7, 0.6])
    assert neon_reward(40.0, 1.0, tolerance=1.0) * scale == pytest.approx(1.0)
    assert neon_reward(40.0, -9.0, tolerance=1.0) * scale == pytest.approx(-1.0)


def test_fraction_units_are_an_ablation_with_the_same_regimes():
    # s = 0.4 instead of 40: within tolerance pays s, beyond tolerance costs only s**3
    assert neon_reward(40.0, -0.5, tolerance=1.0, units="fraction") == pytest.approx(0.4)
    assert neon_reward(40.0, -3.0, tolerance=1.0, units="fraction") == pytest.approx(-0.064)
    assert neon_reward(40.0, 0.5, tolerance=1.0, units="fraction") == pytest.approx(0.064)
    scale = reward_scale([1.0, 0.9, 0.8, 0.7, 0.6], units="fraction")
    assert neon_reward(40.0, -0.5, tolerance=1.0, units="fraction") * scale == pytest.approx(1.0)
    with pytest.raises(ValueError, match="units"):
        neon_reward(40.0, 0.0, tolerance=1.0, units="permille")
