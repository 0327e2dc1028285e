"""Unit tests of the Lagrange multiplier (no RL, no Ray)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from rayprune.agents.lagrange import Lagrange, LagrangeSet, inverse_softplus, softplus


def test_starts_at_init():
    assert Lagrange(0.3, init=2.5).value == pytest.approx(2.5, rel=1e-12)


def test_rises_while_cost_over_budget():
    lam = Lagrange(budget=0.3)
    values = [lam.update(mean_cost=0.8) for _ in range(5)]
    assert values[0] > 1.0
    assert all(later > earlier for earlier, later in zip(values, values[1:]))


def test_falls_toward_zero_under_budget_and_never_negative():
    lam = Lagrange(budget=0.3)
    values = [lam.update(mean_cost=0.1) for _ in range(200)]
    assert values[0] < 1.0
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))
    assert all(v >= 0.0 for v in values)
    assert values[-1] < 1e-3


def test_stops_at_the_softplus_floor():
    lam = Lagrange(budget=0.3, init=1e-7)
    values = [lam.update(mean_cost=0.0) for _ in range(10)]
    assert min(values) == pytest.approx(Lagrange.FLOOR, rel=1e-9)
    assert values[-1] == pytest.approx(Lagrange.FLOOR, rel=1e-9)


def test_min_value_floors_the_multiplier():
    lam = Lagrange(budget=0.3, min_value=0.5)
    for _ in range(50):
        lam.update(mean_cost=0.0)
    assert lam.value == pytest.approx(0.5, rel=1e-9)


def test_matches_torch_adam_on_the_dual_loss():
    """Same trajectory as the authors' DualVariable: Adam on loss -softplus(θ)·(c - b)."""
    budget, costs = 0.3, [0.9, 0.7, 0.2, 0.05, 0.5, 0.31, 0.0]
    theta = torch.nn.Parameter(torch.tensor(inverse_softplus(1.0), dtype=torch.float64))
    adam = torch.optim.Adam([theta], lr=1.0)
    lam = Lagrange(budget, init=1.0, lr=1.0)
    for cost in costs:
        adam.zero_grad()
        (-F.softplus(theta) * (cost - budget)).backward()
        adam.step()
        assert lam.update(cost) == pytest.approx(F.softplus(theta).item(), rel=1e-9)
        assert lam.loss(cost) == pytest.approx(-lam.value * (cost - budget))


def test_state_round_trip_restores_exactly():
    lam = Lagrange(budget=0.3, init=0.7, lr=0.5)
    for cost in (0.9, 0.1, 0.6):
        lam.update(cost)
    state = copy.deepcopy(lam.state_dict())
    twin = Lagrange(budget=0.3, init=3.0, lr=0.5)
    twin.load_state_dict(state)
    assert twin.value == lam.value and twin.state_dict() == lam.state_dict()
    # The optimiser state came along: both continue identically.
    for cost in (0.8, 0.0, 0.4):
        assert twin.update(cost) == lam.update(cost)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"budget": math.nan}, "budget"),
        ({"budget": math.inf}, "budget"),
        ({"budget": 0.3, "lr": -1.0}, "lr"),
        ({"budget": 0.3, "lr": math.nan}, "lr"),
        ({"budget": 0.3, "init": 0.0}, "init"),
        ({"budget": 0.3, "min_value": -0.1}, "min_value"),
        ({"budget": 0.3, "init": 1.0, "min_value": 2.0}, "min_value"),
    ],
)
def test_invalid_arguments_name_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        Lagrange(**kwargs)


def test_a_zero_learning_rate_is_a_fixed_penalty():
    lam = Lagrange(budget=0.3, init=0.7, lr=0.0)
    for cost in (0.8, 0.0, 5.0, 0.3):
        assert lam.update(cost) == pytest.approx(0.7, rel=1e-12)


def test_update_rejects_non_finite_cost():
    with pytest.raises(ValueError, match="'mean_cost'"):
        Lagrange(0.3).update(math.nan)


def test_softplus_inverse_round_trip_and_no_overflow():
    for nu in (1e-8, 0.3, 1.0, 50.0):
        assert softplus(inverse_softplus(nu)) == pytest.approx(nu, rel=1e-9)
    assert softplus(1000.0) == 1000.0 and 0.0 < softplus(-700.0) < 1e-300


def test_lagrange_set_updates_each_constraint_on_its_own_cost():
    lams = LagrangeSet({"params": 0.3, "latency": 0.05})
    values = lams.update({"params": 0.9, "latency": 0.0})
    assert list(values) == ["params", "latency"]
    assert values["params"] > 1.0 > values["latency"]
    assert lams.update([0.9, 0.0]) == lams.values()
    assert lams.as_list() == list(lams.values().values())

    twin = LagrangeSet({"params": 0.3, "latency": 0.05})
    twin.load_state_dict(copy.deepcopy(lams.state_dict()))
    assert twin.values() == lams.values()


def test_lagrange_set_rejects_mismatched_inputs():
    lams = LagrangeSet({"params": 0.3})
    with pytest.raises(ValueError, match="'mean_costs'"):
        lams.update({"latency": 0.1})
    with pytest.raises(ValueError, match="'mean_costs'"):
        lams.update([0.1, 0.2])
    with pytest.raises(ValueError, match="'state'"):
        lams.load_state_dict({"latency": {}})
    with pytest.raises(ValueError, match="'budgets'"):
        LagrangeSet({})


def test_the_examples_in_the_module_docstring_hold():
    """The README's test command does not collect doctests; the module's examples (a fixed penalty at lr 0 among
    them) run here."""
    import doctest

    import rayprune.agents.lagrange as module

    result = doctest.testmod(module)
    assert result.failed == 0 and result.attempted > 0
