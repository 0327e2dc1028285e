"""Tests for costs (rayprune.costs): counting, measuring, analytic predictions, budgets, registry."""

from __future__ import annotations

import importlib
import math
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rayprune.costs import (
    BUILTIN_COSTS,
    AnalyticCosts,
    Budget,
    CostContext,
    count_macs,
    count_params,
    measure_costs,
    measure_latency_ms,
    measure_peak_memory_mb,
    parse_budget,
    resolve_cost,
    resolve_costs,
)
from rayprune.costs.registry import CostFunctionError
from rayprune.models import build_model
from rayprune.models.vgg import VGG_CONFIGS
from rayprune.pruning import PruningSpace

CIFAR = (3, 32, 32)

# name -> (build_model kwargs, one sample's input shape); "concat" is the conftest concat_net.
MODELS = {
    "vgg11": ({"width_mult": 0.25}, CIFAR),
    "resnet18": ({"width_mult": 0.25}, CIFAR),
    "resnet56": ({"width_mult": 0.5}, CIFAR),
    "small_cnn": ({"in_channels": 1}, (1, 28, 28)),
    "mlp": ({"in_features": 20, "hidden_sizes": (32, 24), "pre_layer": "batchnorm"}, (20,)),
    "concat": (None, (3, 8, 8)),
    "grouped": (None, (3, 8, 8)),  # a ResNeXt block's grouped conv and a depthwise conv with a multiplier
    "attention": (None, (3, 8, 8)),  # nn.MultiheadAttention, a position-embedding parameter, LayerNorm
}


@pytest.fixture
def model_and_shape(request, make_model, concat_net):
    kwargs, shape = MODELS[request.param]
    if request.param in ("grouped", "attention"):
        from conftest import AttentionNet, GroupedResidualNet, randomize_batchnorm_

        torch.manual_seed(0)
        net = GroupedResidualNet() if request.param == "grouped" else AttentionNet()
        return randomize_batchnorm_(net, seed=0).eval(), shape
    model = concat_net if kwargs is None else make_model(request.param, **kwargs)
    return model, shape


def hook_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Independent MAC count of one sample: every Conv2d and Linear the forward pass runs.

    Conv: ``output elements * in_channels / groups * prod(kernel)``; Linear: ``output elements *
    in_features`` (output elements include every token).
    """
    assert x.shape[0] == 1
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)
        else:
            total += output.numel() * module.in_features

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return total


def flop_counter_total(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.eval()(x)
    return counter.get_total_flops()


def random_ratios(n: int, rng: np.random.Generator) -> list[float]:
    return rng.uniform(0.05, 1.0, n).tolist()


# -- counting ---------------------------------------------------------------------------------


def test_count_params_is_the_sum_of_numel():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 6 * 6, 5, bias=False))
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    assert count_params(model) == (8 * 3 * 9 + 8) + 2 * 8 + 8 * 36 * 5
    assert count_params(nn.ReLU()) == 0


def test_count_macs_closed_forms():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, CostContext(input_shape=(3, 8, 8))) == 8 * 3 * 9 * 64
    assert count_macs(nn.Linear(10, 5), CostContext(input_shape=(10,))) == 50
    assert count_macs(nn.Linear(10, 5), CostContext(input_shape=(7, 10))) == 50 * 7  # 7 tokens
    grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert count_macs(grouped, CostContext(input_shape=(8, 6, 6))) == 8 * 2 * 9 * 36
    # One sample, whatever the context's batch size (that one is for latency and memory).
    assert count_macs(conv, CostContext(input_shape=(3, 8, 8), batch_size=16)) == 8 * 3 * 9 * 64


def vgg_macs_by_hand(name: str, size: int = 32, num_classes: int = 10) -> int:
    """3x3 'same' convs at the current resolution, 2x2 pools halve it, then Linear(512, classes)."""
    macs, channels = 0, 3
    for item in VGG_CONFIGS[name]:
        if item == "M":
            size = math.ceil(size / 2)
        else:
            macs += channels * item * 9 * size * size
            channels = item
    return macs + channels * num_classes


def test_cifar_vgg16_macs():
    assert vgg_macs_by_hand("vgg16") == 313_201_664
    macs = count_macs(build_model("vgg16", num_classes=10), CostContext(input_shape=CIFAR))
    assert macs == 313_201_664
    # 313.47M is the usual literature figure (with a slightly different head); within 1%.
    assert abs(macs - 313.47e6) / 313.47e6 < 0.01


def test_cifar_resnet18_macs():
    # stem 3->64 at 32x32; stage s (64*2^s channels, 32/2^s px): 4 convs 3x3 (the first from half
    # the channels with stride 2 after stage 0) plus a 1x1 strided shortcut; Linear(512, 10).
    expected = 3 * 64 * 9 * 32**2 + 4 * 64 * 64 * 9 * 32**2
    for c, px in ((128, 16), (256, 8), (512, 4)):
        expected += (c // 2) * c * 9 * px**2 + 3 * c * c * 9 * px**2 + (c // 2) * c * px**2
    expected += 512 * 10
    assert expected == 555_422_720
    macs = count_macs(build_model("resnet18", num_classes=10), CostContext(input_shape=CIFAR))
    assert macs == expected
    assert abs(macs - 0.556e9) / 0.556e9 < 0.01  # "0.56 GMACs"


@pytest.mark.parametrize("model_and_shape", [m for m in MODELS if m != "attention"], indirect=True)
def test_count_macs_agrees_with_flop_counter_and_hooks(model_and_shape):  # attention: counted where these miss it
    model, shape = model_and_shape
    x = torch.zeros(1, *shape)
    space = PruningSpace(model, x)
    ctx = CostContext(input_shape=shape)
    rng = np.random.default_rng(0)
    candidates = [model, space.build(0.5), space.build(0.2)] + [
        space.build(random_ratios(space.num_groups, rng)) for _ in range(2)
    ]
    seen = set()
    for candidate in candidates:
        macs = count_macs(candidate, ctx)
        assert macs * 2 == flop_counter_total(candidate, x)
        assert macs == hook_macs(candidate, x)
        seen.add(macs)
    assert len(seen) == len(candidates)  # each candidate really is a different network


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("need_weights", [True, False])
def test_attention_macs_are_its_projections_and_products_whichever_kernel_runs_it(batch_first, need_weights):
    """nn.MultiheadAttention counted 0 MACs in eval mode (its fused kernel), and only its projections where
    scaled_dot_product_attention ran on CPU: a MACs budget on a transformer left the attention out. Every path
    now counts 4 n e^2 (projections) + 2 n^2 e (q k^T, attention v)."""

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, batch_first=batch_first)

        def forward(self, x):
            x = x.reshape(1, 12, 16) if batch_first else x.reshape(12, 1, 16)
            return self.attn(x, x, x, need_weights=need_weights)[0]

    n, e = 12, 16
    assert count_macs(Block().eval(), CostContext(input_shape=(n, e))) == 4 * n * e * e + 2 * n * n * e
    # a whole encoder layer ran in one fused kernel and counted 0 (its feed-forward Linears too)
    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(e, 4, dim_feedforward=32, batch_first=batch_first)

        def forward(self, x):  # (1, n, e); (n, 1, e) when the sequence comes first
            return self.layer(x if batch_first else x.transpose(0, 1))

    assert torch.backends.mha.get_fastpath_enabled()
    assert count_macs(Encoder().eval(), CostContext(input_shape=(n, e))) == (
        4 * n * e * e + 2 * n * n * e + 2 * n * e * 32)
    assert torch.backends.mha.get_fastpath_enabled()  # restored
    # counted from several threads at once (a pool's evaluator threads): each sees the unfused path, and the
    # switch is restored only when the last one is done
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as threads:
        counts = list(threads.map(lambda _: count_macs(Encoder().eval(), CostContext(input_shape=(n, e))), range(8)))
    assert set(counts) == {4 * n * e * e + 2 * n * n * e + 2 * n * e * 32} and torch.backends.mha.get_fastpath_enabled()


def test_counting_macs_and_memory_does_not_import_dynamo():
    """torch wraps every dispatch mode's handler so that Dynamo skips it; the wrapper's first call
    imports torch._dynamo (seconds per process). MACs and peak memory go around it, and leave
    FlopCounterMode's wrapper as it was for everyone else."""
    import subprocess

    code = textwrap.dedent("""
        import sys
        from torch import nn
        from torch.utils.flop_counter import _FlopCounterMode
        from rayprune.costs import CostContext, count_macs, measure_peak_memory_mb
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))
        ctx = CostContext(input_shape=(3, 32, 32))
        assert count_macs(model, ctx) == 3 * 8 * 9 * 30 * 30 + 8 * 30 * 30 * 10
        assert measure_peak_memory_mb(model, ctx) > 0
        assert "torch._dynamo" not in sys.modules, "counting imported torch._dynamo"
        raw = _FlopCounterMode.__dict__["__torch_dispatch__"].__wrapped__
        assert not hasattr(raw, "__dynamo_disable"), "the wrapper's cache was left behind"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# -- analytic costs ---------------------------------------------------------------------------


@pytest.mark.parametrize("round_to", [1, 8])
@pytest.mark.parametrize("model_and_shape", list(MODELS), indirect=True)
def test_analytic_costs_equal_measured(model_and_shape, round_to):
    model, shape = model_and_shape
    space = PruningSpace(model, torch.zeros(2, *shape), round_to=round_to)
    ctx = CostContext(input_shape=shape)
    analytic = AnalyticCosts(space, ctx)
    assert analytic.exact
    assert analytic.base == {"params": count_params(model), "macs": count_macs(model, ctx)}
    full = [g.channels for g in space.groups]
    assert analytic.params(full) == count_params(model) and analytic.macs(full) == count_macs(model, ctx)
    rng = np.random.default_rng(round_to)
    for _ in range(5):
        counts = space.keep_counts(random_ratios(space.num_groups, rng))
        candidate = space.build([k / g.channels for k, g in zip(counts, space.groups)])
        roots = [candidate.get_submodule(g.root) for g in space.groups]
        assert [getattr(r, "out_channels", getattr(r, "out_features", None)) for r in roots] == counts
        assert analytic.params(counts) == count_params(candidate)
        assert analytic.macs(counts) == count_macs(candidate, ctx)
        assert analytic("params", counts) == analytic.params(counts)
        assert analytic("macs", counts) == analytic.macs(counts)


def test_analytic_costs_reject_unknown_cost(concat_net):
    space = PruningSpace(concat_net, torch.zeros(1, 3, 8, 8))
    analytic = AnalyticCosts(space, CostContext(input_shape=(3, 8, 8)))
    with pytest.raises(ValueError, match="'latency_ms'.*params.*macs"):
        analytic("latency_ms", space.keep_counts(0.5))


def test_analytic_costs_model_a_free_parameter_and_flag_layers_they_do_not_model():
    class ScaledConv(nn.Module):
        """A free per-channel parameter inside a group (modeled: its elements scale with the channels), then a
        transposed convolution (not modeled)."""

        def __init__(self, transposed: bool = False):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))
            self.conv2 = nn.ConvTranspose2d(8, 4, 3) if transposed else nn.Conv2d(8, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.conv2(self.conv(x) * self.scale).mean((2, 3)))

    for transposed in (False, True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Torch-Pruning warns about the unwrapped parameter
            space = PruningSpace(ScaledConv(transposed), torch.zeros(1, 3, 8, 8))
        assert "scale" in space.groups[0].layers
        analytic = AnalyticCosts(space, CostContext(input_shape=(3, 8, 8)))
        assert analytic.exact is not transposed
        if not transposed:
            counts = space.keep_counts(0.5)
            assert analytic.params(counts) == count_params(space.build(0.5))


# -- measured costs ---------------------------------------------------------------------------


def conv_stack(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1), nn.ReLU()
    )


def test_latency_is_positive_and_grows_with_the_model():
    ctx = CostContext(input_shape=CIFAR, warmup=2, repeats=7, threads=1)
    small, big = conv_stack(8), conv_stack(96)
    assert count_macs(big, ctx) > 20 * count_macs(small, ctx)
    t_small, t_big = measure_latency_ms(small, ctx), measure_latency_ms(big, ctx)
    assert 0 < t_small < math.inf and 0 < t_big < math.inf
    assert t_big > t_small


def test_latency_restores_threads_and_mode():
    before = torch.get_num_threads()
    model = conv_stack(4).train()
    for threads in (before + 1, 1, None):
        ctx = CostContext(input_shape=(3, 8, 8), warmup=0, repeats=1, threads=threads)
        assert measure_latency_ms(model, ctx) > 0
        assert torch.get_num_threads() == before
    assert model.training


def test_peak_memory(make_model):
    model = make_model("vgg11", width_mult=0.25)
    base_1 = measure_peak_memory_mb(model, CostContext(input_shape=CIFAR, batch_size=1))
    base_8 = measure_peak_memory_mb(model, CostContext(input_shape=CIFAR, batch_size=8))
    weights_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    assert base_1 >= weights_mb
    assert base_8 > base_1
    # 8 samples of the first activation map (16 x 32 x 32 floats each) must be alive at some point.
    assert base_8 - base_1 >= 7 * 16 * 32 * 32 * 4 / 2**20
    pruned = PruningSpace(model, torch.zeros(1, *CIFAR)).build(0.4)
    pruned_1 = measure_peak_memory_mb(pruned, CostContext(input_shape=CIFAR, batch_size=1))
    assert sum(p.numel() * p.element_size() for p in pruned.parameters()) / 2**20 <= pruned_1 < base_1


@pytest.mark.parametrize(
    "cost",
    [
        count_macs,
        measure_latency_ms,
        measure_peak_memory_mb,
        count_params,
    ],
)
def test_costs_leave_every_module_mode_as_it_was(cost):
    # Fine-tuning with frozen BatchNorm: the model trains, its BN layers stay in eval mode.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    model[1].eval()
    cost(model, CostContext(input_shape=(3, 8, 8), warmup=0, repeats=1))
    assert model.training and not model[1].training


# -- budgets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "metric", "value", "relative"),
    [
        ("params=0.25", "params", 0.25, True),
        ("macs=0.5", "macs", 0.5, True),
        ("peak_memory_mb=0.8", "peak_memory_mb", 0.8, True),
        ("latency_ms=4", "latency_ms", 4.0, False),
        ("energy_mj=12.5", "energy_mj", 12.5, False),  # unknown names are absolute
        ("macs=abs:2e8", "macs", 2e8, False),
        ("latency_ms=rel:0.5", "latency_ms", 0.5, True),
        ("latency_ms=50%", "latency_ms", 0.5, True),
        ("latency_ms=rel:50%", "latency_ms", 0.5, True),
        ("params=25%", "params", 0.25, True),
        (" params = 0.3 ", "params", 0.3, True),
    ],
)
def test_parse_budget(text, metric, value, relative):
    budget = parse_budget(text)
    assert budget.metric == metric and budget.relative is relative
    assert budget.value == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("params", ["NAME=VALUE", "'params'"]),
        ("params=", ["NAME=VALUE"]),
        ("=0.5", ["NAME=VALUE"]),
        ("params=abc", ["'params'", "number", "'abc'"]),
        ("params=1.5", ["(0, 1]", "1.5", "'params'"]),
        ("params=150%", ["(0, 1]", "1.5"]),
        ("params=rel:0", ["(0, 1]", "'params'"]),
        ("latency_ms=0", ["> 0", "'latency_ms'"]),
        ("latency_ms=-3", ["> 0", "-3"]),
        ("macs=abs:0", ["> 0"]),
        ("latency_ms=nan", ["finite", "nan"]),
        ("latency_ms=inf", ["finite"]),
        ("latency_ms=abs:50%", ["abs:", "write 50% for the share or abs:<number>"]),  # was read as 50 % of the base
    ],
)
def test_parse_budget_errors(text, pieces):
    with pytest.raises(ValueError) as info:
        parse_budget(text)
    for piece in pieces:
        assert piece in str(info.value), (piece, str(info.value))


def test_budget_limit():
    assert Budget("params", 0.25, relative=True).limit(1_000_000) == 250_000.0
    assert Budget("latency_ms", 4.0, relative=False).limit(123.0) == 4.0
    assert Budget("params", 1, relative=True).limit(10) == 10.0
    with pytest.raises(ValueError, match="finite"):
        Budget("params", True, relative=True)
    with pytest.raises(ValueError, match="finite"):
        Budget("params", "0.5", relative=True)


# -- the cost registry ------------------------------------------------------------------------


def test_builtin_costs_resolve():
    assert resolve_cost("params") is count_params
    assert resolve_cost("macs") is count_macs
    assert set(BUILTIN_COSTS) == {"params", "macs", "latency_ms", "peak_memory_mb"}


def test_unknown_cost_lists_the_builtins():
    with pytest.raises(ValueError) as info:
        resolve_cost("flops")
    message = str(info.value)
    assert "'flops'" in message
    for name in BUILTIN_COSTS:
        assert name in message


@pytest.fixture
def user_costs(tmp_path, monkeypatch):
    """A package ``rp_user_costs_pkg`` on sys.path with cost functions, and the calls they got."""
    package = tmp_path / "rp_user_costs_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "energy.py").write_text(
        textwrap.dedent(
            """
            CALLS = []
            LIMIT = 3

            def joules(model, context):
                CALLS.append((model, context))
                return 2.5 * sum(p.numel() for p in model.parameters()) * context.options.get("scale", 1)

            def not_a_number(model, context):
                return float("nan")

            def text(model, context):
                return "heavy"

            def numeric_text(model, context):
                return "1.5"

            def broken(model, context):
                return {}["latency_table"]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("rp_user_costs_pkg.energy")
    for name in ("rp_user_costs_pkg.energy", "rp_user_costs_pkg"):
        sys.modules.pop(name, None)  # the next test's package lives in another tmp_path


def test_user_cost_is_called_with_model_and_context(user_costs):
    fn = resolve_cost("energy", "rp_user_costs_pkg.energy:joules")
    assert fn is user_costs.joules
    model = nn.Linear(4, 2)
    ctx = CostContext(input_shape=(4,), options={"scale": 2})
    costs = resolve_costs(["params"], {"energy": "rp_user_costs_pkg.energy:joules"})
    assert list(costs) == ["params", "energy"]
    values = measure_costs(model, costs, ctx)
    assert values == {"params": 10.0, "energy": 2.5 * 10 * 2}
    assert user_costs.CALLS == [(model, ctx)]
    assert user_costs.CALLS[0][0] is model and user_costs.CALLS[0][1] is ctx


def test_user_cost_errors(user_costs):
    with pytest.raises(TypeError, match="'energy'.*not callable"):
        resolve_cost("energy", "rp_user_costs_pkg.energy:LIMIT")
    with pytest.raises(ImportError, match="no_such"):
        resolve_cost("energy", "rp_user_costs_pkg.no_such:fn")
    with pytest.raises(ImportError, match="missing"):
        resolve_cost("energy", "rp_user_costs_pkg.energy:missing")
    with pytest.raises(ValueError, match="package.module:name"):
        resolve_cost("energy", "rp_user_costs_pkg.energy.joules")
    model, ctx = nn.Linear(4, 2), CostContext(input_shape=(4,))
    with pytest.raises(ValueError, match="'nan_cost'.*nan"):
        measure_costs(model, {"nan_cost": resolve_cost("nan_cost", "rp_user_costs_pkg.energy:not_a_number")}, ctx)
    with pytest.raises(TypeError, match="'text_cost'.*'heavy'"):
        measure_costs(model, {"text_cost": resolve_cost("text_cost", "rp_user_costs_pkg.energy:text")}, ctx)
    with pytest.raises(ValueError, match="'inf_cost'"):
        measure_costs(model, {"inf_cost": lambda m, c: math.inf}, ctx)


def test_user_cost_that_raises_is_named_with_its_exception_as_cause(user_costs):
    costs = resolve_costs(["params"], {"energy": "rp_user_costs_pkg.energy:broken"})
    with pytest.raises(CostFunctionError) as error:
        measure_costs(nn.Linear(4, 2), costs, CostContext(input_shape=(4,)))
    assert str(error.value) == (
        "Cost 'energy' (rp_user_costs_pkg.energy:broken) raised KeyError while measuring a Linear: "
        "'latency_table'"
    )
    assert isinstance(error.value.__cause__, KeyError)


def test_user_cost_returning_numeric_text_is_rejected(user_costs):
    fn = resolve_cost("text_cost", "rp_user_costs_pkg.energy:numeric_text")
    with pytest.raises(TypeError, match="'text_cost'"):
        measure_costs(nn.Linear(4, 2), {"text_cost": fn}, CostContext(input_shape=(4,)))


def test_measure_costs_accepts_numpy_and_tensor_scalars():
    model, ctx = nn.Linear(4, 2), CostContext(input_shape=(4,))
    values = measure_costs(model, {"a": lambda m, c: np.float32(1.5), "b": lambda m, c: torch.tensor(2.0)}, ctx)
    assert values == {"a": 1.5, "b": 2.0} and all(type(v) is float for v in values.values())


def test_the_base_models_latency_is_the_lowest_of_several_rounds_and_other_costs_are_measured_once():
    """A relative latency budget is a fraction of the base model's latency for the whole run: a round
    slowed by a moment's load must not loosen it (load only ever adds time)."""
    import doctest

    from rayprune.costs import registry
    from rayprune.costs.registry import BASE_TIMING_ROUNDS, measure_base_costs

    assert doctest.testmod(registry).failed == 0
    timings = iter([4.4, 2.8, 2.7, 2.9, 2.75])
    calls = {"latency_ms": 0, "params": 0}

    def latency(model, context):
        calls["latency_ms"] += 1
        return next(timings)

    def params(model, context):
        calls["params"] += 1
        return 10.0

    assert measure_base_costs(None, {"latency_ms": latency, "params": params}, None) == {"latency_ms": 2.7, "params": 10.0}
    assert calls == {"latency_ms": BASE_TIMING_ROUNDS, "params": 1}
    assert measure_base_costs(None, {"params": params}, None) == {"params": 10.0} and calls["params"] == 2


def test_a_problems_base_latency_is_measured_in_rounds(monkeypatch, tmp_path):
    from rayprune.config import parse_config
    from rayprune.costs import registry
    from rayprune.costs.registry import BASE_TIMING_ROUNDS
    from rayprune.problem import PruningProblem

    seen = []
    monkeypatch.setitem(registry.BUILTIN_COSTS, "latency_ms", lambda model, context: seen.append(1) or 5.0 - len(seen))
    cfg = parse_config({
        "name": "base-latency", "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.25}},
        "data": {"name": "digits", "device": "cpu"},
        "base_training": {"epochs": 1, "batch_size": 64, "cache_dir": str(tmp_path)},
        "costs": {"measure": ["params", "latency_ms"]}, "budgets": {"latency_ms": {"value": 0.5, "relative": True}},
    })
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")
    assert len(seen) == BASE_TIMING_ROUNDS and problem.base_costs["latency_ms"] == 5.0 - BASE_TIMING_ROUNDS


def test_a_cost_function_that_fails_on_the_smallest_model_is_told_which_model_that_was(tmp_path):
    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem

    cfg = parse_config({
        "name": "small-fails", "model": {"name": "small_cnn", "kwargs": {"width_mult": 0.25}},
        "data": {"name": "digits", "device": "cpu"},
        "base_training": {"epochs": 1, "batch_size": 64, "cache_dir": str(tmp_path)},
        "costs": {"custom": {"energy": "crl_user_costs:fails_on_small_models"}, "options": {"fail_below": 500}},
        "budgets": {"params": 0.5}, "pruning": {"min_keep": 0.1},
    })
    problem = PruningProblem.from_config(cfg, progress=False, log=lambda m: None, device="cpu")
    assert problem.base_costs["energy"] > 500  # the base model is measured fine
    with pytest.raises(CostFunctionError) as error:
        problem.reachable()
    message = str(error.value)
    assert "'energy'" in message and "smallest model the search can build" in message and "min_keep=0.1" in message
    assert "a cost function must handle every model" in message and error.value.cost == "energy"
    assert isinstance(error.value.__cause__, KeyError)

    def broken(model, context):  # as the MACs count failed on an attention layer the heads did not divide
        raise RuntimeError("`embed_dim` must divide evenly by `num_heads`")

    problem.costs = {"params": problem.costs["params"], "macs": broken}
    with pytest.raises(CostFunctionError) as error:
        problem.reachable()
    message = str(error.value)  # a built-in cost failing means the pruned model does not run: not the user's cost
    assert "rayprune's own cost could not run this pruned model" in message and "pruning.ignored_layers" in message
    assert "a cost function must handle" not in message and error.value.cost == "macs"


def test_a_budget_the_unpruned_model_already_meets_is_warned_about_with_the_likely_meaning():
    """`--budget latency_ms=0.8` is 0.8 ms: above a 0.36 ms base, it prunes nothing; the line says how to write 80 %."""
    from types import SimpleNamespace

    from rayprune.costs.budget import Budget
    from rayprune.costs.levels import Level
    from rayprune.search.prune import loose_budget_lines

    problem = SimpleNamespace(base_costs={"latency_ms": 0.36, "params": 1000.0})
    meant_ms = Level.from_budgets([Budget("latency_ms", 0.8, False)], problem.base_costs)
    [line] = loose_budget_lines(problem, [meant_ms])
    assert "already meets latency_ms <= 0.8 (it has 0.36)" in line and "latency_ms=80% or rel:0.8" in line
    binding = [Level.from_budgets([Budget("latency_ms", 0.8, True)], problem.base_costs),
               Level.from_budgets([Budget("params", 0.5, True)], problem.base_costs)]
    assert loose_budget_lines(problem, binding) == []
    [whole] = loose_budget_lines(problem, [Level.from_budgets([Budget("params", 1.0, True)], problem.base_costs)])
    assert "nothing is pruned" in whole and "rel:" not in whole  # 100 % of the base: no unit mix-up to suggest


def test_an_absolute_budget_written_as_a_fraction_is_told_how_to_write_a_fraction():
    """`fb=0.4` on a cost of one's own is 0.4 bytes: unreachable, and the message says `fb=40%` (or rel:0.4)."""
    from types import SimpleNamespace

    from rayprune.costs.budget import Budget
    from rayprune.costs.levels import Level
    from rayprune.search.prune import BudgetUnreachable, check_reachable

    base = {"fb": 104_000.0, "params": 30_000.0}
    problem = SimpleNamespace(base_costs=base, reachable=lambda: {"fb": 12_900.0, "params": 900.0},
                              config=SimpleNamespace(pruning=SimpleNamespace(min_keep=0.1)),
                              space=SimpleNamespace(skipped=[], unbuildable=[]), unpruned_parameters=lambda: [])
    with pytest.raises(BudgetUnreachable, match=r"fb <= 0.4 .* absolute, in the cost's own unit; .* fb=40% \(or rel:0.4\)"):
        check_reachable(problem, [Level.from_budgets([Budget("fb", 0.4, False)], base)])
    with pytest.raises(BudgetUnreachable) as meant_bytes:  # 5,000 bytes meant as such: no fraction to suggest
        check_reachable(problem, [Level.from_budgets([Budget("fb", 5000.0, False)], base)])
    assert "absolute" not in str(meant_bytes.value)
    with pytest.raises(BudgetUnreachable) as relative:  # already a fraction (1 % of params): the plain advice
        check_reachable(problem, [Level.from_budgets([Budget("params", 0.01, True)], base)])
    assert "absolute" not in str(relative.value) and "left unpruned" not in str(relative.value)
    # costs measured already are used as they are: a latency timed twice read twice (validate's table and error)
    measured_once = SimpleNamespace(**{**vars(problem), "reachable": lambda: pytest.fail("measured again")})
    with pytest.raises(BudgetUnreachable, match=r"fb <= 5k but the smallest model in the space has 7k"):
        check_reachable(measured_once, [Level.from_budgets([Budget("fb", 5000.0, False)], base)],
                        smallest={"fb": 7000.0, "params": 900.0})
    # groups left whole (hand-written attention heads): the advice to lower min_keep alone could not help
    problem.space = SimpleNamespace(skipped=[], unbuildable=[("attn.qkv", "RuntimeError: shape"), ("mlp.2", "x")])
    with pytest.raises(BudgetUnreachable, match=r"Lower pruning.min_keep .* 2 group\(s\) of the model are left "
                                                r"unpruned \(rooted at \['attn.qkv', 'mlp.2'\]; the warning above"):
        check_reachable(problem, [Level.from_budgets([Budget("params", 0.01, True)], base)])


def test_a_limit_the_unpruned_model_meets_is_reachable_whatever_the_smallest_model_measures():
    """A cost of one's own that does not shrink with the model (0 on the base, or minus the parameters): validate
    said the unpruned model already meets the limit, then refused the budget as unreachable."""
    from types import SimpleNamespace

    from rayprune.costs.budget import Budget
    from rayprune.costs.levels import Level
    from rayprune.search.prune import BudgetUnreachable, check_reachable

    base = {"mine": -15_400.0, "params": 15_400.0}
    problem = SimpleNamespace(base_costs=base, reachable=lambda: {"mine": -200.0, "params": 200.0},
                              config=SimpleNamespace(pruning=SimpleNamespace(min_keep=0.1)),
                              space=SimpleNamespace(skipped=[], unbuildable=[]), unpruned_parameters=lambda: [])
    lines: list = []
    level = Level.from_budgets([Budget("mine", 0.5, True), Budget("params", 0.5, True)], base)  # rel: -7.7k
    assert check_reachable(problem, [level], log=lines.append)["mine"] == -200.0
    assert len(lines) == 1 and "already meets mine" in lines[0]
    problem.base_costs = {**base, "mine": 15_400.0}  # the base misses it too: refused as before
    with pytest.raises(BudgetUnreachable, match=r"mine <= -7.7k but the smallest model in the space has -200"):
        check_reachable(problem, [Level.from_budgets([Budget("mine", 0.5, True)], base)])


def _nan_cost(model, context):
    return float("nan")


def _tensor_cost(model, context):
    return sum(p.sum() for p in model.parameters()).abs()  # 0-d, requires_grad


def test_a_cost_returning_nan_names_its_function_and_a_0d_tensor_with_grad_is_taken_quietly():
    """A NaN cost said only "Cost 'mycost' returned nan, which is not finite." (no function, no model, and a double
    period inside the no-model error); a 0-d tensor with grad made torch warn from inside rayprune."""
    from rayprune.costs.registry import measure_costs
    from rayprune.errors import UserError

    net, ctx = nn.Linear(3, 2), CostContext(input_shape=(3,))
    with pytest.raises(UserError, match=r"^Cost 'mine' \(test_costs:_nan_cost\) returned nan while measuring a Linear: "
                                        r"expected a finite number$"):
        measure_costs(net, {"mine": _nan_cost}, ctx)
    with pytest.raises(UserError, match="must return a number"):  # a bool is no cost, tensor or not
        measure_costs(net, {"mine": lambda model, context: torch.tensor(True)}, ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = measure_costs(net, {"mine": _tensor_cost}, ctx)["mine"]
    assert value == pytest.approx(float(_tensor_cost(net, ctx)))


def test_latency_timed_with_onnx_runtime_on_unaligned_channel_counts_is_warned_about():
    """ONNX Runtime ran a layer of 46 channels 2.6x slower than one of 48 (BENCHMARKS.md, "ONNX Runtime and channel
    counts"): with round_to 1 a user's pruned MobileNet was slower than the unpruned one, and nothing said why."""
    from rayprune.config import parse_config
    from rayprune.problem import warn_if_unaligned_for_runtime

    def said(**sections):
        lines = []
        warn_if_unaligned_for_runtime(parse_config(sections), lines.append)
        return lines

    ort = {"measure": ["params", "latency_ms"], "latency": {"runtime": "onnxruntime"}}
    [line] = said(costs=ort)
    assert "pruning.round_to is 1" in line and "set pruning.round_to: 8" in line
    assert said(costs={"latency": {"runtime": "onnxruntime"}}, sweep={"budgets": {"latency_ms": [0.8, 0.5]}})
    assert not said(costs=ort, pruning={"round_to": 8}) and not said(costs=ort, pruning={"round_to": 16})
    assert not said(costs={**ort, "latency": {"runtime": "torch"}})  # eager time follows the channels alone
    assert not said(costs={"measure": ["params"], "latency": {"runtime": "onnxruntime"}})  # nothing timed
