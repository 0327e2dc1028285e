"""The black-box cost proxy that steers proposals through MACs (rayprune.agents.space.ProxyFit)."""

import doctest

import numpy as np

from rayprune.agents import space
from rayprune.agents.space import ProxyFit


def test_the_docstring_examples_hold():
    assert doctest.testmod(space, extraglobs={}, optionflags=doctest.ELLIPSIS).failed == 0


def test_no_rows_aims_proportionally_to_macs():
    assert ProxyFit(base=8.0).x_for(2.0) == 0.25


def test_a_first_batch_at_one_macs_level_rescales_the_proportional_model_whatever_its_tilt():
    # a first batch clustered at 40 % MACs whose cost is 55 % of base; scatter tilts the line downwards
    rng = np.random.default_rng(0)
    fit = ProxyFit(base=10.0)
    for x in 0.40 + 0.005 * rng.standard_normal(8):
        fit.add(float(x), 5.5 - 20 * (x - 0.40) + 0.1 * rng.standard_normal())
    assert fit._fit()[1] < 0  # the raw line falls: it cannot steer
    a, b = fit.coefficients()
    assert a == 0.0 and abs(b - 13.75) < 0.5  # through the origin, from the rows
    # aiming at 40 % of base: well below the 40 % MACs the batch sat at (the base's ratio would say 40 %)
    assert fit.x_for(4.0) < 0.30


def test_a_rising_line_over_a_wide_span_is_used_with_its_spread():
    fit = ProxyFit(base=10.0)
    for x, c in [(0.2, 4.1), (0.4, 5.9), (0.6, 8.1), (0.8, 9.9)]:
        fit.add(x, c)
    a, b = fit.coefficients()
    assert abs(b - 9.7) < 0.2 and abs(a - 2.1) < 0.2
    assert fit.spread() > 0
    assert fit.x_for(6.0) < (6.0 - a) / b  # aims below the line by one spread


def test_a_cost_that_does_not_grow_with_macs_stops_steering_once_spread_out():
    fit = ProxyFit(base=10.0)
    for i in range(8):
        fit.add(0.3 + 0.05 * i, 5.0 - 0.1 * i)
    assert not fit.steers()
    clustered = ProxyFit(base=10.0)
    for i in range(8):
        clustered.add(0.40 + 0.001 * i, 5.0 - 0.1 * i)
    assert clustered.steers()  # too narrow a span to conclude anything yet


def test_non_finite_or_missing_costs_are_ignored():
    fit = ProxyFit(base=10.0)
    fit.add(0.5, float("nan"))
    fit.add(0.5, None)
    fit.add(float("inf"), 3.0)
    assert fit.xs == [] and fit.x_for(5.0) == 0.5
