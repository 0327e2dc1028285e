"""Tests for structured pruning (rayprune.pruning): rounding, the pruning space, importance, plans."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from rayprune.costs import count_params
from rayprune.errors import UserError
from rayprune.pruning import (
    PruningPlan,
    PruningSpace,
    apply_plan,
    check_keep_ratio,
    keep_channels,
)

# Zoo models small enough for tracing twice per case on 2 CPU cores:
# name -> (build_model kwargs, one sample's input shape).
ZOO_CASES = {
    "vgg11": ({"width_mult": 0.25}, (3, 32, 32)),
    "vgg16": ({"width_mult": 0.25}, (3, 32, 32)),
    "resnet18": ({"width_mult": 0.25}, (3, 32, 32)),
    "resnet20": ({}, (3, 32, 32)),
    "resnet56": ({"width_mult": 0.5}, (3, 32, 32)),
    "small_cnn": ({"in_channels": 1}, (1, 28, 28)),
    "mlp": ({"in_features": 20, "hidden_sizes": (32, 24), "pre_layer": "batchnorm"}, (20,)),
}
NUM_CLASSES = 10
# The ``concat_net`` fixture (conftest.py): input (N, 3, 8, 8), 5 classes.
CONCAT_SHAPE, CONCAT_CLASSES = (3, 8, 8), 5


def out_channels(module: nn.Module) -> int:
    return module.out_features if isinstance(module, nn.Linear) else module.out_channels


def random_ratios(n: int, seed: int) -> list[float]:
    return np.random.default_rng(seed).uniform(0.05, 1.0, n).tolist()


def ratios_for(setting: str, space: PruningSpace):
    """A keep-ratio setting by name: ``uniform:<r>`` or ``random:<seed>``."""
    kind, value = setting.split(":")
    return float(value) if kind == "uniform" else random_ratios(space.num_groups, int(value))


@torch.no_grad()
def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


# -- rounding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ratio", "channels", "round_to", "expected"),
    [
        (0.5, 64, 8, 32),  # exact multiple
        (0.3, 64, 8, 16),  # 19.2 -> 16
        (0.35, 64, 8, 24),  # 22.4 -> 24 (nearest multiple, not floor)
        (0.01, 64, 8, 8),  # never below one multiple
        (0.01, 64, 1, 1),  # never below one channel
        (0.1, 5, 1, 1),  # 0.5 -> 1 (half up, at least 1)
        (1.0, 20, 8, 20),  # ratio 1 keeps the full layer, not 16 or 24
        (1.0, 7, 4, 7),
        (0.99, 20, 8, 16),  # 19.8 -> 16: only ratio 1 forces every channel
        (0.5, 5, 8, 5),  # one multiple exceeds the layer: clipped to the layer
        (0.3, 1, 1, 1),
        # Halves round up; Python's round() (banker's rounding) would give the second value.
        (0.5, 5, 1, 3),  # 2.5 -> 3, not 2
        (0.625, 4, 1, 3),  # 2.5 -> 3, not 2
        (0.3125, 64, 8, 24),  # 20 / 8 = 2.5 multiples -> 3 (24), not 2 (16)
        (0.625, 64, 16, 48),  # 40 / 16 = 2.5 -> 3 multiples
        (0.375, 4, 1, 2),  # 1.5 -> 2
    ],
)
def test_keep_channels_table(ratio, channels, round_to, expected):
    assert keep_channels(ratio, channels, round_to) == expected


def test_keep_channels_is_a_multiple_or_the_full_layer():
    for channels in (1, 3, 8, 13, 64, 100):
        for round_to in (1, 4, 8):
            for ratio in np.linspace(0.01, 1.0, 37):
                k = keep_channels(float(ratio), channels, round_to)
                assert 1 <= k <= channels
                assert k % round_to == 0 or k == channels
                assert k >= min(round_to, channels)


@pytest.mark.parametrize(("bad", "shown"), [(0, "0"), (-0.1, "-0.1"), (1.5, "1.5"), (float("nan"), "nan")])
def test_check_keep_ratio_rejects_out_of_range(bad, shown):
    with pytest.raises(ValueError, match=r"\(0, 1\]") as info:
        check_keep_ratio(bad, name="keep ratio of group 3")
    assert f"got {shown}" in str(info.value)
    assert "keep ratio of group 3" in str(info.value)
    with pytest.raises(ValueError, match=re.escape(shown)):
        keep_channels(bad, 16)


def test_check_keep_ratio_rejects_non_numbers():
    with pytest.raises(TypeError, match="'abc'"):
        check_keep_ratio("abc")
    with pytest.raises(TypeError, match="None"):
        check_keep_ratio(None)


def test_check_keep_ratio_accepts_the_interval():
    assert check_keep_ratio(1) == 1.0 and isinstance(check_keep_ratio(1), float)
    assert check_keep_ratio(1e-6) == 1e-6
    assert check_keep_ratio(np.float32(0.5)) == 0.5


# -- zoo models: fast path against plain Torch-Pruning -------------------------------------------


@pytest.fixture(scope="module")
def zoo_spaces(make_model):
    """(model name, round_to) -> (base model, input batch, space), traced once per module."""
    cache: dict = {}

    def get(name: str, round_to: int = 1):
        if (name, round_to) not in cache:
            kwargs, shape = ZOO_CASES[name]
            model = make_model(name, num_classes=NUM_CLASSES, **kwargs)
            x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
            cache[name, round_to] = (model, x, PruningSpace(model, x, round_to=round_to))
        return cache[name, round_to]

    return get


SETTINGS = [
    ("uniform:0.3", 1),
    ("uniform:0.5", 8),
    ("uniform:0.9", 1),
    ("uniform:0.9", 8),
    ("random:0", 1),
    ("random:1", 8),
]


@pytest.mark.parametrize(("setting", "round_to"), SETTINGS, ids=[f"{s}-r{r}" for s, r in SETTINGS])
@pytest.mark.parametrize("name", list(ZOO_CASES))
def test_zoo_candidate_matches_torch_pruning(zoo_spaces, name, setting, round_to):
    base, x, space = zoo_spaces(name, round_to)
    ratios = ratios_for(setting, space)
    counts = space.keep_counts(ratios)
    fast = space.build(ratios)
    reference = space.build_retrace(ratios)

    # Runs and still predicts every class.
    y = forward(fast, x)
    assert y.shape == (x.shape[0], NUM_CLASSES)
    assert out_channels(fast.get_submodule(space.output_layers[0])) == NUM_CLASSES
    assert space.output_layers == ["classifier"]

    # Each group root keeps exactly the rounded count; pruning makes the model physically smaller.
    for group in space.groups:
        assert out_channels(fast.get_submodule(group.root)) == counts[group.index], group.root
        assert counts[group.index] % round_to == 0 or counts[group.index] == group.channels
    if any(k < g.channels for k, g in zip(counts, space.groups)):
        assert count_params(fast) < count_params(base)
    else:
        assert count_params(fast) == count_params(base)

    # The fast path builds the same network as re-tracing and pruning with Torch-Pruning.
    assert count_params(fast) == count_params(reference)
    fast_state, ref_state = fast.state_dict(), reference.state_dict()
    assert fast_state.keys() == ref_state.keys()
    for key in fast_state:
        assert fast_state[key].shape == ref_state[key].shape, key
        assert torch.equal(fast_state[key], ref_state[key]), key
    torch.testing.assert_close(y, forward(reference, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(ZOO_CASES))
def test_keep_ratio_one_is_the_base_model(zoo_spaces, name):
    base, x, space = zoo_spaces(name)
    assert len(space.plan(1.0)) == 0
    assert space.keep_counts(1.0) == [g.channels for g in space.groups]
    full = space.build(1.0)
    assert count_params(full) == count_params(base)
    torch.testing.assert_close(forward(full, x), forward(base, x), atol=0, rtol=0)


@pytest.mark.parametrize("name", ["vgg11", "resnet20"])
def test_groups_cover_the_expected_layers(zoo_spaces, name):
    _, _, space = zoo_spaces(name)
    roots = [g.root for g in space.groups]
    assert [g.index for g in space.groups] == list(range(space.num_groups))
    assert len(set(roots)) == len(roots)
    assert "classifier" not in roots
    if name == "vgg11":  # one group per conv: 8 convs
        assert roots == [f"features.{i}" for i in (0, 4, 8, 11, 15, 18, 22, 25)]
    else:
        # ResNet20: 9 block-internal groups plus 3 residual groups (one per stage: the stem or
        # shortcut conv is coupled with every conv2 of the stage through the additions).
        assert space.num_groups == 12
        internal = [r for r in roots if r.endswith(".conv1") and r.startswith("stages.")]
        assert len(internal) == 9
        stem_group = next(g for g in space.groups if "conv1" in g.layers)
        assert {f"stages.0.{b}.conv2" for b in range(3)} <= set(stem_group.layers)


# -- an inline model with concat, residual add and flatten -> Linear ---------------------------


def concat_inputs() -> torch.Tensor:
    return torch.randn(2, *CONCAT_SHAPE, generator=torch.Generator().manual_seed(2))


def execution_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    order: list[str] = []
    hooks = [
        m.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, m in model.named_modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        forward(model, x)
    finally:
        for h in hooks:
            h.remove()
    return order


@pytest.mark.parametrize("round_to", [1, 2])
def test_concat_residual_flatten_model_matches_torch_pruning(concat_net, round_to):
    x = concat_inputs()
    space = PruningSpace(concat_net, x, round_to=round_to)
    roots = [g.root for g in space.groups]
    assert set(roots) == {"stem.0", "branch_a.0", "branch_b.0", "res1.0", "res2.0", "down", "fc1"}
    residual = next(g for g in space.groups if g.root == "res2.0")
    assert {"merge.0", "merge.1", "res2.1", "down", "res1.0"} <= set(residual.layers)
    fc_group = next(g for g in space.groups if g.root == "down")
    assert "fc1" in fc_group.layers  # flatten: each down channel feeds 4 fc1 inputs
    for setting in ["uniform:0.3", "uniform:0.6", "random:0", "random:1", "random:2"]:
        ratios = ratios_for(setting, space)
        counts = space.keep_counts(ratios)
        fast, reference = space.build(ratios), space.build_retrace(ratios)
        y = forward(fast, x)
        assert y.shape == (2, CONCAT_CLASSES)
        for g in space.groups:
            assert out_channels(fast.get_submodule(g.root)) == counts[g.index]
        assert fast.merge[0].in_channels == counts[1] + counts[2]  # the concat of both branches
        assert fast.merge[0].out_channels == counts[4]  # coupled with res2 by the addition
        assert fast.fc1.in_features == 4 * counts[5]  # 2x2 pooled map of every kept down channel
        assert count_params(fast) == count_params(reference) < count_params(concat_net)
        torch.testing.assert_close(y, forward(reference, x), atol=1e-5, rtol=1e-5)


def test_groups_follow_forward_execution_order(concat_net):
    x = concat_inputs()
    space = PruningSpace(concat_net, x)
    order = execution_order(concat_net, x)
    positions = [order.index(g.root) for g in space.groups]
    assert positions == sorted(positions)
    assert [g.root for g in space.groups][0] == "stem.0"


def test_output_layer_is_never_a_group_root(concat_net):
    space = PruningSpace(concat_net, concat_inputs())
    assert space.output_layers == ["head"]
    assert "head" not in [g.root for g in space.groups]
    for g in space.groups:
        for m in g.members:
            assert not (m.target == "head" and m.fn == "prune_out_channels")
    model = space.build(0.2)
    assert model.head.out_features == CONCAT_CLASSES


def test_output_layer_found_through_a_reshape():
    class Reshaped(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Linear(6, 8)
            self.out = nn.Linear(8, 4)

        def forward(self, x):
            return self.out(torch.relu(self.body(x))).view(-1, 2, 2)

    space = PruningSpace(Reshaped(), torch.randn(2, 6))
    assert space.output_layers == ["out"]
    assert [g.root for g in space.groups] == ["body"]
    assert space.build(0.5)(torch.randn(3, 6)).shape == (3, 2, 2)


def test_ignored_layer_keeps_its_output_channels(concat_net):
    x = concat_inputs()
    space = PruningSpace(concat_net, x, ignored_layers=["branch_a.0"])
    assert "branch_a.0" in space.ignored_layers
    for g in space.groups:
        assert g.root != "branch_a.0"
        assert not any(m.target == "branch_a.0" and m.fn == "prune_out_channels" for m in g.members)
    model = space.build(0.3)
    assert model.branch_a[0].out_channels == 6 and model.branch_a[1].num_features == 6
    assert model.branch_b[0].out_channels < 10  # the other branch is still pruned
    assert forward(model, x).shape == (2, 5)


def test_ignoring_a_coupled_layer_protects_its_whole_group(concat_net):
    x = concat_inputs()
    space = PruningSpace(concat_net, x, ignored_layers=["res2.0"])
    roots = [g.root for g in space.groups]
    assert "res2.0" not in roots and "merge.0" not in roots
    model = space.build(0.3)
    # merge and res2 are added together, so neither may lose channels.
    assert model.merge[0].out_channels == 12 and model.res2[0].out_channels == 12
    assert forward(model, x).shape == (2, 5)


def test_unknown_ignored_layer_is_named(concat_net):
    with pytest.raises(ValueError, match="no_such_layer"):
        PruningSpace(concat_net, concat_inputs(), ignored_layers=["stem.0", "no_such_layer"])


def test_round_to_below_one_is_rejected(concat_net):
    with pytest.raises(ValueError, match="round_to"):
        PruningSpace(concat_net, concat_inputs(), round_to=0)


def test_group_spanning_a_concat_never_empties_a_branch():
    class ConcatUnderResidual(nn.Module):
        """``y = cat(a(x), b(x)); y + res(y)``: the add couples res's outputs with both branches."""

        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.a = nn.Conv2d(8, 6, 3, padding=1)
            self.b = nn.Conv2d(8, 10, 1)
            self.res = nn.Conv2d(16, 16, 3, padding=1)
            self.head = nn.Linear(16, 5)

        def forward(self, x):
            y = torch.cat([self.a(torch.relu(self.stem(x))), self.b(torch.relu(self.stem(x)))], 1)
            y = torch.relu(y + self.res(y))
            return self.head(y.mean((2, 3)))

    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    space = PruningSpace(ConcatUnderResidual(), x)
    group = next(g for g in space.groups if g.channels == 16)
    # Keep 1 of the 16 coupled channels: at least one branch must then lose all of its channels
    # unless the space keeps one channel per concatenated segment.
    model = space.build({group.root: 1 / 16})
    assert forward(model, x).shape == (2, 5)


# -- keep ratio validation ----------------------------------------------------------------------


def test_wrong_number_of_keep_ratios(concat_net):
    space = PruningSpace(concat_net, concat_inputs())
    with pytest.raises(ValueError, match=rf"Expected {space.num_groups} keep ratios.*got 3"):
        space.build([0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="got 8"):
        space.keep_counts([0.5] * (space.num_groups + 1))


def test_keep_ratio_out_of_range_names_the_group(concat_net):
    space = PruningSpace(concat_net, concat_inputs())
    ratios = [0.5] * space.num_groups
    ratios[2] = 1.5
    with pytest.raises(ValueError, match=r"group 2.*\(0, 1\].*1\.5"):
        space.build(ratios)
    ratios[2] = 0.0
    with pytest.raises(ValueError, match="group 2"):
        space.plan(ratios)
    with pytest.raises(ValueError, match=r"-0\.1"):
        space.build(-0.1)
    with pytest.raises(ValueError, match=r"'down'.*1\.5"):
        space.build({"down": 1.5})


def test_keep_ratio_mapping(concat_net):
    x = concat_inputs()
    space = PruningSpace(concat_net, x)
    with pytest.raises(ValueError, match="not_a_group"):
        space.build({"down": 0.5, "not_a_group": 0.5})
    with pytest.raises(ValueError, match="head"):  # the output layer is no group
        space.build({"head": 0.5})
    counts = space.keep_counts({"down": 0.5, "fc1": 0.25})
    expected = [g.channels for g in space.groups]
    expected[[g.root for g in space.groups].index("down")] = 4
    expected[[g.root for g in space.groups].index("fc1")] = 5
    assert counts == expected
    assert space.build({"down": 0.5}).down.out_channels == 4


def test_keep_ratio_forms_agree(concat_net):
    space = PruningSpace(concat_net, concat_inputs())
    n = space.num_groups
    assert space.keep_counts(0.5) == space.keep_counts([0.5] * n) == space.keep_counts(np.full(n, 0.5))
    assert space.keep_counts({g.root: 0.5 for g in space.groups}) == space.keep_counts(0.5)
    assert space.rounded_ratios(0.5) == [k / g.channels for k, g in zip(space.keep_counts(0.5), space.groups)]


@pytest.mark.parametrize("scalar", [np.float32(0.5), np.array(0.5), torch.tensor(0.5)], ids=["f32", "0d", "torch"])
def test_numpy_and_torch_scalars_are_uniform_ratios(concat_net, scalar):
    space = PruningSpace(concat_net, concat_inputs())
    assert space.keep_counts(scalar) == space.keep_counts(0.5)


# -- which channels go: importance ------------------------------------------------------------


class TwoConv(nn.Module):
    def __init__(self, with_bn: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16) if with_bn else nn.Identity()
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(x.mean((2, 3)))


ZEROED = [0, 1, 2, 3]


@pytest.mark.parametrize("importance", ["l1", "l2"])
def test_magnitude_importance_prunes_the_zeroed_filters(importance):
    torch.manual_seed(0)
    model = TwoConv().eval()
    with torch.no_grad():
        model.conv1.weight[ZEROED] = 0.0
        model.conv1.bias[ZEROED] = 0.0
        # Equal-magnitude inputs weights in conv2, so conv1's filters alone decide the ranking.
        model.conv2.weight.copy_(0.1 * torch.sign(torch.randn_like(model.conv2.weight)))
    original = copy.deepcopy(model)
    space = PruningSpace(model, torch.randn(1, 3, 8, 8), importance=importance)
    group = next(g for g in space.groups if g.root == "conv1")
    assert sorted(group.ranking[:4].tolist()) == ZEROED
    pruned = space.build({"conv1": 12 / 16})
    kept = [i for i in range(16) if i not in ZEROED]
    assert pruned.conv1.out_channels == 12
    assert torch.equal(pruned.conv1.weight, original.conv1.weight[kept])
    assert torch.equal(pruned.conv1.bias, original.conv1.bias[kept])
    assert torch.equal(pruned.conv2.weight, original.conv2.weight[:, kept])
    assert torch.count_nonzero(pruned.conv1.weight.flatten(1).abs().sum(1)) == 12


def test_bn_scale_importance_prunes_the_smallest_gammas():
    torch.manual_seed(0)
    model = TwoConv(with_bn=True).eval()
    gammas = torch.tensor([0.9, -0.05, 1.2, 0.3, 0.02, -0.8, 0.6, 0.01,
                           -1.5, 0.7, 0.04, 1.1, -0.03, 0.5, 0.95, 2.0])  # fmt: skip
    with torch.no_grad():
        model.bn1.weight.copy_(gammas)
    space = PruningSpace(model, torch.randn(1, 3, 8, 8), importance="bn_scale")
    pruned = space.build({"conv1": 11 / 16})
    smallest = sorted(torch.argsort(gammas.abs())[:5].tolist())
    assert smallest == [1, 4, 7, 10, 12]  # |gamma|: 0.05, 0.02, 0.01, 0.04, 0.03
    kept = [i for i in range(16) if i not in smallest]
    assert torch.equal(pruned.bn1.weight, gammas[kept])
    assert torch.equal(pruned.conv1.weight, model.conv1.weight[kept])


def test_callable_importance_is_used():
    torch.manual_seed(0)
    model = TwoConv().eval()

    def last_channels_first(group):  # higher index = less important
        n = len(group[0].idxs)
        return torch.arange(n, 0, -1, dtype=torch.float32)

    space = PruningSpace(model, torch.randn(1, 3, 8, 8), importance=last_channels_first)
    pruned = space.build({"conv1": 0.5})
    assert torch.equal(pruned.conv1.weight, model.conv1.weight[:8])


def test_unknown_importance_is_named():
    with pytest.raises(ValueError, match="'l3'"):
        PruningSpace(TwoConv(), torch.randn(1, 3, 8, 8), importance="l3")


# -- plans -----------------------------------------------------------------------------------


def test_plan_json_round_trip_and_replay(zoo_spaces):
    base, x, space = zoo_spaces("resnet20")
    ratios = random_ratios(space.num_groups, seed=5)
    plan = space.plan(ratios)
    assert len(plan) > 0
    restored = PruningPlan.from_json(json.loads(plan.dumps()))
    assert restored == plan
    assert json.loads(restored.dumps()) == plan.to_json()

    replayed = apply_plan(copy.deepcopy(base), restored)
    built = space.build(ratios)
    assert replayed.state_dict().keys() == built.state_dict().keys()
    for key, value in built.state_dict().items():
        assert torch.equal(replayed.state_dict()[key], value), key
    torch.testing.assert_close(forward(replayed, x), forward(built, x), atol=0, rtol=0)


def test_plan_entries_use_original_coordinates(concat_net):
    space = PruningSpace(concat_net, concat_inputs())
    plan = space.plan({"down": 0.5})
    by_target = {(e.target, e.fn): e for e in plan}
    down = by_target["down", "prune_out_channels"]
    assert len(down.idxs) == 4 and set(down.idxs) <= set(range(8))
    # fc1 loses the 4 inputs (2x2 pooled positions) of each removed down channel.
    fc1 = by_target["fc1", "prune_in_channels"]
    assert sorted(fc1.idxs) == sorted(4 * c + p for c in down.idxs for p in range(4))
    assert {e.target for e in plan} == {"down", "fc1"}


def test_malformed_plan_is_rejected(concat_net):
    with pytest.raises(ValueError, match="Malformed"):
        PruningPlan.from_json([{"target": "down"}])
    plan = PruningSpace(concat_net, concat_inputs()).plan(0.5)
    with pytest.raises(ValueError, match="another architecture"):
        apply_plan(TwoConv(), plan)


def test_base_model_is_not_mutated(make_model):
    model = make_model("resnet20", width_mult=0.5).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 16, 16)
    space = PruningSpace(model, x)
    for ratios in (0.3, random_ratios(space.num_groups, 3)):
        space.build(ratios)
        space.build_retrace(ratios)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # Later changes to the caller's model do not leak into the space either.
    with torch.no_grad():
        model.conv1.weight.zero_()
    assert not torch.equal(space.build(1.0).conv1.weight, model.conv1.weight)
    assert math.isclose(count_params(space.build(1.0)), count_params(model))


class ScaledConv(nn.Module):
    """A free per-channel ``nn.Parameter`` inside a group (Torch-Pruning prunes it as a parameter)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.scale = nn.Parameter(torch.rand(1, 8, 1, 1) + 0.5)
        self.conv2 = nn.Conv2d(8, 6, 3)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        y = self.conv2(torch.relu(self.bn(self.conv(x)) * self.scale))
        return self.fc(torch.relu(y).mean((2, 3)))


@pytest.mark.filterwarnings("ignore:Unwrapped parameters detected")
@pytest.mark.parametrize("which", ["concat", "scaled"])
def test_candidates_share_no_storage_with_the_base(concat_net, which):
    if which == "concat":
        model, x = concat_net, concat_inputs()
        settings = [0.5, {"down": 0.5}, 1.0]
    else:
        torch.manual_seed(0)
        model, x = randomize_batchnorm_like(ScaledConv()), torch.randn(2, 3, 8, 8)
        settings = [0.5, {"conv": 0.5}, 1.0]
    space = PruningSpace(model, x)
    reference = forward(space.base, x)
    base_ptrs = {t.untyped_storage().data_ptr() for t in [*space.base.parameters(), *space.base.buffers()]}
    for ratios in settings:
        candidate = space.build(ratios)
        tensors = [*candidate.parameters(), *candidate.buffers()]
        assert all(isinstance(p, nn.Parameter) for p in candidate.parameters())
        assert not base_ptrs & {t.untyped_storage().data_ptr() for t in tensors}
        # Fine-tuning the candidate in place must not reach the base or later candidates.
        with torch.no_grad():
            for t in tensors:
                t.mul_(0).add_(3)
        torch.testing.assert_close(forward(space.base, x), reference, atol=0, rtol=0)
    torch.testing.assert_close(forward(space.build(1.0), x), reference, atol=0, rtol=0)
    torch.testing.assert_close(forward(space.build_retrace(1.0), x), reference, atol=0, rtol=0)


def randomize_batchnorm_like(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    return model.eval()


def test_model_without_prunable_groups_is_rejected():
    with pytest.raises(ValueError, match="no prunable groups"):
        PruningSpace(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)), torch.randn(1, 4))


def test_fast_build_shares_no_storage_with_the_base_and_leaves_it_unchanged(make_model):
    from rayprune.pruning import PruningSpace

    model = make_model("resnet20", width_mult=0.5)
    space = PruningSpace(model, torch.randn(1, 3, 32, 32), round_to=1)
    before = {k: v.clone() for k, v in space.base.state_dict().items()}
    candidate = space.build([0.5] * space.num_groups)
    full = space.build(1.0)  # nothing pruned: every tensor must still be a copy
    base_ptrs = {t.untyped_storage().data_ptr() for t in [*space.base.parameters(), *space.base.buffers()]}
    for m in (candidate, full):
        for t in [*m.parameters(), *m.buffers()]:
            assert t.untyped_storage().data_ptr() not in base_ptrs
    with torch.no_grad():
        for p in full.parameters():
            p.add_(1.0)
    after = space.base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _GroupedNet(nn.Module):
    """stem -> a grouped (or depthwise-multiplier) conv -> 1x1 conv -> head: only the 1x1 conv's channels
    can go."""

    def __init__(self, groups: int, out: int = 64) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.g = nn.Sequential(nn.Conv2d(32, out, 3, padding=1, groups=groups), nn.BatchNorm2d(out), nn.ReLU())
        self.c = nn.Sequential(nn.Conv2d(out, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.c(self.g(self.a(x))).mean(dim=(2, 3)))


def _zeroed(model: nn.Module, conv: str, bn: str, channels) -> nn.Module:
    """A copy of ``model`` whose ``conv`` -> ``bn`` -> ReLU outputs ``channels`` are exactly zero (what pruning
    them removes)."""
    model = copy.deepcopy(model)
    c, b = model.get_submodule(conv), model.get_submodule(bn)
    idx = torch.as_tensor(sorted(channels), dtype=torch.long)
    with torch.no_grad():
        c.weight[idx] = 0.0
        if c.bias is not None:
            c.bias[idx] = 0.0
        b.bias[idx] = b.weight[idx] * b.running_mean[idx] / torch.sqrt(b.running_var[idx] + b.eps)
    return model


def test_groups_touching_a_grouped_convolution_are_pruned_alike_in_every_block():
    """A ResNeXt-style grouped conv (groups=4): the layer feeding it and its own output channels were left whole.
    Both are pruned now, the same positions in each of the 4 blocks, keeping a multiple of 4 channels: the
    pruned model computes what the base computes with those channels zeroed, and Torch-Pruning's own pruning
    gives the same model."""
    x = torch.randn(2, 3, 16, 16)
    torch.manual_seed(0)
    net = _GroupedNet(4, 64).eval()
    for bn in (net.a[1], net.g[1]):
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.bias.data.uniform_(-1, 1)
    for round_to in (1, 8):
        space = PruningSpace(net, x, round_to=round_to)
        assert [(g.root, g.blocks) for g in space.groups] == [("a.0", 4), ("g.0", 4), ("c.0", 1)] and not space.skipped
        assert space.multiples == [max(4, round_to), max(4, round_to), round_to]
        for ratios in ([0.3, 1.0, 1.0], [1.0, 0.55, 1.0], [0.05, 0.05, 0.5], [0.71, 0.4, 0.9]):
            counts = space.keep_counts(ratios)
            assert counts[0] % 4 == 0 and counts[1] % 4 == 0 and counts[0] >= 4
            model = space.build(ratios)
            assert model.g[0].weight.shape[:2] == (counts[1], counts[0] // 4) and model.g[0].groups == 4
            assert torch.allclose(model(x), space.build_retrace(ratios)(x), atol=1e-5)
            if counts[1:] == [64, 16]:  # only the feeding layer pruned: the base with its lost channels zeroed
                lost = space.groups[0].ranking[: 32 - counts[0]].tolist()
                assert all(sum(1 for c in lost if c // 8 == b) == (32 - counts[0]) // 4 for b in range(4))
                assert torch.allclose(model(x), _zeroed(net, "a.0", "a.1", lost)(x), atol=1e-5)
            if counts[0] == 32 and counts[2] == 16:  # only the grouped conv's own outputs pruned
                lost = space.groups[1].ranking[: 64 - counts[1]].tolist()
                assert torch.allclose(model(x), _zeroed(net, "g.0", "g.1", lost)(x), atol=1e-5)
    with pytest.raises(ValueError, match=r"alike in 4 blocks .* cannot keep 30 of 32 channels"):
        space.plan_from_counts([30, 64, 16])


class _ShuffleUnit(nn.Module):
    """A ShuffleNet v1 unit: grouped 1x1 conv, channel shuffle, depthwise 3x3, grouped 1x1 conv, residual add."""

    def __init__(self, shuffle: bool) -> None:
        super().__init__()
        self.shuffle = shuffle
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.g1 = nn.Conv2d(16, 24, 1, groups=4, bias=False)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False)
        self.g2 = nn.Conv2d(24, 16, 1, groups=4, bias=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.g1(x))
        if self.shuffle:
            b, c, h, w = y.shape
            y = y.view(b, 4, c // 4, h, w).transpose(1, 2).reshape(b, c, h, w)
        return self.head(torch.relu(x + self.g2(self.dw(y))).mean((2, 3)))


def test_channels_shuffled_between_the_groups_of_a_grouped_convolution_are_left_whole():
    """A channel shuffle moves channels between the groups, which Torch-Pruning does not follow: pruning the
    shuffled channels in blocks built a model that was not the base's sub-network (0.009 off the base with the
    same channels zeroed). That group is left whole and named; without the shuffle it is pruned in blocks and
    exact."""
    x = torch.randn(2, 3, 8, 8)
    for shuffle in (False, True):
        torch.manual_seed(0)
        net = _ShuffleUnit(shuffle).eval()
        space = PruningSpace(net, x)
        roots = {g.root: g.blocks for g in space.groups}
        if shuffle:
            assert roots == {"g2": 4} and space.skipped == [("dw", ("g2", "g1"))]
            assert "reshaped (a channel shuffle)" in space.skipped_text()
            continue
        assert roots == {"dw": 4, "g2": 4} and not space.skipped
        group = space.groups[0]
        lost = sorted(group.ranking[:12].tolist())
        pruned = space._built(space.plan_from_counts([12, 16]))
        hook = net.g1.register_forward_hook(lambda m, i, o: o.index_fill(1, torch.tensor(lost), 0.0))
        try:
            with torch.no_grad():
                assert torch.allclose(pruned(x), net(x), atol=1e-6)  # the base with those channels zeroed
        finally:
            hook.remove()


def test_a_depthwise_convolution_with_a_multiplier_prunes_its_outputs_and_leaves_its_inputs_named():
    """groups=32, 32 -> 64: one input channel per group cannot lose a position (the feeding layer stays whole, and
    the space says why); its 64 outputs, two per group, lose the same one in every group."""
    x = torch.randn(2, 3, 16, 16)
    space = PruningSpace(_GroupedNet(32, 64).eval(), x)
    assert [(g.root, g.blocks) for g in space.groups] == [("g.0", 32), ("c.0", 1)]
    assert space.skipped == [("a.0", ("g.0",))]
    assert "grouped convolution(s) ['g.0']" in space.skipped_text() and "left unpruned" in space.skipped_text()
    assert space.keep_counts([0.3, 0.5]) == [32, 8] and space.build([0.3, 0.5])(x).shape == (2, 4)
    depthwise = PruningSpace(_GroupedNet(32, 32).eval(), x)  # groups == in == out: pruned channel by channel
    assert [(g.root, g.blocks) for g in depthwise.groups] == [("g.0", 1), ("c.0", 1)] and depthwise.skipped == []
    assert depthwise.build([0.5, 0.5])(x).shape == (2, 4)


def test_an_attention_layers_embedding_is_pruned_alike_in_every_head():
    """nn.MultiheadAttention(16, 4 heads): its embedding dimension was pruned to any count, and the smallest
    candidate (min_keep) built an attention layer whose embed_dim the heads do not divide ("embed_dim must divide
    evenly by num_heads", blamed on the MACs cost). The residual stream it sits on is pruned in 4 blocks now:
    the same positions in every head, a multiple of 4 kept, each head as wide as the others."""
    import warnings
    from types import SimpleNamespace

    from conftest import AttentionNet

    from rayprune.problem import warn_if_groups_skipped

    x = torch.randn(2, 3, 8, 8)
    torch.manual_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = PruningSpace(AttentionNet().eval(), x)
    assert not [w for w in caught if "Unwrapped parameters" in str(w.message)]  # said in rayprune's words instead
    assert space.free_parameters == [("pos", 2)]
    notes = []
    warn_if_groups_skipped(SimpleNamespace(space=space), notes.append)
    assert notes == ["note: parameter(s) used outside a layer are pruned with the channels they meet: pos (1, 16, 16) "
                     "along dimension 2 (Torch-Pruning takes the last dimension longer than 1 as the channels; if "
                     "that is not so for one, keep the layers that produce its channels whole with "
                     "pruning.ignored_layers)"]
    blocks = {g.root: g.blocks for g in space.groups}
    assert blocks == {"mlp.0": 1, "mlp.2": 4} and not space.skipped and not space.unbuildable, blocks
    for ratios in ([0.1, 0.1], [0.5, 0.3], [1.0, 0.37], [0.8, 1.0]):
        counts = space.keep_counts(ratios)
        model = space.build(ratios)
        assert counts[1] % 4 == 0 and model.attn.embed_dim == counts[1] and model.attn.head_dim * 4 == counts[1]
        assert model.pos.shape == (1, 16, counts[1])
        assert torch.allclose(model(x), space.build_retrace(ratios)(x), atol=1e-5)
    lost = space.groups[1].ranking[:8].tolist()  # two positions of each head of four
    assert len({c % 4 for c in lost}) == 2 and all(sum(c // 4 == h for c in lost) == 2 for h in range(4))


def test_a_model_whose_every_group_touches_a_grouped_convolution_is_refused_saying_why():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 16, 3, groups=8))  # '1' is the output: never pruned
    with pytest.raises(UserError, match=r"no prunable groups.*grouped convolution\(s\) \['1'\]"):
        PruningSpace(net.eval(), torch.randn(1, 3, 8, 8))


class _CatFlatten(nn.Module):
    """cat([a, conv(a)]) -> pool -> flatten -> Linear: Torch-Pruning couples both branches into one group and
    cuts the Linear's inputs to fit neither."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.c2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.c3 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())  # a branch of its own: still prunable
        self.c4 = nn.Conv2d(8, 4, 1)
        self.pool = nn.MaxPool2d(4)
        self.fc = nn.Linear(32 * 16, 4)

    def forward(self, x):
        a = self.c1(x)
        return self.fc(torch.flatten(self.pool(torch.cat([a, self.c2(a)], 1)), 1)) + self.c4(self.c3(x)).mean((2, 3))


def test_a_group_whose_pruned_model_does_not_run_is_left_unpruned_with_the_error():
    x = torch.randn(2, 3, 16, 16)
    space = PruningSpace(_CatFlatten().eval(), x)
    assert [g.root for g in space.groups] == ["c3.0"] and [g.index for g in space.groups] == [0]
    [(root, error)] = space.unbuildable
    assert root == "c2.0" and "mat1 and mat2 shapes cannot be multiplied" in error
    assert "does not run" in space.skipped_text() and "concatenation before a flatten" in space.skipped_text()
    assert space.build([0.3])(x).shape == (2, 4)


class _AssertsWidth(nn.Module):
    """A forward that checks a width and raises an error without a message: pruning c1 breaks it."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 16, 3), nn.Conv2d(16, 8, 3), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        h = self.c1(x)
        if h.shape[1] != 16:
            raise RuntimeError()
        return self.c3(self.c2(h)).mean((2, 3))


def test_an_error_without_a_message_is_named_and_another_process_drops_the_same_groups_unchecked():
    x = torch.randn(1, 3, 8, 8)
    space = PruningSpace(_AssertsWidth().eval(), x)
    assert [g.root for g in space.groups] == ["c2"] and space.unbuildable == [("c1", "RuntimeError: RuntimeError()")]
    told = PruningSpace(_AssertsWidth().eval(), x, unbuildable=["c2"])  # a driver's finding, taken as it is
    assert [g.root for g in told.groups] == ["c1"] and told.unbuildable == [("c2", "found by the driver")]


@pytest.mark.parametrize("name", ["rayprune.pruning.space", "rayprune.pruning.rounding", "rayprune.search.selection",
                                  "rayprune.costs.metrics", "rayprune.costs.budget", "rayprune.pruning.onnx_export",
                                  "rayprune.data.datasets", "rayprune.inputs", "rayprune.pruning.export", "rayprune.config",
                                  "rayprune.engine.objective", "rayprune.results", "rayprune.cli",
                                  "rayprune.ray_session", "rayprune.report", "rayprune.submit", "rayprune.neon.selection",
                                  "rayprune.data.tabular", "rayprune.costs.paired", "rayprune.engine.train",
                                  "rayprune.data.convert", "rayprune._logs"])
def test_the_examples_in_the_docstrings_hold(name):
    """The README's test command does not collect doctests: the examples of these modules (block rankings,
    per-group rounding, the tie-break of the monotone choice, attention MACs, level specs, a dataset's token ids and
    its samples without a channel axis, the one input probe) run here."""
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
