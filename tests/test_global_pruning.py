"""Global pruning (the ``global`` agent): channels ranked across the whole network by their normalised
importance, the least important dropped wherever they are, as few as meet each level.

Plain PyTorch/NumPy (no Ray, no training): spaces built from zoo models with random weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rayprune.agents import SearchSpace, make_agent
from rayprune.config import parse_config
from rayprune.costs.analytic import AnalyticCosts
from rayprune.costs.context import CostContext
from rayprune.costs.levels import Level
from rayprune.pruning import PruningSpace

MIN_KEEP = 0.05


def _levels(base):
    specs = [{"params": 0.5}, {"macs": 0.3}, {"params": 0.25, "macs": 0.2}, {"params": 0.1}, {"params": 1e-6},
             {"params": 2.0}]
    return [Level(name=str(i), values=dict(s), limits={n: v * base[n] for n, v in s.items()}) for i, s in enumerate(specs)]


def _space(model, shape, *, round_to=1, importance="l2", with_scores=True):
    torch.manual_seed(0)
    pspace = PruningSpace(model.eval(), torch.zeros(1, *shape), round_to=round_to, importance=importance)
    analytic = AnalyticCosts(pspace, CostContext(input_shape=shape))
    space = SearchSpace(channels=[g.channels for g in pspace.groups], min_channels=[g.min_channels for g in pspace.groups],
                        round_to=round_to, min_keep=MIN_KEEP, levels=_levels(analytic.base), base_costs=analytic.base,
                        analytic=analytic, importance=[g.scores for g in pspace.groups] if with_scores else None)
    return pspace, space


@pytest.fixture(scope="module")
def vgg(make_model):
    return _space(make_model("vgg11", in_channels=1, width_mult=0.25), (1, 32, 32))


@pytest.mark.parametrize("importance", ["l1", "l2", "bn_scale"])
def test_group_scores_are_normalised_by_the_groups_mean_and_rank_as_the_ranking_does(make_model, importance):
    pspace, _ = _space(make_model("small_cnn", in_channels=1, width_mult=0.5), (1, 8, 8), importance=importance)
    for g in pspace.groups:
        assert g.scores.shape == (g.channels,)
        assert np.mean(np.abs(g.scores)) == pytest.approx(1.0)
        # the ranking is the scores' order, least important first (no concat here: no protected channels)
        assert np.all(np.diff(g.scores[g.ranking]) >= 0)


def test_the_global_candidate_meets_each_level_with_the_fewest_channels_dropped(vgg):
    _, space = vgg
    for li, level in enumerate(space.levels[:4]):
        ratios = space.global_candidate(li)
        counts = space.counts(ratios)
        assert space.meets(ratios, level.limits), level.values
        # keeping the best dropped channel of the network back would miss the level: the threshold is the lowest
        dropped = [(s, gi) for gi, (sc, k) in enumerate(zip(space.importance, counts)) for s in np.sort(sc)[:len(sc) - k]]
        best_score, gi = max(dropped)
        more = list(counts)
        more[gi] += 1
        assert not space.meets([k / c for k, c in zip(more, space.channels)], level.limits)


def test_the_global_candidate_keeps_the_networks_most_important_channels(vgg):
    """Every kept channel scores above every dropped one, across groups (where min_keep did not keep a channel)."""
    _, space = vgg
    for li in range(4):
        counts = space.counts(space.global_candidate(li))
        kept, dropped = [], []
        for sc, k, c in zip(space.importance, counts, space.channels):
            order = np.sort(sc)
            floor = max(1, int(np.ceil(MIN_KEEP * c)))
            if k > floor:  # a group held at its floor keeps channels by the floor, not by the threshold
                kept.extend(order[c - k:])
            dropped.extend(order[:c - k])
        assert kept and dropped and min(kept) > max(dropped)


def test_the_global_candidate_follows_importance_not_layer_order(vgg):
    """Raise one group's scores far above the rest: it keeps all its channels while the others shrink."""
    _, space = vgg
    boosted = [s.copy() for s in space.importance]
    boosted[2] = boosted[2] + 100.0
    other = SearchSpace(channels=space.channels, min_channels=space.min_channels, round_to=space.round_to,
                        min_keep=space.min_keep, levels=space.levels, base_costs=space.base_costs,
                        analytic=space.analytic, importance=boosted)
    plain, raised = space.global_candidate(0), other.global_candidate(0)
    assert raised[2] == 1.0 > plain[2]
    assert sum(raised) - raised[2] < sum(plain) - plain[2]


def test_a_level_nothing_meets_gets_the_smallest_candidate_and_one_everything_meets_the_base(vgg):
    _, space = vgg
    smallest = space.global_candidate(4)  # params 1e-6
    assert space.counts(smallest) == space.counts([MIN_KEEP] * space.num_groups)
    assert space.global_candidate(5) == [1.0] * space.num_groups  # params 2.0


def test_the_global_agent_proposes_one_global_candidate_per_level_then_finishes(vgg):
    _, space = vgg
    search = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"}}).search
    agent = make_agent("global", space, seed=0, search=search)
    proposals = agent.ask()
    assert [p.level for p in proposals] == list(range(space.num_levels))
    assert [p.keep_ratios for p in proposals] == [space.global_candidate(li) for li in range(space.num_levels)]
    assert agent.finished and agent.ask() == []


def test_a_space_without_importance_scores_says_so_and_wrong_lengths_are_refused(make_model, vgg):
    _, space = _space(make_model("small_cnn", in_channels=1, width_mult=0.5), (1, 8, 8), with_scores=False)
    with pytest.raises(ValueError, match="importance score"):
        space.global_candidate(0)
    _, full = vgg
    with pytest.raises(ValueError, match="one score per channel"):
        SearchSpace(channels=full.channels, min_channels=full.min_channels, round_to=1, min_keep=MIN_KEEP,
                    levels=full.levels, base_costs=full.base_costs, analytic=full.analytic,
                    importance=[s[:-1] for s in full.importance])


class _ConvThenLinear(torch.nn.Module):
    """conv-BN, conv-BN, then a hidden Linear group without BatchNorm (which bn_scale does not score)."""

    def __init__(self):
        super().__init__()
        self.f = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU(),
                                     torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.h = torch.nn.Linear(16, 64)
        self.out = torch.nn.Linear(64, 10)

    def forward(self, x):
        return self.out(torch.relu(self.h(self.f(x).mean((2, 3)))))


@pytest.mark.parametrize("round_to", [1, 8])
def test_a_group_the_criterion_does_not_score_is_left_out_of_the_global_ranking(round_to):
    """bn_scale scores no group without BatchNorm; Torch-Pruning's global pruning skips such a group, and so
    does ours (it once ranked it lowest and cut it to min_keep even at 90 % of the parameters)."""
    pspace, space = _space(_ConvThenLinear(), (1, 8, 8), importance="bn_scale", round_to=round_to)
    linear = next(i for i, g in enumerate(pspace.groups) if g.root == "h")
    assert np.isnan(pspace.groups[linear].scores).all()
    loose = Level("params=0.9", {"params": 0.9}, {"params": 0.9 * space.analytic.base["params"]})
    other = SearchSpace(channels=space.channels, min_channels=space.min_channels, round_to=round_to,
                        min_keep=MIN_KEEP, levels=[loose, *space.levels], base_costs=space.base_costs,
                        analytic=space.analytic, importance=space.importance)
    ratios = other.global_candidate(0)
    assert ratios[linear] == 1.0 and min(ratios) < 1.0 and other.meets(ratios, loose.limits)
