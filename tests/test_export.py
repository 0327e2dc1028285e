"""Tests for saving and loading pruned models (rayprune.pruning.export)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

import rayprune
from rayprune.costs import count_params
from rayprune.errors import UserError
from rayprune.models import load_model
from rayprune.pruning import PruningPlan, PruningSpace, load_pruned, read_spec, save_pruned
from rayprune.pruning.export import UntrustedArchitectureError

CIFAR = (3, 32, 32)

# name -> (architecture for load_model, keep ratios)
CASES = {
    "vgg11": (
        dict(name="vgg11", num_classes=10, in_channels=3, input_size=32, in_features=None,
             kwargs={"width_mult": 0.25}),
        0.4,
    ),
    "resnet20": (
        dict(name="resnet20", num_classes=10, in_channels=3, input_size=32, in_features=None, kwargs={}),
        [0.3, 0.9, 0.5, 0.7, 0.25, 1.0, 0.6, 0.45, 0.8, 0.35, 0.55, 0.65],
    ),
}  # fmt: skip


@torch.no_grad()
def forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.eval()(x)


def prune_and_finetune(make_model, architecture: dict, ratios):
    """A pruned zoo model whose weights then change (as fine-tuning would), and its plan."""
    model = make_model(architecture["name"], num_classes=architecture["num_classes"], **architecture["kwargs"])
    space = PruningSpace(model, torch.randn(1, *CIFAR))
    pruned = space.build(ratios)
    with torch.no_grad():
        for p in pruned.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return pruned, space.plan(ratios)


@pytest.fixture(scope="module")
def saved(make_model, tmp_path_factory):
    """Both cases saved to disk, plus their in-process outputs on a fixed input file."""
    root = tmp_path_factory.mktemp("export")
    x = torch.randn(3, *CIFAR, generator=torch.Generator().manual_seed(0))
    torch.save(x, root / "input.pt")
    out = {}
    for name, (architecture, ratios) in CASES.items():
        torch.manual_seed(1)
        pruned, plan = prune_and_finetune(make_model, architecture, ratios)
        directory = save_pruned(
            pruned, root / name, architecture=architecture, plan=plan, input_shape=CIFAR, extra={"note": name}
        )
        out[name] = dict(model=pruned, plan=plan, dir=directory, y=forward(pruned, x))
    return root, x, out


def test_loads_in_a_fresh_process(saved):
    root, _, cases = saved
    script = textwrap.dedent(
        """
        import sys, torch, rayprune
        root = sys.argv[1]
        x = torch.load(f"{root}/input.pt", weights_only=True)
        outputs = {}
        for name in sys.argv[2:]:
            model = rayprune.load_pruned(f"{root}/{name}")
            assert not model.training
            with torch.no_grad():
                outputs[name] = model(x)
            outputs[name + ".params"] = torch.tensor(sum(p.numel() for p in model.parameters()))
        torch.save(outputs, f"{root}/outputs.pt")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(root), *cases], capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    outputs = torch.load(root / "outputs.pt", weights_only=True)
    for name, case in cases.items():
        assert outputs[name].shape == (3, 10)
        torch.testing.assert_close(outputs[name], case["y"], atol=1e-5, rtol=1e-5)
        assert int(outputs[name + ".params"]) == count_params(case["model"])


@pytest.mark.parametrize("name", list(CASES))
def test_loaded_model_matches_the_pruned_one(saved, name):
    _, x, cases = saved
    case = cases[name]
    loaded = load_pruned(case["dir"])
    assert not loaded.training
    assert count_params(loaded) == count_params(case["model"])
    expected = case["model"].state_dict()
    assert loaded.state_dict().keys() == expected.keys()
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, expected[key]), key
    torch.testing.assert_close(forward(loaded, x), case["y"], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(CASES))
def test_directory_contents(saved, name):
    _, _, cases = saved
    case = cases[name]
    spec = json.loads((case["dir"] / "spec.json").read_text())
    assert spec == read_spec(case["dir"])
    assert spec["format"] == "rayprune.pruned/1"
    assert spec["rayprune_version"] == rayprune.__version__
    assert spec["architecture"] == CASES[name][0]
    assert spec["plan"] == case["plan"].to_json() and len(spec["plan"]) > 0
    assert spec["input_shape"] == list(CIFAR)
    assert spec["note"] == name
    state = torch.load(case["dir"] / "weights.pt", weights_only=True)
    expected = case["model"].state_dict()
    assert state.keys() == expected.keys()
    assert all(torch.equal(state[k], expected[k]) for k in state)
    # No temporary files of the atomic writes are left behind.
    onnx = ["model.onnx"] if spec["files"]["onnx"] else []  # with the onnx extra
    assert sorted(p.name for p in case["dir"].iterdir()) == sorted(
        ["spec.json", "weights.pt", "model.pt", "model.torchscript.pt", *onnx]
    )


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", list(CASES))
def test_torchscript_file_gives_the_same_outputs(saved, name):
    _, x, cases = saved
    case = cases[name]
    spec = read_spec(case["dir"])
    assert spec["files"]["torchscript"] == "model.torchscript.pt"  # both zoo models can be traced
    scripted = torch.jit.load(str(case["dir"] / spec["files"]["torchscript"]))
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), case["y"], atol=1e-5, rtol=1e-5)
    # no debug tables with this machine's source paths (the model's, rayprune's), no stored probe input
    import zipfile

    names = zipfile.ZipFile(case["dir"] / spec["files"]["torchscript"]).namelist()
    assert not [n for n in names if n.endswith(".debug_pkl") or "traced_inputs" in n], names
    assert {n.split("/", 1)[0] for n in names} == {"model"}
    data = (case["dir"] / spec["files"]["torchscript"]).read_bytes()
    assert str(Path(rayprune.__file__).parent).encode() not in data


def test_missing_spec_is_named(tmp_path):
    (tmp_path / "weights.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="spec.json"):
        load_pruned(tmp_path)


def test_wrong_format_is_rejected(saved, tmp_path):
    _, _, cases = saved
    spec = read_spec(cases["vgg11"]["dir"])
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "format": "something/else"}))
    with pytest.raises(ValueError, match="rayprune.pruned/1"):
        load_pruned(tmp_path)


def test_unimportable_architecture_needs_allow_pickle(make_model, tmp_path):
    architecture, ratios = CASES["vgg11"]
    pruned, plan = prune_and_finetune(make_model, architecture, ratios)
    gone = {**architecture, "name": "rp_package_that_is_gone.nets:make_vgg"}
    directory = save_pruned(pruned, tmp_path / "m", architecture=gone, plan=plan, input_shape=CIFAR)
    with pytest.raises(UntrustedArchitectureError, match="allow_factories"):
        load_pruned(directory)  # a factory named by the file is refused before anything is imported
    with pytest.raises(RuntimeError, match="allow_pickle=True") as info:
        load_pruned(directory, allow_factories=[gone["name"]])  # allowed, but not importable here
    assert "rp_package_that_is_gone" in str(info.value)
    loaded = load_pruned(directory, allow_pickle=True)
    assert not loaded.training
    x = torch.randn(2, *CIFAR)
    torch.testing.assert_close(forward(loaded, x), forward(pruned, x), atol=1e-5, rtol=1e-5)


def test_no_architecture_needs_allow_pickle(make_model, tmp_path):
    architecture, ratios = CASES["vgg11"]
    pruned, plan = prune_and_finetune(make_model, architecture, ratios)
    directory = save_pruned(pruned, tmp_path, architecture=None, plan=plan, input_shape=CIFAR, torchscript=False)
    assert read_spec(directory)["files"]["torchscript"] is None
    assert not (directory / "model.torchscript.pt").exists()
    with pytest.raises(RuntimeError, match="no architecture.*allow_pickle"):
        load_pruned(directory)
    assert count_params(load_pruned(directory, allow_pickle=True)) == count_params(pruned)


class DataDependent(nn.Module):
    """Returns a Python list for an all-zero input: ``torch.jit.trace`` refuses that output."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.fc(x)
        return y if bool(x.any()) else y.tolist()


def test_untraceable_model_is_saved_without_torchscript(tmp_path):
    directory = save_pruned(DataDependent(), tmp_path, architecture=None, plan=PruningPlan(), input_shape=(4,))
    assert read_spec(directory)["files"]["torchscript"] is None
    assert not (directory / "model.torchscript.pt").exists()
    assert (directory / "weights.pt").is_file() and (directory / "model.pt").is_file()


def test_unpicklable_module_is_still_saved(tmp_path):
    architecture = dict(name="mlp", num_classes=2, in_features=4, kwargs={"hidden_sizes": [3]})
    model = load_model(**architecture).eval()
    model.post = lambda y: y  # e.g. a model keeping a lambda: torch.save(model) cannot pickle it
    directory = save_pruned(model, tmp_path, architecture=architecture, plan=PruningPlan(), input_shape=(4,))
    x = torch.randn(2, 4)
    torch.testing.assert_close(forward(load_pruned(directory), x), forward(model, x))


def test_save_leaves_the_model_mode_alone(make_model, tmp_path):
    architecture, ratios = CASES["vgg11"]
    pruned, plan = prune_and_finetune(make_model, architecture, ratios)
    pruned.train()  # saving a checkpoint in the middle of fine-tuning
    save_pruned(pruned, tmp_path, architecture=architecture, plan=plan, input_shape=CIFAR, torchscript=False)
    assert pruned.training


def _tampered(saved, tmp_path, architecture):
    """A copy of the saved vgg11 directory whose spec.json names ``architecture`` instead."""
    import shutil

    _, _, cases = saved
    directory = tmp_path / "tampered"
    shutil.copytree(cases["vgg11"]["dir"], directory)
    spec = read_spec(directory)
    (directory / "spec.json").write_text(json.dumps({**spec, "architecture": architecture}))
    return directory


def test_a_tampered_spec_cannot_run_a_shell_command(saved, tmp_path):
    marker = tmp_path / "pwned"
    evil = {"name": "subprocess:run", "num_classes": 10, "kwargs": {"args": f"touch {marker}", "shell": True}}
    directory = _tampered(saved, tmp_path, evil)
    with pytest.raises(UntrustedArchitectureError, match="subprocess:run") as info:
        load_pruned(directory)
    assert "factory=" in str(info.value) and "allow_factories" in str(info.value)  # says how to allow it
    assert not marker.exists()
    # in a fresh process, as someone handed the directory would load it
    code = "import sys, rayprune; rayprune.load_pruned(sys.argv[1])"
    result = subprocess.run([sys.executable, "-c", code, str(directory)], capture_output=True, text=True, timeout=240)
    assert result.returncode != 0 and "UntrustedArchitectureError" in result.stderr
    assert not marker.exists()


def test_a_zoo_name_with_a_torchvision_download_is_refused(saved, tmp_path):
    directory = _tampered(saved, tmp_path, {"name": "torchvision:resnet18", "num_classes": 10,
                                            "kwargs": {"weights": "IMAGENET1K_V1"}})
    with pytest.raises(UntrustedArchitectureError, match="download"):
        load_pruned(directory)


def test_an_unknown_zoo_name_is_refused(saved, tmp_path):
    directory = _tampered(saved, tmp_path, {"name": "vgg11_but_not", "num_classes": 10, "kwargs": {}})
    with pytest.raises(ValueError, match="not a rayprune zoo model"):
        load_pruned(directory)


def make_user_vgg(num_classes, width_mult=1.0):
    """A user factory (here it builds the zoo's vgg11; a factory of the user's own package in practice)."""
    return load_model("vgg11", num_classes=num_classes, kwargs={"width_mult": width_mult})


def test_a_user_factory_loads_when_the_caller_passes_it(make_model, tmp_path):
    architecture, ratios = CASES["vgg11"]
    pruned, plan = prune_and_finetune(make_model, architecture, ratios)
    mine = {**architecture, "name": "test_export:make_user_vgg"}
    directory = save_pruned(pruned, tmp_path, architecture=mine, plan=plan, input_shape=CIFAR, torchscript=False)
    with pytest.raises(UntrustedArchitectureError):
        load_pruned(directory)
    x = torch.randn(2, *CIFAR)
    by_callable = load_pruned(directory, factory=make_user_vgg)
    torch.testing.assert_close(forward(by_callable, x), forward(pruned, x), atol=1e-5, rtol=1e-5)
    by_name = load_pruned(directory, allow_factories=["test_export:make_user_vgg"])
    torch.testing.assert_close(forward(by_name, x), forward(pruned, x), atol=1e-5, rtol=1e-5)
    with pytest.raises(UntrustedArchitectureError):  # an allow-list for another factory does not help
        load_pruned(directory, allow_factories=["test_export:something_else"])
    # a factory that builds another network (here: twice as wide) is told so, with the first mismatch
    with pytest.raises(UserError) as info:
        load_pruned(directory, factory=lambda num_classes, width_mult: make_user_vgg(num_classes, width_mult=2 * width_mult))
    message = str(info.value)
    assert "does not build the network that was pruned" in message and str(directory) in message
    assert "factory=" in message and "\n" not in message


def test_malformed_spec_json_is_named(saved, tmp_path):
    directory = _tampered(saved, tmp_path, None)
    (directory / "spec.json").write_bytes(b"\x00\xff not json")
    with pytest.raises(ValueError, match="spec.json: not valid JSON"):
        load_pruned(directory)


def test_weights_from_another_export_and_a_spec_without_a_plan_are_named_as_such(saved, tmp_path):
    import shutil

    _, _, cases = saved
    directory = tmp_path / "mixed"
    shutil.copytree(cases["vgg11"]["dir"], directory)
    spec = read_spec(directory)
    unpruned = load_model("vgg11", num_classes=spec["architecture"]["num_classes"],
                          kwargs=spec["architecture"].get("kwargs") or {})
    torch.save(unpruned.state_dict(), directory / "weights.pt")  # the unpruned network's weights, not this export's
    with pytest.raises(UserError) as info:
        load_pruned(directory)
    message = str(info.value)
    assert "weights.pt does not match the pruned network" in message and "size mismatch" in message
    assert "factory=" not in message  # a zoo model: no factory to pass
    (directory / "spec.json").write_text(json.dumps({k: v for k, v in spec.items() if k != "plan"}))
    with pytest.raises(UserError, match="no pruning 'plan'"):
        load_pruned(directory)
    (directory / "spec.json").write_text(json.dumps({**spec, "plan": [{"not": "an entry"}]}))
    with pytest.raises(UserError, match=r"spec\.json: "):  # a malformed entry names the file
        load_pruned(directory)


class TwoLayerNet(nn.Module):
    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_load_pruned_takes_the_unpruned_model_itself_and_a_failing_factory_is_named(tmp_path, monkeypatch):
    """A notebook user passed factory=ConvNet() (the model, not what builds it): the error was forward()'s
    "missing 'x'" and advice to load the pickled model.pt with allow_pickle=True — which the run had not written
    (its class lived in __main__), so that failed too, with a bare FileNotFoundError (a new user's pass, s33)."""
    torch.manual_seed(0)
    net = TwoLayerNet()
    space = PruningSpace(net, torch.randn(1, 4))
    pruned = space.build([0.5])
    monkeypatch.setattr(torch, "save", _failing_save(torch.save))  # as in a Ray actor: the class cannot be pickled
    directory = save_pruned(pruned, tmp_path / "m", architecture={"name": "<in-memory> TwoLayerNet"},
                            plan=space.plan([0.5]), input_shape=(4,))
    monkeypatch.undo()
    spec = read_spec(directory)
    assert spec["files"]["module"] is None and "PicklingError" in spec["module_error"]
    x = torch.randn(5, 4)
    fresh = TwoLayerNet()
    for factory in (TwoLayerNet, fresh):  # the class, or the unpruned model itself (left as it is)
        torch.testing.assert_close(forward(load_pruned(directory, factory=factory), x), forward(pruned, x))
    assert fresh.fc1.out_features == 8  # not pruned in place
    with pytest.raises(RuntimeError, match=r"factory=.* raised TypeError: .*factory must build the unpruned model") as info:
        load_pruned(directory, factory=lambda width: TwoLayerNet(width))
    assert "allow_pickle" not in str(info.value)
    spec["architecture"] = {"name": "my_project.nets:make_net", "kwargs": {"hidden": 8}}  # a named factory gets its kwargs
    (directory / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(RuntimeError, match=r"called as spec.json's 'my_project.nets:make_net' was: with its kwargs "
                                           r"\{'hidden': 8\}") as info:
        load_pruned(directory, factory=lambda: TwoLayerNet(8))
    assert "no arguments" not in str(info.value)
    torch.testing.assert_close(forward(load_pruned(directory, factory=TwoLayerNet), x), forward(pruned, x))
    spec["architecture"] = {"name": "not.a.module:thing"}
    (directory / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(UntrustedArchitectureError):
        load_pruned(directory)
    with pytest.raises(RuntimeError, match=r"There is no model.pt to fall back to \(not written: PicklingError"):
        load_pruned(directory, allow_factories=["not.a.module:thing"])


def _failing_save(real):
    import pickle

    def save(obj, *args, **kwargs):
        if isinstance(obj, nn.Module):
            raise pickle.PicklingError("Can't pickle <class '__main__.TwoLayerNet'>: it's not found as __main__.TwoLayerNet")
        return real(obj, *args, **kwargs)

    return save
