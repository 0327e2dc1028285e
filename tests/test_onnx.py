"""ONNX: ``model.onnx`` next to every exported model, and latency measured in each runtime."""

from __future__ import annotations

import json
import math
import sys
import typing

import numpy as np
import pytest
import torch
from conftest import ConcatResidualNet
from torch import nn

from rayprune.config import ConfigError, LatencyConfig, parse_config
from rayprune.costs import CostContext, count_params, measure_latency_ms
from rayprune.costs.context import LATENCY_RUNTIMES
from rayprune.errors import UserError
from rayprune.models import list_models
from rayprune.pruning import PruningPlan, PruningSpace, onnx_export, read_spec, save_pruned

IMAGE = (3, 16, 16)
# zoo name -> architecture for load_model; small widths and 16x16 images so the test is fast
ZOO = {
    name: dict(name=name, num_classes=10, in_channels=3, input_size=16, in_features=None,
               kwargs={"hidden_sizes": [24, 12]} if name == "mlp" else {"width_mult": 0.25})
    for name in list_models()
}  # fmt: skip


def _ort():
    return pytest.importorskip("onnxruntime")


def _run_onnx(path, x: torch.Tensor) -> torch.Tensor:
    ort = _ort()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {onnx_export.INPUT_NAME: x.numpy()})
    return torch.from_numpy(out)


def _mixed_ratios(space: PruningSpace, seed: int) -> list[float]:
    """A different keep ratio per group, between 0.3 and 0.9."""
    gen = torch.Generator().manual_seed(seed)
    return (0.3 + 0.6 * torch.rand(space.num_groups, generator=gen)).tolist()


def _assert_same_outputs(path, model: torch.nn.Module, shape, batches=(5, 1)) -> None:
    """ONNX Runtime agrees with PyTorch at batch sizes other than the export's (2)."""
    gen = torch.Generator().manual_seed(0)
    for n in batches:
        x = torch.randn(n, *shape, generator=gen)
        with torch.no_grad():
            expected = model.eval()(x)
        got = _run_onnx(path, x)
        assert got.shape == expected.shape == (n, expected.shape[1])
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_model_exports_to_onnx_that_matches_pytorch(make_model, tmp_path, name):
    _ort()
    architecture, shape = ZOO[name], IMAGE
    model = make_model(name, in_channels=3, input_size=16, **architecture["kwargs"])
    space = PruningSpace(model, torch.randn(1, *shape))
    ratios = _mixed_ratios(space, seed=len(name))
    pruned, plan = space.build(ratios), space.plan(ratios)
    assert count_params(pruned) < count_params(model)  # a real plan was applied
    directory = save_pruned(pruned, tmp_path, architecture=architecture, plan=plan, input_shape=shape,
                            torchscript=False)  # fmt: skip
    spec = read_spec(directory)
    assert spec["files"]["onnx"] == "model.onnx" and spec["onnx_error"] is None
    _assert_same_outputs(directory / "model.onnx", pruned, shape)


def test_concat_residual_user_model_exports_with_a_dynamic_batch(concat_net, tmp_path):
    _ort()
    onnx = pytest.importorskip("onnx")
    shape = ConcatResidualNet.input_shape
    space = PruningSpace(concat_net, torch.zeros(1, *shape))
    ratios = _mixed_ratios(space, seed=3)
    pruned, plan = space.build(ratios), space.plan(ratios)
    assert pruned.merge[0].in_channels < 16  # the concatenation was pruned on both branches
    directory = save_pruned(pruned, tmp_path, architecture=None, plan=plan, input_shape=shape)
    spec = read_spec(directory)
    assert spec["files"] == {"weights": "weights.pt", "module": "model.pt",
                             "torchscript": "model.torchscript.pt", "onnx": "model.onnx"}  # fmt: skip
    graph = onnx.load(str(directory / "model.onnx")).graph
    for value in (graph.input[0], graph.output[0]):  # dimension 0 is symbolic, the rest fixed
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "batch" and not dims[0].HasField("dim_value"), value
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim[1:]] == list(shape)
    _assert_same_outputs(directory / "model.onnx", pruned, shape, batches=(7, 1, 3))


def test_export_onnx_leaves_the_model_and_global_rng_alone(concat_net, tmp_path):
    _ort()
    concat_net.train()
    state = torch.get_rng_state()
    onnx_export.export_onnx(concat_net, tmp_path / "m.onnx", ConcatResidualNet.input_shape)
    assert concat_net.training and all(m.training for m in concat_net.modules())
    assert torch.equal(torch.get_rng_state(), state)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp file of the atomic write
    import onnx  # called alone, the file still describes its input (it did only when written by save_pruned)

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert props == {"rayprune.input_shape": json.dumps(list(ConcatResidualNet.input_shape)),
                     "rayprune.input_dtype": "float32"}
    _assert_same_outputs(tmp_path / "m.onnx", concat_net.eval(), ConcatResidualNet.input_shape)


def test_the_torch_export_based_exporter_takes_over_when_the_first_fails(concat_net, tmp_path, monkeypatch):
    _ort()
    pytest.importorskip("onnxscript")
    calls = []

    def failing(model, x, opset=None):
        calls.append(x.shape[0])
        raise RuntimeError("exporter gone")

    monkeypatch.setattr(onnx_export, "_EXPORTERS", (("first", failing), *onnx_export._EXPORTERS[1:]))
    directory = save_pruned(concat_net, tmp_path, architecture=None, plan=PruningPlan(),
                            input_shape=ConcatResidualNet.input_shape, torchscript=False)  # fmt: skip
    assert calls == [2] and read_spec(directory)["files"]["onnx"] == "model.onnx"
    assert read_spec(directory)["onnx_exporter"] == "torch.export-based exporter"
    import onnx  # the opset a device's runtime must support is recorded, as the file declares it

    declared = [o.version for o in onnx.load(str(directory / "model.onnx")).opset_import if o.domain in ("", "ai.onnx")]
    assert read_spec(directory)["onnx_opset"] == declared[0] >= 7
    props = {p.key: p.value for p in onnx.load(str(directory / "model.onnx")).metadata_props}
    assert json.loads(props["rayprune.input_shape"]) == list(ConcatResidualNet.input_shape)
    assert props["rayprune.input_dtype"] == "float32"
    _assert_same_outputs(directory / "model.onnx", concat_net, ConcatResidualNet.input_shape)
    # the file carries no stack traces: they held the paths of the user's source files (and most of the bytes)
    data = (directory / "model.onnx").read_bytes()
    assert b"conftest.py" not in data and b"stack_trace" not in data, "node metadata left in the shipped file"
    import onnx

    assert not any(n.metadata_props for n in onnx.load_from_string(data).graph.node)


def test_a_failing_export_still_writes_the_other_files(concat_net, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Unsupported: ONNX export of operator aten::frobnicate\nwith a second line")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    directory = save_pruned(concat_net, tmp_path, architecture=None, plan=PruningPlan(),
                            input_shape=ConcatResidualNet.input_shape)  # fmt: skip
    spec = read_spec(directory)
    assert spec["files"] == {"weights": "weights.pt", "module": "model.pt",
                             "torchscript": "model.torchscript.pt", "onnx": None}  # fmt: skip
    reason = spec["onnx_error"]
    assert "aten::frobnicate" in reason and "\n" not in reason, reason
    assert sorted(p.name for p in directory.iterdir()) == ["model.pt", "model.torchscript.pt", "spec.json",
                                                            "weights.pt"]  # fmt: skip
    assert json.loads((directory / "spec.json").read_text()) == spec


def test_a_failed_onnx_export_is_stated_in_the_level_result_and_the_prune_summary(concat_net, tmp_path,
                                                                                  monkeypatch):
    from rayprune.search.prune import summary_table
    from rayprune.search.selection import _onnx_error

    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no frobnicate")))
    directory = save_pruned(concat_net, tmp_path, architecture=None, plan=PruningPlan(),
                            input_shape=ConcatResidualNet.input_shape)  # fmt: skip
    reason = _onnx_error(directory)
    assert "no frobnicate" in reason
    summary = {"model": "m", "dataset": "d", "agent": "a", "budgets": {}, "feasible": True,
               "base": {"params": 10.0}, "pruned": {"params": 5.0}, "onnx_error": reason}
    assert "model.onnx not written: " in summary_table(summary)
    assert "model.onnx" not in summary_table({**summary, "onnx_error": None})


def test_without_onnx_installed_the_spec_says_how_to_get_it(concat_net, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what an environment without the package looks like
    directory = save_pruned(concat_net, tmp_path, architecture=None, plan=PruningPlan(),
                            input_shape=ConcatResidualNet.input_shape, torchscript=False)  # fmt: skip
    spec = read_spec(directory)
    assert spec["files"]["onnx"] is None and not (directory / "model.onnx").exists()
    assert spec["onnx_error"] == "onnx not installed (pip install 'rayprune[onnx]')"
    assert (directory / "weights.pt").is_file() and (directory / "model.pt").is_file()
    with pytest.raises(ImportError, match=r"rayprune\[onnx\]"):
        onnx_export.export_onnx(concat_net, tmp_path / "m.onnx", ConcatResidualNet.input_shape)


# -- latency in each runtime -----------------------------------------------------------------------


@pytest.mark.parametrize("runtime", LATENCY_RUNTIMES)
def test_latency_in_each_runtime_is_positive_and_finite(concat_net, runtime):
    if runtime == "onnxruntime":
        _ort()
    concat_net.train()
    ctx = CostContext(input_shape=ConcatResidualNet.input_shape, batch_size=3, threads=1, warmup=1, repeats=3,
                      runtime=runtime)  # fmt: skip
    threads = torch.get_num_threads()
    latency = measure_latency_ms(concat_net, ctx)
    assert math.isfinite(latency) and latency > 0
    assert concat_net.training and torch.get_num_threads() == threads  # left as it was


@pytest.mark.parametrize("runtime", LATENCY_RUNTIMES)
def test_every_cost_runs_on_a_model_fed_token_ids(runtime):
    """Token ids (int64) through every latency runtime, MACs and peak memory: each makes its input from the context."""
    from rayprune.costs import count_macs, measure_peak_memory_mb

    if runtime == "onnxruntime":
        _ort()

    class TextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.conv, self.head = nn.Embedding(30, 8), nn.Conv1d(8, 16, 3), nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.conv(self.emb(x).transpose(1, 2)).mean(dim=2))

    net = TextNet().eval()
    ctx = CostContext(input_shape=(10,), batch_size=2, threads=1, warmup=1, repeats=2, runtime=runtime,
                      input_dtype="int64")
    assert ctx.example_inputs().dtype == torch.int64
    latency = measure_latency_ms(net, ctx)
    assert math.isfinite(latency) and latency > 0
    assert count_macs(net, ctx) == 16 * 8 * 3 * 8 + 16 * 2  # the conv over 8 positions, the head
    assert measure_peak_memory_mb(net, ctx) >= 0


def test_onnxruntime_latency_without_onnxruntime_names_the_extra(concat_net, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    ctx = CostContext(input_shape=ConcatResidualNet.input_shape, warmup=0, repeats=1, runtime="onnxruntime")
    with pytest.raises(UserError, match=r"onnxruntime.*pip install 'rayprune\[onnx\]'"):
        measure_latency_ms(concat_net, ctx)


def test_onnxruntime_latency_is_cpu_only(concat_net):
    ctx = CostContext(input_shape=ConcatResidualNet.input_shape, device="cuda", runtime="onnxruntime")
    with pytest.raises(UserError, match="measures on CPU"):
        measure_latency_ms(concat_net, ctx)


def test_config_runtime_default_choices_and_errors():
    assert parse_config({}).costs.latency.runtime == "torch"
    assert typing.get_args(LatencyConfig.model_fields["runtime"].annotation) == LATENCY_RUNTIMES
    assert parse_config({"costs": {"latency": {"runtime": "torchscript"}}}).costs.latency.runtime == "torchscript"
    with pytest.raises(ConfigError, match=r"costs\.latency\.runtime: .*'onnxruntime'.*got 'tensorrt'"):
        parse_config({"costs": {"latency": {"runtime": "tensorrt"}}})
    with pytest.raises(ConfigError, match=r"costs\.latency: .*'onnxruntime' measures on CPU; got device 'cuda'"):
        parse_config({"costs": {"latency": {"runtime": "onnxruntime", "device": "cuda"}}})
    with pytest.raises(ValueError, match=r"'runtime'.*got 'tensorrt'"):
        CostContext(input_shape=(3,), runtime="tensorrt")


def test_onnx_latency_model_matches_pytorch():
    """The session timed for ``runtime: onnxruntime`` runs the same function as the module."""
    _ort()
    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).eval()
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_export.onnx_bytes(model, (6,)), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x))
    torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": x})[0]), expected, atol=1e-5, rtol=1e-5)


def test_export_onnx_opset_sets_the_opset_of_the_file_and_of_the_timed_model(concat_net, tmp_path, monkeypatch):
    """The opset was fixed at the exporter's default (20): a device's older runtime (ORT Mobile, NNAPI) could not
    load the file, and the only way out was to load the model and export it again by hand."""
    _ort()
    import onnx

    from rayprune.config import parse_config
    from rayprune.costs.context import CostContext
    from rayprune.costs.metrics import measure_latency_ms

    for opset in (13, 17):
        directory = save_pruned(concat_net, tmp_path / str(opset), architecture=None, plan=PruningPlan(),
                                input_shape=ConcatResidualNet.input_shape, torchscript=False, onnx_opset=opset)
        declared = [o.version for o in onnx.load(str(directory / "model.onnx")).opset_import
                    if o.domain in ("", "ai.onnx")]
        assert declared == [opset] and read_spec(directory)["onnx_opset"] == opset
        _assert_same_outputs(directory / "model.onnx", concat_net, ConcatResidualNet.input_shape)
    assert parse_config({"export": {"onnx_opset": 13}}).export.onnx_opset == 13
    onnx_export.check_onnx_opset(concat_net, ConcatResidualNet.input_shape, "float32", 13)  # writable: nothing said
    onnx_export.check_onnx_opset(concat_net, ConcatResidualNet.input_shape, "float32", None)
    with pytest.raises(UserError, match=r"export.onnx_opset is 99, .* up to \d+"):
        onnx_export.check_onnx_opset(concat_net, ConcatResidualNet.input_shape, "float32", 99)
    with pytest.raises(ValueError, match="onnx_opset"):
        parse_config({"export": {"onnx_opset": 3}})
    pytest.importorskip("onnxscript")  # the torch.export-based exporter writes opset 18 when asked for 13: refused
    monkeypatch.setattr(onnx_export, "_EXPORTERS", (("first", lambda m, x, opset=None: 1 / 0),
                                                    *onnx_export._EXPORTERS[1:]))
    directory = save_pruned(concat_net, tmp_path / "fallback", architecture=None, plan=PruningPlan(),
                            input_shape=ConcatResidualNet.input_shape, torchscript=False, onnx_opset=13)
    spec = read_spec(directory)
    assert spec["files"]["onnx"] is None and "asked for opset 13, it wrote opset 18" in spec["onnx_error"]
    monkeypatch.undo()
    seen, real = [], onnx_export._exported
    monkeypatch.setattr(onnx_export, "_exported", lambda *a: seen.append(a[3]) or real(*a))
    context = CostContext(input_shape=ConcatResidualNet.input_shape, runtime="onnxruntime", repeats=2, warmup=1,
                          onnx_opset=13)  # the latency timed in ONNX Runtime is the file's: the same opset
    assert measure_latency_ms(concat_net, context) > 0 and seen == [13]
