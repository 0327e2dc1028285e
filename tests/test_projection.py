"""The batched proposal path equals the per-candidate one exactly: ``AnalyticCosts.costs_many`` vs
``_costs``, ``keep_counts_many`` vs ``keep_counts``, ``SearchSpace.project_many`` vs ``project``,
and the random, evolution and TPE agents' batches vs their former one-projection-per-candidate asks.

Plain PyTorch/NumPy (no Ray, no training): the spaces are built from zoo models with random weights.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from rayprune.agents import Proposal, SearchSpace, make_agent
from rayprune.agents.base import Outcome
from rayprune.agents.evolution import crossover, mutate, tournament
from rayprune.config import parse_config
from rayprune.costs.analytic import AnalyticCosts
from rayprune.costs.context import CostContext
from rayprune.costs.levels import Level
from rayprune.pruning import PruningSpace
from rayprune.pruning.rounding import keep_counts, keep_counts_many

MIN_KEEP = 0.05


def _levels(base):
    """Params and MACs limits alone and together, a level nothing meets, one everything meets, and a
    black-box budget steered through the MACs proxy."""
    specs = [{"params": 0.5}, {"macs": 0.3}, {"params": 0.25, "macs": 0.2}, {"params": 0.1, "macs": 0.1},
             {"params": 1e-6}, {"params": 2.0, "macs": 2.0}, {"latency_ms": 4.0}, {"params": 0.6, "latency_ms": 3.0}]
    full = {**base, "latency_ms": 10.0}
    return [Level(name=str(i), values=dict(s), limits={n: v * full[n] for n, v in s.items()}) for i, s in enumerate(specs)]


def _search_space(space: PruningSpace, analytic, *, min_keep=MIN_KEEP, levels=None):
    base = analytic.base if analytic is not None else {"params": 1.0, "macs": 1.0}
    return SearchSpace(channels=[g.channels for g in space.groups], min_channels=[g.min_channels for g in space.groups],
                       round_to=space.multiples, min_keep=min_keep, levels=levels or _levels(base),
                       base_costs={**base, "latency_ms": 10.0}, analytic=analytic)


def _build(model, shape, round_to=1):
    torch.manual_seed(0)
    space = PruningSpace(model.eval(), torch.zeros(1, *shape), round_to=round_to)
    return space, AnalyticCosts(space, CostContext(input_shape=shape))


class _Depthwise(nn.Module):
    """conv -> depthwise conv -> pointwise conv -> grouped conv -> linear: depthwise and grouped formulas."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(16, 12, 1), nn.BatchNorm2d(12), nn.ReLU())
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(self.pw(self.dw(self.stem(x))).mean((2, 3)))


@pytest.fixture(scope="module")
def spaces(make_model):
    """name -> (PruningSpace, AnalyticCosts)."""
    from conftest import AttentionNet, ConcatResidualNet, GroupedResidualNet, randomize_batchnorm_

    torch.manual_seed(0)
    concat_net = randomize_batchnorm_(ConcatResidualNet(), seed=0).eval()
    out = {
        "small_cnn": _build(make_model("small_cnn", in_channels=1, width_mult=0.5), (1, 8, 8)),
        "small_cnn_r4": _build(make_model("small_cnn", in_channels=1, width_mult=0.5), (1, 8, 8), round_to=4),
        "vgg11": _build(make_model("vgg11", in_channels=1, width_mult=0.25), (1, 32, 32)),
        "concat": _build(concat_net, (3, 8, 8)),
        "depthwise": _build(_Depthwise(), (3, 8, 8)),
        "grouped": _build(randomize_batchnorm_(GroupedResidualNet(), seed=0), (3, 8, 8), round_to=2),
        "attention": _build(randomize_batchnorm_(AttentionNet(), seed=0), (3, 8, 8)),
    }
    assert all(a.exact for _, a in out.values())
    return out


SPACES = ["small_cnn", "small_cnn_r4", "vgg11", "concat", "depthwise", "grouped", "attention"]


def _random_counts(space: PruningSpace, rng, rows: int) -> np.ndarray:
    low = np.asarray([g.min_channels for g in space.groups])
    high = np.asarray([g.channels for g in space.groups])
    counts = rng.integers(low, high + 1, size=(rows, len(high)))
    counts[0], counts[1] = high, low  # the full model and the smallest
    return counts


# -- costs_many ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SPACES)
def test_costs_many_equals_costs_row_by_row(spaces, name):
    space, analytic = spaces[name]
    counts = _random_counts(space, np.random.default_rng(1), 200)
    params, macs = analytic.costs_many(counts)
    assert params.dtype == macs.dtype == np.float64 and params.shape == macs.shape == (200,)
    expected = [analytic._costs(list(row)) for row in counts]
    assert params.tolist() == [p for p, _ in expected]  # == on floats: bitwise, not approximately
    assert macs.tolist() == [m for _, m in expected]
    assert (params[0], macs[0]) == (analytic.base["params"], analytic.base["macs"])
    # the memo plays no part: a fresh object (as an actor receives it) gives the same values
    clone = pickle.loads(pickle.dumps(analytic))
    assert clone.__dict__.get("_vectors") is None  # numpy lookups are rebuilt, not shipped
    again = clone.costs_many(counts)
    assert again[0].tolist() == params.tolist() and again[1].tolist() == macs.tolist()
    assert [clone._costs(list(r)) for r in counts[:5]] == expected[:5]


def test_costs_many_takes_float_counts_and_rejects_wrong_shapes(spaces):
    space, analytic = spaces["vgg11"]
    counts = _random_counts(space, np.random.default_rng(2), 10)
    ints = analytic.costs_many(counts)
    floats = analytic.costs_many(counts.astype(float))
    assert ints[0].tolist() == floats[0].tolist() and ints[1].tolist() == floats[1].tolist()
    assert [a.size for a in analytic.costs_many(np.zeros((0, space.num_groups), dtype=int))] == [0, 0]
    with pytest.raises(ValueError, match="shape"):
        analytic.costs_many(counts[:, 1:])


def test_costs_many_equals_costs_on_synthetic_formulas():
    """Every kind of compiled layer (weight with and without bias, grouped, depthwise, per-channel,
    constant) with big shapes and fractional fixed parts, where the order of float operations shows."""
    rng = np.random.default_rng(3)
    channels = [7, 64, 129, 96]

    def lookup(c):
        return np.concatenate([[0], np.cumsum(rng.integers(1, 5, size=c))]).tolist()

    compiled = [
        ("channel", 129 * 4, 0, 1, 1, False, 1, False, 3 * 129 * 4 + 1, [(2, lookup(129))], []),
        ("weight", 1000, 7 * 4, 1, 9, True, 3136, False, 0, [(0, lookup(7))], []),
        ("weight", 4096, 1000, 1, 1, False, 1, False, 0, [(1, lookup(64))], [(0, lookup(7)), (2, lookup(129))]),
        ("weight", 96 * 4, 96 * 4, 96 * 4, 9, False, 784, True, 0, [(3, lookup(96))], [(3, lookup(96))]),
        ("weight", 600, 300, 3, 25, True, 12_345, False, 0, [(2, lookup(129)), (1, lookup(64))], [(0, lookup(7))]),
        ("channel", 129 * 4, 0, 1, 1, False, 1, False, 3 * 129 * 4 + 1, [(2, lookup(129))], []),
        ("channel", 97, 0, 1, 1, False, 1, False, 2 * 97, [], []),
        ("weight", 4700, 7, 1, 1, True, 1, False, 0, [(2, lookup(129))], []),  # (p + w) + b != p + (w + b) here
        ("const", 0, 0, 1, 1, False, 1, False, 12_345, [(1, lookup(64))], []),
    ]
    counts = rng.integers(1, np.asarray(channels) + 1, size=(300, len(channels)))
    for layers in [compiled, *([layer] for layer in compiled)]:  # alone, a layer's rounding is not drowned
        analytic = AnalyticCosts.__new__(AnalyticCosts)
        analytic.__dict__.update(_compiled=layers, _channels=channels, _fixed_params=1 / 3, _fixed_macs=1 / 7,
                                 _memo={})
        params, macs = analytic.costs_many(counts)
        expected = [analytic._costs(list(r)) for r in counts]
        assert params.tolist() == [p for p, _ in expected] and macs.tolist() == [m for _, m in expected]


# -- keep_counts_many ------------------------------------------------------------------------------
@pytest.mark.parametrize("round_to", [1, 3, 8])
def test_keep_counts_many_equals_keep_counts(round_to):
    rng = np.random.default_rng(round_to)
    channels = [1, 2, 7, 16, 20, 64, 129, 512]
    floors = [1, 2, 1, 4, 1, 12, 1, 100]
    ratios = rng.uniform(-0.2, 1.2, size=(300, len(channels)))
    edge = [-np.inf, -1.0, 0.0, 1e-12, 1e-9, 0.5 / 64, np.nan, 1.0 - 1e-16, 1.0, np.inf]
    for i, x in enumerate(edge):
        ratios[i] = x
    ratios[len(edge)] = [k / c for k, c in zip([1, 1, 3, 8, 10, 32, 64, 256], channels)]  # exact halves etc.
    ratios[len(edge) + 1] = [(k + 0.5) / c for k, c in zip([0, 1, 3, 7, 10, 31, 64, 255], channels)]
    for mins in (floors, None):
        got = keep_counts_many(ratios, channels, mins, round_to)
        assert got.dtype == np.int64 and got.shape == ratios.shape
        assert got.tolist() == [keep_counts(list(r), channels, mins, round_to) for r in ratios]


def test_keep_counts_many_checks_its_arguments():
    with pytest.raises(ValueError, match="one per prunable group"):
        keep_counts_many([[0.5]], [4, 4])
    with pytest.raises(ValueError, match="channels"):
        keep_counts_many([[0.5]], [0])
    with pytest.raises(ValueError, match="round_to"):
        keep_counts_many([[0.5]], [4], round_to=0)
    assert keep_counts_many(np.zeros((0, 2)), [4, 4]).shape == (0, 2)


# -- project_many ------------------------------------------------------------------------------------
def _directions(num_groups: int, rng, rows: int) -> np.ndarray:
    d = rng.uniform(MIN_KEEP, 1.0, size=(rows, num_groups))
    d[0] = 1.0                                # all ones
    d[1] = MIN_KEEP                           # the lowest everywhere
    d[2, 0] = 1e-6                            # one tiny component (clipped to min_keep)
    d[3] = 0.5                                # a constant direction
    d[4] = rng.uniform(-0.5, 1.5, num_groups)  # out of range both ways
    d[5] = 1.0
    d[5, -1] = MIN_KEEP
    return d


@pytest.mark.parametrize("name", SPACES)
def test_project_many_equals_project(spaces, name):
    space, analytic = spaces[name]
    ss = _search_space(space, analytic)
    if name == "concat":  # floors above one channel (concatenated segments have them)
        ss.min_channels = [max(1, c // 3) for c in ss.channels]
    ss.proxies["latency_ms"].add(0.5, 6.0)   # a fitted proxy, so the black-box levels steer somewhere new
    rng = np.random.default_rng(4)
    dirs = _directions(ss.num_groups, rng, 200)
    levels = rng.integers(0, ss.num_levels, size=len(dirs)).tolist()
    levels[:ss.num_levels] = range(ss.num_levels)
    got = ss.project_many(dirs, levels)
    analytic._memo.clear()
    expected = [ss.project(d, lvl) for d, lvl in zip(dirs, levels)]
    assert got == expected
    assert all(type(x) is float for row in got for x in row)
    # the infeasible level falls back on the lowest candidate; the loose one keeps the direction
    impossible, loose = 4, 5
    assert not any(ss.meets(r, ss.steering_limits(impossible)) for r, lvl in zip(got, levels) if lvl == impossible)
    assert all(r == [1.0] * ss.num_groups for r, lvl in zip(got, levels) if lvl == loose)
    # one level for the whole batch (every row at the top, every row infeasible), and one row at a time
    for lvl in (2, impossible, loose):
        assert ss.project_many(dirs[:40], [lvl] * 40) == [ss.project(d, lvl) for d in dirs[:40]]
    assert [ss.project_many([d], [lvl])[0] for d, lvl in zip(dirs[:20], levels[:20])] == expected[:20]


def test_project_many_without_an_analytic_model_rounds_the_clipped_direction(spaces):
    space, _ = spaces["concat"]
    ss = _search_space(space, None, levels=[Level("p", {"params": 0.5}, {"params": 0.5})])
    dirs = _directions(ss.num_groups, np.random.default_rng(5), 30)
    assert ss.project_many(dirs, [0] * 30) == [ss.project(d, 0) for d in dirs]
    assert ss.project_many([], []) == []
    with pytest.raises(ValueError, match="levels"):
        ss.project_many(dirs, [0])
    with pytest.raises(ValueError, match="one per prunable group"):
        ss.project_many(dirs[:, 1:], [0] * 30)


# -- agents: the same proposals as the per-candidate asks they replaced ------------------------------
def _old_random_ask(agent, n=None):
    levels = agent.levels_for(agent.batch(n))
    proposals = [Proposal(agent.space.project(agent.rng.uniform(agent.space.min_keep, 1.0, agent.space.num_groups), lvl),
                          lvl) for lvl in levels]
    agent.asked += len(proposals)
    return proposals


def _old_evolution_ask(agent, n=None):
    def child(level):
        pop, c = agent.populations[level], agent.config
        if len(pop) < c.population:
            direction = agent.rng.uniform(agent.space.min_keep, 1.0, agent.space.num_groups)
        else:
            scores = [s for s, _ in pop]
            a = pop[tournament(scores, c.tournament, agent.rng)][1]
            b = pop[tournament(scores, c.tournament, agent.rng)][1]
            genes = crossover(a, b, agent.rng) if agent.rng.random() < c.crossover else np.asarray(a, dtype=float)
            direction = mutate(genes, prob=c.mutation_prob, sd=c.mutation_sd, low=agent.space.min_keep, rng=agent.rng)
        return agent.space.project(direction, level)

    proposals = [Proposal(child(lvl), lvl) for lvl in agent.levels_for(agent.batch(n))]
    agent.asked += len(proposals)
    return proposals


def _old_tpe_ask(agent, n=None):
    proposals = []
    for level in agent.levels_for(agent.batch(n)):
        trial = agent.studies[level].ask({f"g{i}": agent._dist for i in range(agent.space.num_groups)})
        direction = [trial.params[f"g{i}"] for i in range(agent.space.num_groups)]
        proposals.append(Proposal(agent.space.project(direction, level), level, {"trial": trial.number}))
    agent.asked += len(proposals)
    return proposals


OLD_ASKS = {"random": _old_random_ask, "evolution": _old_evolution_ask, "tpe": _old_tpe_ask}


def _outcomes(proposals, rounds):
    """Deterministic scores; every fifth candidate over budget, so tells differ by feasibility too."""
    return [Outcome(score=float(np.sum(np.sin(np.arange(1, len(p.keep_ratios) + 1) * np.asarray(p.keep_ratios)))),
                    costs={}, feasible=(i + rounds) % 5 != 0) for i, p in enumerate(proposals)]


@pytest.mark.parametrize("agent_name", list(OLD_ASKS))
@pytest.mark.parametrize("name", ["small_cnn", "vgg11"])
def test_agents_propose_what_the_per_candidate_path_proposed(spaces, name, agent_name):
    space, analytic = spaces[name]
    levels = [lvl for i, lvl in enumerate(_levels(analytic.base)) if i in (0, 2, 4, 6)]
    search = parse_config({"name": "t", "model": {"name": "small_cnn"}, "data": {"name": "digits"},
                           "budgets": {"params": 0.5},
                           "search": {"evaluations": 1000, "batch_size": 12, "evolution": {"population": 4},
                                      "tpe": {"startup": 6}}}).search
    runs = []
    for old in (False, True):
        ss = _search_space(space, analytic, levels=levels)
        agent = make_agent(agent_name, ss, seed=7, search=search)
        asked = []
        for rounds, n in enumerate([None, None, 5, None, None, 1]):
            proposals = OLD_ASKS[agent_name](agent, n) if old else agent.ask(n)
            asked.append([(p.keep_ratios, p.level, p.info) for p in proposals])
            agent.tell(proposals, _outcomes(proposals, rounds))
            ss.observe([{"status": "ok", "keep_counts": ss.counts(p.keep_ratios), "latency_ms": 10.0 * x}
                        for p, x in zip(proposals, np.linspace(0.2, 0.9, len(proposals)))])
        runs.append((asked, agent.state_dict(), ss.state_dict()))
    (new_asked, new_state, new_ss), (old_asked, old_state, old_ss) = runs
    assert new_asked == old_asked
    assert sum(len(b) for b in new_asked) == 12 * 4 + 5 + 1
    assert new_state == old_state and new_ss == old_ss
    # the batches are not degenerate: 18-30 of the 54 are distinct (evolution with a population of 4 on
    # small_cnn's three coarse groups repeats itself most)
    assert len({tuple(r) for batch in new_asked for r, _, _ in batch}) > 15


@pytest.mark.parametrize("agent_name", ["uniform", "global"])
def test_uniform_and_global_bisect_a_measured_budget_on_measurements(spaces, agent_name):
    """A measured budget is aimed at through a proxy proportional to MACs until a measurement arrives: a cost that
    grows with width (a peak activation), not with MACs, was missed by uniform's and global's one proposal, and the
    run ended with no model and all but one evaluation unused. Now they bisect their aim on the measurements."""
    space, analytic = spaces["vgg11"]
    level = Level("latency_ms=0.5", {"latency_ms": 0.5}, {"latency_ms": 5.0})
    ss = _search_space(space, analytic, levels=[level])
    ss.importance = [g.scores for g in space.groups]  # (global pruning ranks channels on them)
    channels = np.asarray(ss.channels, dtype=float)

    def width_cost(counts):  # 10 on the base, linear in the channels kept
        return 10.0 * float(np.sum(counts) / channels.sum())

    search = parse_config({"name": "t", "model": {"name": "small_cnn"}, "data": {"name": "digits"},
                           "budgets": {"params": 0.5}, "search": {"evaluations": 64, "batch_size": 8}}).search
    agent = make_agent(agent_name, ss, seed=0, search=search)
    assert not agent.pipelined  # each aim needs the last measurement
    measured = []
    while not agent.finished and len(measured) < 64:
        twin = None
        if len(measured) == 1:  # a checkpoint mid-bisection resumes the same search
            twin = make_agent(agent_name, ss, seed=0, search=search)
            twin.load_state_dict(json.loads(json.dumps(agent.state_dict())))
        proposals = agent.ask()
        if twin is not None:
            assert [p.keep_ratios for p in twin.ask()] == [p.keep_ratios for p in proposals]
        assert proposals, "not finished, yet nothing to propose"
        rows = [{"status": "ok", "keep_counts": ss.counts(p.keep_ratios),
                 "latency_ms": width_cost(ss.counts(p.keep_ratios))} for p in proposals]
        ss.observe(rows)
        agent.tell(proposals, [Outcome(score=0.5, costs={"latency_ms": r["latency_ms"]},
                                       feasible=r["latency_ms"] <= 5.0) for r in rows])
        measured += [r["latency_ms"] for r in rows]
    assert measured[0] > 5.0  # the blind first aim misses: what one proposal was left with
    assert 2 <= len(measured) <= agent.MAX_AIMS
    fitting = [m for m in measured if m <= 5.0]
    assert fitting and max(fitting) > 4.0  # fits, and not by pruning far more than the budget asks
    restored = make_agent(agent_name, ss, seed=0, search=search)
    restored.load_state_dict(json.loads(json.dumps(agent.state_dict())))
    assert restored.finished and restored.ask() == []
    old_checkpoint = make_agent(agent_name, ss, seed=0, search=search)  # written before the bisection existed
    old_checkpoint.load_state_dict({"asked": 1, "rng": old_checkpoint.rng.bit_generator.state})
    assert old_checkpoint.finished and old_checkpoint.ask() == []
    failing = make_agent(agent_name, ss, seed=0, search=search)  # a failed candidate tells nothing about its costs
    first = failing.ask()
    failed = [Outcome(score=None, costs={}, feasible=False)]
    failing.tell(first, failed)
    ss.macs_aim = lambda level: 0.3  # another level's measurements refitted the proxy in between
    again = failing.ask()  # perhaps transient: the same candidate once more (a failure used to end the level), not
    del ss.macs_aim  # the one the refitted proxy aims at now
    assert [p.keep_ratios for p in again] == [p.keep_ratios for p in first] and not failing.finished
    assert failing._hi == [math.inf]  # bounds untouched
    resumed = make_agent(agent_name, ss, seed=0, search=search)  # a checkpoint between the two tries
    resumed.load_state_dict(json.loads(json.dumps(failing.state_dict())))
    failing.tell(again, failed)
    resumed.tell(again, failed)
    below = failing.ask()  # failed twice: the aim counts as a miss, and the bisection goes on below it
    assert below and [p.keep_ratios for p in resumed.ask()] == [p.keep_ratios for p in below]
    assert failing._hi[0] < math.inf and sum(ss.counts(below[0].keep_ratios)) < sum(ss.counts(first[0].keep_ratios))
    failing.tell(below, [Outcome(score=0.5, costs={"latency_ms": 1.0}, feasible=True)])
    while not failing.finished:  # every later candidate fails: the level ends within MAX_AIMS proposals
        more = failing.ask()
        if not more:
            break
        failing.tell(more, failed * len(more))
    assert failing.finished and failing.asked <= failing.MAX_AIMS + 4
    analytic_levels = _search_space(space, analytic, levels=_levels(analytic.base)[:4])  # analytic budgets only
    analytic_levels.importance = ss.importance
    one = make_agent(agent_name, analytic_levels, seed=0, search=search)  # one proposal per level, as before
    first = one.ask()
    assert len(first) == one.space.num_levels and one.finished and one.pipelined
