"""The Python API (rayprune.prune / rayprune.sweep): objects in memory, the same config and errors."""

import json
import subprocess
import sys

import pytest
import torch
from torch import nn

import rayprune
from rayprune.api import build_config
from rayprune.config import ConfigError
from rayprune.data import load_dataset
from rayprune.errors import UserError, UserTypeError
from rayprune.pruning.export import UntrustedArchitectureError

SMALL = {  # the cheapest settings that still run every stage
    "search": {"batch_size": 8, "rerank": {"top_k": 2}, "eval_samples": 200,
               "finetune": {"iterations": 5, "batch_size": 64}, "final_finetune": {"iterations": 20, "batch_size": 64}},
    "evaluation": {"evaluators": 2, "cpus": 0.75},
    "device": "cpu",
}


def user_net_class():
    """A model class defined in a function, as in a notebook: Ray has to ship it by value. Two branches
    joined by a channel concatenation, and a residual add."""

    class UserNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.a = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
            self.b = nn.Sequential(nn.Conv2d(16, 12, 1), nn.BatchNorm2d(12), nn.ReLU())
            self.mix = nn.Sequential(nn.Conv2d(24, 16, 3, padding=1), nn.BatchNorm2d(16))
            self.head = nn.Linear(16, 10)

        def forward(self, x):
            s = self.stem(x)
            y = torch.relu(self.mix(torch.cat([self.a(s), self.b(s)], dim=1)) + s)
            return self.head(y.mean(dim=(2, 3)))

    return UserNet


def trained(net: nn.Module, data, steps=150) -> nn.Module:
    torch.manual_seed(0)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net.train()
    for i in range(steps):
        idx = torch.randint(0, len(data.y_train), (64,))
        loss = nn.functional.cross_entropy(net(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


# -- configs from keyword arguments (no Ray) ---------------------------------------------------------
def test_rayprune_sweep_stays_the_function_after_the_sweep_machinery_is_imported():
    import rayprune.sweeps.driver  # noqa: F401 - a package named like the function would replace it here

    assert callable(rayprune.sweep) and callable(rayprune.prune) and rayprune.sweep.__module__ == "rayprune.api"



def test_keyword_arguments_build_the_same_validated_config_as_yaml():
    cfg = build_config(model="small_cnn", data="digits", budgets={"params": "30%", "latency_ms": 4},
                       agent="tpe", evaluations=64, sections={"pruning": {"min_keep": 0.2}})
    assert cfg.search.agent == "tpe" and cfg.search.evaluations == 64 and cfg.pruning.min_keep == 0.2
    assert {b.metric: (b.value, b.relative) for b in cfg.budget_list()} == {"params": (0.3, True),
                                                                             "latency_ms": (4.0, False)}


def test_budgets_replace_the_configs_budgets_and_levels_its_sweep_levels():
    cfg = build_config({"budgets": {"params": 0.5, "macs": 0.5}}, budgets={"params": 0.2},
                       levels={"params": [0.5, 0.25]})
    assert list(cfg.budgets) == ["params"] and cfg.sweep.budgets == {"params": [0.5, 0.25]}


def test_bad_settings_get_the_yaml_paths_errors_naming_the_field():
    with pytest.raises(ConfigError, match=r"search\.evaluations"):
        build_config(sections={"search": {"evaluations": 0}})
    with pytest.raises(ConfigError, match=r"search\.evaluatoins: unknown key \(did you mean evaluations\?\)"):
        build_config(sections={"search": {"evaluatoins": 10}})
    with pytest.raises(UserTypeError, match=r"evaluation= must be a dict .*got int \(did you mean evaluations=48\?\)"):
        build_config(sections={"evaluation": 48})  # the section exists: a typo of the evaluations= argument
    with pytest.raises(UserError, match=r"did you mean budgets=\?\)") as twice:  # budgets is an argument and a section
        build_config(sections={"budget": {"params": 0.3}})
    assert "budgets= or budgets=" not in str(twice.value)
    with pytest.raises(ConfigError, match="unknown costs"):
        build_config(budgets={"paramz": 0.5})
    with pytest.raises(UserTypeError, match="search= must be a dict"):
        build_config(sections={"search": 5})
    # a typo of a keyword argument lands among the sections: named as a typo, with the argument it resembles
    with pytest.raises(UserError, match=r"evaluatoins= is neither an argument .*did you mean evaluations=") as err:
        rayprune.prune("small_cnn", "digits", budgets={"params": 0.5}, evaluatoins=8, out="/nonexistent/never")
    assert "search={'evaluations': 8}" in str(err.value)
    with pytest.raises(UserError, match=r"did you mean search=\?"):
        build_config(sections={"serch": {"agent": "tpe"}})

    import doctest

    from rayprune import api

    assert doctest.testmod(api).failed == 0  # build_config's example: the default agent as it is now


def test_an_object_model_is_recorded_under_an_in_memory_name_and_bad_objects_are_refused(tmp_path):
    net = user_net_class()()
    cfg = build_config(model=net)
    assert cfg.model.name == "<in-memory> UserNet"
    with pytest.raises(UserTypeError, match="model= must be a torch.nn.Module"):
        rayprune.prune(42, "digits", budgets={"params": 0.5}, out=tmp_path / "a", log=None)
    with pytest.raises(UserTypeError, match="data= must be"):
        rayprune.prune(net, {1, 2, 3}, budgets={"params": 0.5}, out=tmp_path / "b", log=None)
    with pytest.raises(UserError, match=r"unknown key\(s\) \['training'\]"):
        rayprune.prune(net, {"training": None}, budgets={"params": 0.5}, out=tmp_path / "c", log=None)


def test_model_and_data_as_keywords_are_the_arguments_and_as_settings_dicts_the_config_sections(tmp_path, monkeypatch):
    """A new user wrote prune("pkg:fn", data, model={"kwargs": ...}) and got Python's "multiple values for
    argument 'model'": a dict of model settings is the model section, beside the factory's name."""
    (tmp_path / "width_nets.py").write_text("from torch import nn\n\ndef make(outputs):\n"
                                             "    return nn.Sequential(nn.Flatten(), nn.Linear(64, outputs))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # the kwargs reach the factory: its 5 outputs are refused against digits' 10 classes
    with pytest.raises(UserError, match=r"gives 5 outputs per sample"):
        rayprune.prune("width_nets:make", "digits", model={"kwargs": {"outputs": 5}}, budgets={"params": 0.5},
                       out=tmp_path / "a", log=None, base_training={"epochs": 1, "cache_dir": str(tmp_path / "c")})
    with pytest.raises(UserTypeError, match="model= must be a torch.nn.Module"):  # a keyword model is the argument
        rayprune.prune(model=42, data="digits", budgets={"params": 0.5}, out=tmp_path / "b", log=None)
    with pytest.raises(UserError, match=r"The x of split 'train' must be a torch.Tensor"):  # a dict of splits is the data
        rayprune.prune(user_net_class()(), data={"train": ([1.0], [0])}, budgets={"params": 0.5}, out=tmp_path / "c",
                       log=None)
    with pytest.raises(UserError, match=r"data.val_fracton: unknown key \(did you mean val_fraction\?\)"):
        rayprune.prune("small_cnn", "digits", data={"val_fracton": 0.2}, budgets={"params": 0.5}, out=tmp_path / "c")
    with pytest.raises(UserTypeError, match=r"model given twice: positionally \('small_cnn'\) and as model='vgg11'"):
        rayprune.sweep("small_cnn", "digits", model="vgg11", levels={"params": [0.5]}, out=tmp_path / "d", log=None)
    with pytest.raises(UserError, match=r"model names two things: 'small_cnn' .* 'vgg11'"):
        rayprune.prune("small_cnn", "digits", model={"name": "vgg11"}, budgets={"params": 0.5}, out=tmp_path / "e")
    cfg = build_config(model="small_cnn", sections={"data": {"val_fraction": 0.3}})
    assert cfg.data.val_fraction == 0.3
    assert not [p for p in tmp_path.iterdir() if p.name in {"a", "b", "c", "d", "e"}]  # nothing was left behind


def test_a_sweep_refused_before_it_starts_gives_back_the_folders_it_created(tmp_path):
    with pytest.raises(UserError, match=r"unknown key\(s\) \['training'\]"):
        rayprune.sweep(user_net_class()(), {"training": None}, levels={"params": [0.5]},
                       out=tmp_path / "runs" / "new" / "sw", log=None)
    assert not (tmp_path / "runs").exists()


def test_a_classifier_with_fewer_outputs_than_the_data_has_classes_is_refused_before_any_search(tmp_path):
    """Else the whole search runs and every fine-tune fails on the first label the model cannot score."""
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 5))  # digits has 10 classes
    with pytest.raises(UserError, match=r"gives 5 outputs per sample, but the data has 10 classes"):
        rayprune.prune(net, "digits", budgets={"params": 0.5}, out=tmp_path / "a", log=None)
    assert not list((tmp_path / "a").glob("candidates/*.parquet"))


def test_the_wrong_task_is_named_before_any_search(tmp_path):
    """A classifier handed over with task='regression' failed with a raw 'shape [300, 3] is invalid' from the
    metric; real-valued targets without task='regression' did not say what to set."""
    x, labels = torch.randn(150, 4), torch.arange(150) % 3
    classifier = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(UserError, match=r"gives 3 outputs per sample, but the regression targets have 1 value .* "
                                        r"the task is classification"):
        rayprune.prune(classifier, (x, labels.float()), task="regression", budgets={"params": 0.5},
                       out=tmp_path / "a", log=None)
    with pytest.raises(UserError, match=r"integer class indices.*needs data.task: regression \(task='regression'"):
        rayprune.prune(classifier, (x, torch.rand(150)), budgets={"params": 0.5}, out=tmp_path / "b", log=None)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_named_factory_with_too_few_outputs_is_refused_before_its_base_model_is_trained(tmp_path, monkeypatch):
    """A factory may ignore num_classes (it names only the arguments it wants): refused before any training step."""
    (tmp_path / "five_nets.py").write_text("from torch import nn\n\ndef make():\n"
                                            "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=r"gives 5 outputs per sample, but the data has 10 classes"):
        rayprune.prune("five_nets:make", "digits", budgets={"params": 0.5}, out=tmp_path / "a", log=None,
                       base_training={"epochs": 1, "cache_dir": str(tmp_path / "cache")})
    assert not list((tmp_path / "cache").rglob("*.pt"))  # nothing was trained
    assert not (tmp_path / "a").exists()  # and --out is given back, not left empty


def test_a_custom_loss_may_read_fewer_outputs_than_classes(tmp_path):
    """One logit for two classes, trained with the user's loss: not the built-in cross-entropy's business."""
    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem

    data = load_dataset("digits", seed=0)
    binary = type(data)(**{**data.__dict__, "y_train": data.y_train % 2, "y_val": data.y_val % 2,
                           "y_test": data.y_test % 2, "num_classes": 2, "class_names": None})
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 1))
    cfg = parse_config({"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory> data"},
                        "engine": {"loss": "objective_funcs:l1_loss"}, "search": {"metric": "objective_funcs:neg_mae"},
                        "budgets": {"params": 0.5}}, source="test")
    problem = PruningProblem.from_parts(cfg, binary, net, {"source": "in-memory"}, device=torch.device("cpu"))
    assert problem.base_costs["params"] > 0
    with pytest.raises(UserError, match="gives 1 outputs per sample, but the data has 2 classes"):
        PruningProblem.from_parts(cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"loss": None})}),
                                  binary, net, {"source": "in-memory"}, device=torch.device("cpu"))


def test_a_base_model_that_raises_on_a_splits_samples_is_an_error_naming_the_split():
    """An out-of-vocabulary token id in the test split: 55 lines of traceback ending in 'IndexError: index out of
    range in self', nothing saying it was the base model's evaluation on the test split."""
    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem

    data = load_dataset("digits", seed=0)

    class Picky(nn.Module):  # raises on any sample whose first pixel is lit, as an Embedding on an unknown id
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

        def forward(self, x):
            if bool((x[:, 0, 0, 0] > 0.5).any()):
                raise IndexError("index out of range in self")
            return self.body(x)

    test_x = data.x_test.clone()
    test_x[3, 0, 0, 0] = 1.0
    oov = type(data)(**{**data.__dict__, "x_val": data.x_val.clamp(max=0.0), "x_test": test_x})
    cfg = parse_config({"model": {"name": "<in-memory> Picky"}, "data": {"name": "<in-memory> data"},
                        "budgets": {"params": 0.5}}, source="test")
    with pytest.raises(UserError, match=r"The base model raised IndexError on the test split while rayprune measured "
                                        r"its accuracy, before any pruning: index out of range in self"):
        PruningProblem.from_parts(cfg, oov, Picky(), {"source": "in-memory"}, device=torch.device("cpu"))


def audio_net_class():
    """A Conv1d classifier on (mels, frames) samples, as an audio engineer writes one (module level: picklable)."""

    class AudioNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(6, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
                                      nn.Conv1d(16, 16, 3, padding=1), nn.BatchNorm1d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 3))

        def forward(self, x):
            return self.body(x)

    return AudioNet


def test_a_conv1d_model_on_2d_samples_is_fed_them_as_given():
    """(mels, frames) samples were fed as (1, mels, frames) one-channel images, and a Conv1d model was refused
    ('does not accept inputs of shape (1, 6, 20)') unless it dropped the axis in its forward. A model that takes the
    samples as they were is fed them so now (kind 'sequence'); one that takes the images still gets them."""
    from rayprune.config import parse_config
    from rayprune.data import dataset_from_splits, preprocessing_of
    from rayprune.problem import PruningProblem

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 6, 20, generator=g), torch.arange(60) % 3
    data = dataset_from_splits((x[:40], y[:40]), (x[40:50], y[40:50]), (x[50:], y[50:]))
    assert data.input_shape == (1, 6, 20)
    assert preprocessing_of(data)["steps"] == [
        "samples of shape (6, 20) given a channel axis: fed as (1, 6, 20), values as given (cast to float32)"]
    cfg = parse_config({"model": {"name": "<in-memory> AudioNet"}, "data": {"name": "<in-memory> data"},
                        "budgets": {"params": 0.5}}, source="test")
    problem = PruningProblem.from_parts(cfg, data, audio_net_class()(), {"source": "in-memory"},
                                        device=torch.device("cpu"))
    assert problem.data.kind == "sequence" and problem.data.input_shape == (6, 20)
    assert torch.equal(problem.data.x_val, x[40:50]) and problem.data.augment is None
    assert preprocessing_of(problem.data)["steps"] == [
        "samples of shape (6, 20) fed as given, without a channel axis (the model reads them so, e.g. (channels, "
        "length) for a Conv1d), values as given (cast to float32)"]
    assert problem.base_costs["params"] > 0 and problem.context.input_shape == (6, 20)
    image_net = nn.Sequential(nn.Flatten(), nn.Linear(120, 16), nn.ReLU(), nn.Linear(16, 3))  # takes either shape
    assert PruningProblem.from_parts(cfg, data, image_net, {"source": "in-memory"},
                                     device=torch.device("cpu")).data.input_shape == (1, 6, 20)
    wrong = nn.Sequential(nn.Conv1d(5, 8, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))  # 5 channels
    with pytest.raises(UserError, match=r"does not accept inputs of shape \(1, 6, 20\)"):
        PruningProblem.from_parts(cfg, data, wrong, {"source": "in-memory"}, device=torch.device("cpu"))
    two = nn.Sequential(nn.Conv1d(6, 8, 3), nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 2))  # 3 classes
    with pytest.raises(UserError, match=r"2 outputs.*3 classes") as err:  # the layout fits: the outputs are wrong
        PruningProblem.from_parts(cfg, data, two, {"source": "in-memory"}, device=torch.device("cpu"))
    assert "does not accept inputs" not in str(err.value)


def test_a_conv1d_factory_taking_in_channels_is_told_where_its_channels_must_come_from(tmp_path, monkeypatch):
    """make(in_channels, num_classes) with a Conv1d over (12, 100) samples: rayprune passed in_channels=1 (the samples
    read as one-channel images) and the error was PyTorch's 'Expected 2D or 3D input to conv1d' alone."""
    import numpy as np

    from rayprune.base_model import obtain_base_model
    from rayprune.config import parse_config
    from rayprune.problem import configured_dataset

    (tmp_path / "ecgnets_hint.py").write_text(
        "from torch import nn\n"
        "def make(in_channels=12, num_classes=3, channels=None):\n"
        "    return nn.Sequential(nn.Conv1d(channels or in_channels, 8, 5), nn.AdaptiveAvgPool1d(1), nn.Flatten(),\n"
        "                         nn.Linear(8, num_classes))\n"
        "def image_net(in_channels=1, num_classes=3):\n"
        "    return nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
        "                         nn.Linear(8, num_classes - 1))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    x, y = np.random.default_rng(0).normal(size=(90, 12, 100)).astype("float32"), np.arange(90) % 3
    np.savez(tmp_path / "ecg.npz", x_train=x[:60], y_train=y[:60], x_val=x[60:75], y_val=y[60:75], x_test=x[75:],
             y_test=y[75:])

    def base(name="make", **kwargs):
        cfg = parse_config({"model": {"name": f"ecgnets_hint:{name}", "kwargs": kwargs},
                            "data": {"name": "npz", "path": str(tmp_path / "ecg.npz")},
                            "base_training": {"cache_dir": str(tmp_path / "cache")}})
        return obtain_base_model(cfg, configured_dataset(cfg), device=torch.device("cpu"), train=False,
                                 log=lambda m: None)

    with pytest.raises(UserError, match=r"does not accept inputs of shape \(1, 12, 100\).*calls ecgnets_hint:make "
                                        r"with in_channels=1.*its 12 input channels must come from elsewhere: a "
                                        r"default, or an option of your own in model.kwargs, e.g. \{channels: 12\}"):
        base()
    model, _ = base(channels=12)  # as the hint says
    assert model[0].in_channels == 12
    with pytest.raises(UserError, match="2 outputs") as err:  # a one-channel image model failing otherwise: no hint
        base("image_net")
    assert "in_channels=1" not in str(err.value)


def test_prune_a_conv1d_model_on_an_npz_of_2d_samples(ray_session, tmp_path):
    """End to end from an .npz of (N, mels, frames) arrays, normalised as one-channel images: the search, the
    exported files and spec.json all take (mels, frames) samples, and the exported model matches the pruned one."""
    import numpy as np

    g = torch.Generator().manual_seed(1)
    y = torch.arange(300) % 3
    x = torch.randn(300, 6, 20, generator=g) + y[:, None, None].float() * torch.linspace(-1, 1, 6)[None, :, None]
    torch.manual_seed(0)
    net = audio_net_class()()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(100):
        idx = torch.randint(0, 200, (32,), generator=g)
        loss = nn.functional.cross_entropy(net((x[idx] - x[:200].mean()) / x[:200].std(unbiased=False)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    path = tmp_path / "mels.npz"
    np.savez(path, x_train=x[:200].numpy(), y_train=y[:200].numpy(), x_val=x[200:250].numpy(),
             y_val=y[200:250].numpy(), x_test=x[250:].numpy(), y_test=y[250:].numpy())
    result = rayprune.prune(net, config={"data": {"name": "npz", "path": str(path)}}, budgets={"params": 0.5},
                            agent="random", evaluations=8, out=tmp_path / "run", progress=False, log=None, **SMALL)
    assert result.feasible and result.summary["pruned"]["accuracy_val"] > 0.6, result.summary
    spec = json.loads((result.out / "best" / "spec.json").read_text())
    prep = spec["preprocessing"]
    assert prep["kind"] == "sequence" and prep["input_shape"] == [6, 20] and len(prep["mean"]) == 1, prep
    assert "every value: (x - mean[0]) / std[0]" in prep["steps"][-2] and "without a channel axis" in prep["steps"][-1]
    samples = (x[250:266] - prep["mean"][0]) / prep["std"][0]
    with torch.no_grad():
        expected = result.model(samples)
        assert torch.allclose(torch.jit.load(str(result.out / "best" / "model.torchscript.pt"))(samples), expected,
                              atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(result.out / "best" / "model.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: samples.numpy()})[0]
    assert np.allclose(out, expected.numpy(), atol=1e-4)
    described = session.get_modelmeta().custom_metadata_map  # the file alone says how to prepare its inputs
    assert json.loads(described["rayprune.preprocessing"]) == prep and described["rayprune.input_dtype"] == "float32"


def test_an_unreachable_params_budget_names_the_layers_no_group_prunes():
    """A 5,000-word Embedding (most of the model) that no group prunes: the error said 'Lower pruning.min_keep' even
    at min_keep 0.01, where nothing could reach the budget."""
    from rayprune.config import parse_config
    from rayprune.data import dataset_from_splits
    from rayprune.problem import PruningProblem
    from rayprune.search.prune import BudgetUnreachable, check_reachable

    class TextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(5000, 16)
            self.conv = nn.Sequential(nn.Conv1d(16, 32, 3), nn.BatchNorm1d(32), nn.ReLU(), nn.Conv1d(32, 32, 3),
                                      nn.BatchNorm1d(32), nn.ReLU())
            self.head = nn.Linear(32, 3)

        def forward(self, x):
            return self.head(self.conv(self.emb(x.long()).transpose(1, 2)).mean(dim=2))

    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 5000, (60, 12), generator=g).float(), torch.arange(60) % 3
    data = dataset_from_splits((x[:40], y[:40]), (x[40:50], y[40:50]), (x[50:], y[50:]))

    def problem(budget, min_keep):
        cfg = parse_config({"model": {"name": "<in-memory> TextNet"}, "data": {"name": "<in-memory> data"},
                            "pruning": {"min_keep": min_keep}, "budgets": {"params": budget}}, source="test")
        return PruningProblem.from_parts(cfg, data, TextNet(), {"source": "in-memory"}, device=torch.device("cpu"))

    with pytest.raises(BudgetUnreachable, match=r"Raise the budget\. No pruning\.min_keep reaches it: 80(\.0)?k of the "
                                                r"smallest model's .* parameters are in layers no group prunes \(emb "
                                                r"\(Embedding, 80(\.0)?k\)"):
        check_reachable(problem(0.25, 0.01))
    with pytest.raises(BudgetUnreachable) as err:  # the embedding alone fits: lowering min_keep may help
        check_reachable(problem(0.97, 0.9))
    assert "Lower pruning.min_keep or raise the budget. 80" in str(err.value) and "No pruning" not in str(err.value)
    # a small layer that min_keep rounds up to all its channels is still pruned at a lower min_keep: not "fixed"
    small = dataset_from_splits((torch.randn(60, 20, generator=g), torch.arange(60) % 2))
    cfg = parse_config({"model": {"name": "<in-memory> Sequential"}, "data": {"name": "<in-memory> data"},
                        "pruning": {"min_keep": 0.9}, "budgets": {"params": 0.5}}, source="test")
    mlp = PruningProblem.from_parts(cfg, small, nn.Sequential(nn.Linear(20, 3), nn.ReLU(), nn.Linear(3, 2)),
                                    {"source": "in-memory"}, device=torch.device("cpu"))
    assert mlp.unpruned_parameters() == []
    with pytest.raises(BudgetUnreachable, match=r"Lower pruning.min_keep or raise the budget\.$"):
        check_reachable(mlp)


def test_validation_and_test_split_off_a_trained_models_own_data_are_warned_about(tmp_path):
    """The README's first example used to pass (x_train, y_train): every accuracy was then measured on training samples."""
    from rayprune.search.prune import BudgetUnreachable

    data = load_dataset("digits", seed=0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    for given, warned in (((data.x_train, data.y_train), True),
                          ({"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                            "test": (data.x_test, data.y_test)}, False)):
        logs = []
        with pytest.raises(BudgetUnreachable):  # stops right after the problem is built: no Ray, no search
            rayprune.prune(net, given, budgets={"params": 0.001}, out=tmp_path / str(warned), log=logs.append)
        hits = [m for m in logs if "split them off the samples you passed" in m]
        assert bool(hits) == warned, logs


def test_a_non_empty_out_is_refused_before_anything_is_computed(tmp_path):
    (tmp_path / "old.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"\(--out, or out= in Python\) is not empty"):
        rayprune.prune(user_net_class()(), "digits", budgets={"params": 0.5}, out=tmp_path, log=None)


# -- end to end --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_prune_an_in_memory_model_on_in_memory_data(ray_session, tmp_path):
    data = load_dataset("digits", seed=0)
    net = trained(user_net_class()(), data)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    base_params = sum(p.numel() for p in net.parameters())

    result = rayprune.prune(net, data, budgets={"params": 0.5}, agent="evolution", evaluations=16,
                            out=tmp_path / "run", progress=False, log=None, **SMALL)

    assert result.feasible and isinstance(result.model, nn.Module)
    pruned_params = sum(p.numel() for p in result.model.parameters())
    assert pruned_params <= 0.5 * base_params == result.summary["budgets"]["params"]["limit"]
    assert result.summary["model"] == "<in-memory> UserNet"
    assert (result.candidates["stage"] == "search").sum() == 16
    assert result.summary["pruned"]["accuracy_val"] > 0.5  # a working model, not a broken one
    # the caller's model is untouched
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # the result's model is the exported one
    x = data.x_test[:32]
    with torch.no_grad():
        again = rayprune.load_pruned(result.out / "best", factory=lambda: user_net_class()())
        assert torch.allclose(again(x), result.model(x), atol=1e-5)
    # without the code, the directory refuses to guess and says how
    with pytest.raises(UntrustedArchitectureError, match="handed over in memory"):
        rayprune.load_pruned(result.out / "best")


def text_net_class():
    """A text model whose nn.Embedding reads the input as it is (no cast to long in its forward)."""

    class TextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(40, 16)
            self.conv = nn.Sequential(nn.Conv1d(16, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU(),
                                      nn.Conv1d(32, 32, 3, padding=1), nn.BatchNorm1d(32), nn.ReLU())
            self.head = nn.Linear(32, 2)

        def forward(self, x):
            return self.head(self.conv(self.emb(x).transpose(1, 2)).mean(dim=2))

    return TextNet


def test_prune_a_text_model_fed_token_ids(ray_session, tmp_path):
    """A standard nn.Embedding model was refused ('does not accept inputs of shape (12,)': rayprune fed float32), so
    a text model could be pruned only with a cast in its forward, and its ONNX file then took float ids. Token ids
    that reach rayprune unscaled are fed as int64 now, in the search, the costs and every exported file."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 40, (600, 12), generator=g)
    y = (x == 7).any(dim=1).long()
    torch.manual_seed(0)
    net = text_net_class()()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    for _ in range(150):
        idx = torch.randint(0, 400, (64,), generator=g)
        loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    data = {"train": (x[:400].numpy(), y[:400].numpy()), "val": (x[400:500].numpy(), y[400:500].numpy()),
            "test": (x[500:].numpy(), y[500:].numpy())}
    result = rayprune.prune(net, data, budgets={"params": 0.5}, agent="random", evaluations=16,
                            out=tmp_path / "run", progress=False, log=None,
                            costs={"measure": ["params", "macs", "latency_ms"]}, **SMALL)
    assert result.feasible and result.summary["pruned"]["accuracy_val"] > 0.8  # a working model
    assert result.summary["pruned"]["macs"] < result.summary["base"]["macs"]
    spec = json.loads((result.out / "best" / "spec.json").read_text())
    assert spec["input_dtype"] == "int64" and spec["files"]["torchscript"] and spec["files"]["onnx"], spec
    assert spec["preprocessing"]["steps"] == ["token ids: fed as int64 (the model reads them with an nn.Embedding)"]
    ids = x[500:516]
    with torch.no_grad():
        expected = result.model(ids)
        assert torch.allclose(rayprune.load_pruned(result.out / "best", factory=text_net_class())(ids), expected,
                              atol=1e-5)
        assert torch.allclose(torch.jit.load(str(result.out / "best" / "model.torchscript.pt"))(ids), expected,
                              atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(result.out / "best" / "model.onnx"))
    assert session.get_inputs()[0].type == "tensor(int64)"
    out = session.run(None, {session.get_inputs()[0].name: ids.numpy().astype(np.int64)})[0]
    assert np.allclose(out, expected.numpy(), atol=1e-4)


def test_token_ids_probe_with_a_real_id_not_padding_and_neon_is_refused():
    """Every probe was token id 0 (padding): a model that drops padding (lengths from x != 0) was refused as if its
    input shape were wrong; and neon, which prunes tabular MLPs on floats, crashed inside its episode."""
    from rayprune.config import parse_config
    from rayprune.data import dataset_from_splits
    from rayprune.problem import PruningProblem

    class DropsPadding(nn.Module):  # refuses an all-padding batch, as pack_padded_sequence does (lengths of 0)
        def __init__(self):
            super().__init__()
            self.emb, self.hidden, self.head = nn.Embedding(40, 8), nn.Linear(8, 16), nn.Linear(16, 2)

        def forward(self, x):
            lengths = (x != 0).sum(dim=1)
            if bool((lengths == 0).any()):
                raise RuntimeError("Length of all samples has to be greater than 0")
            return self.head(torch.relu(self.hidden(self.emb(x).sum(dim=1) / lengths.unsqueeze(1))))

    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 40, (60, 12), generator=g)
    data = dataset_from_splits((x[:40], torch.arange(40) % 2), (x[40:50], torch.arange(10) % 2),
                               (x[50:], torch.arange(10) % 2))
    cfg = parse_config({"model": {"name": "<in-memory> DropsPadding"}, "data": {"name": "<in-memory> data"},
                        "budgets": {"params": 0.5}}, source="test")
    problem = PruningProblem.from_parts(cfg, data, DropsPadding(), {"source": "in-memory"}, device=torch.device("cpu"))
    assert problem.data.input_dtype == "int64" and problem.base_costs["params"] > 0
    assert problem.context.example_inputs().unique().tolist() == [1]
    neon = parse_config({"model": {"name": "<in-memory> DropsPadding"}, "data": {"name": "<in-memory> data"},
                         "search": {"agent": "neon"}}, source="test")
    with pytest.raises(UserError, match="The neon agent prunes small tabular MLPs on float features"):
        PruningProblem.from_parts(neon, data, DropsPadding(), {"source": "in-memory"}, device=torch.device("cpu"))


def test_token_ids_rayprune_scaled_are_refused_with_the_way_out(tmp_path):
    """An .npz file's columns are min-max scaled, so its ids cannot be fed back as ids: say so, and what to do."""
    import numpy as np

    from rayprune.config import parse_config
    from rayprune.problem import PruningProblem

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 40, (90, 12), generator=g)
    np.savez(tmp_path / "t.npz", x=x.numpy(), y=(np.arange(90) % 2))
    data = load_dataset("npz", path=tmp_path / "t.npz", seed=0)
    cfg = parse_config({"model": {"name": "<in-memory> TextNet"}, "data": {"name": "npz", "path": str(tmp_path / "t.npz")},
                        "budgets": {"params": 0.5}}, source="test")
    with pytest.raises(UserError, match=r"does not accept float32 inputs.*rayprune scaled or normalised them.*data "
                                        r"function.*self.embedding\(x.long\(\)\)"):
        PruningProblem.from_parts(cfg, data, text_net_class()(), {"source": "checkpoint"}, device=torch.device("cpu"))


def test_prune_a_model_with_grouped_convolutions(ray_session, tmp_path):
    """A ResNeXt block (groups=4) and a depthwise conv with a channel multiplier: their channels were left whole.
    They are searched now, every kept count a multiple of the group's blocks, and the exported model loads."""
    import numpy as np
    from conftest import GroupedResidualNet

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(400, 3, 8, 8)).astype("float32"))
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    torch.manual_seed(0)
    net = GroupedResidualNet()
    data = rayprune.data.dataset_from_splits((x, y), seed=0)
    net = trained(net, data)
    result = rayprune.prune(net, (x, y), budgets={"macs": 0.5}, agent="random", evaluations=16,
                            out=tmp_path / "run", progress=False, log=None, **SMALL)
    m = result.model
    kept = {"reduce.0": m.reduce[0].out_channels, "grouped.0": m.grouped[0].out_channels,
            "multiplier.0": m.multiplier[0].out_channels}
    assert kept != {"reduce.0": 24, "grouped.0": 24, "multiplier.0": 32} and result.feasible  # something was pruned
    assert kept["reduce.0"] % 4 == 0 and kept["grouped.0"] % 4 == 0 and kept["multiplier.0"] % 16 == 0, kept
    assert m.grouped[0].groups == 4 and m.grouped[0].in_channels == kept["reduce.0"] and m.multiplier[0].groups == 16
    assert m.stem[0].out_channels == 16  # feeds the multiplier's one input channel per group: left whole
    spec = json.loads((result.out / "best" / "spec.json").read_text())
    plan = {e["target"]: e["idxs"] for e in spec["plan"] if e["fn"] == "prune_out_channels"}
    for root, blocks in (("reduce.0", 4), ("grouped.0", 4), ("multiplier.0", 16)):
        size = {"multiplier.0": 2}.get(root, 6)
        lost = [{i % size for i in plan.get(root, ()) if i // size == b} for b in range(blocks)]
        assert all(positions == lost[0] for positions in lost), (root, lost)  # the same positions in every block
    with torch.no_grad():
        again = rayprune.load_pruned(result.out / "best", factory=GroupedResidualNet)
        assert torch.allclose(again(x[:16]), m(x[:16]), atol=1e-5)


@pytest.mark.slow
def test_a_resumed_sweep_of_a_named_model_on_in_memory_data_loads_its_base_instead_of_training_it(
        ray_session, tmp_path, monkeypatch):
    """The base trained on in-memory data is kept in out when the sweep stops (interrupted in its selection here),
    and resume=True loads it: the same weights, no second training (which is not bit-reproducible on a GPU)."""
    from rayprune.base_model import weights_fingerprint
    from rayprune.errors import Interrupted
    from rayprune.sweeps import driver

    data = load_dataset("digits", seed=0)
    settings = {**SMALL, "base_training": {"epochs": 1, "batch_size": 64}}
    real_finish = driver.finish_sweep

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "finish_sweep", interrupted)
    first: list[str] = []
    with pytest.raises(Interrupted, match=r"it redoes only the selection\): rayprune\.sweep\(\.\.\., out="):
        rayprune.sweep("small_cnn", data, levels={"params": [0.5]}, evaluations=8, out=tmp_path / "sw",
                       log=first.append, **settings)
    assert any("Training base model" in m for m in first), first
    kept = tmp_path / "sw" / "base_model.pt"
    assert kept.is_file() and (tmp_path / "sw" / "base_model.json").is_file()
    started_with = json.loads((tmp_path / "sw" / "sweep.json").read_text())["base_fingerprint"]
    monkeypatch.setattr(driver, "finish_sweep", real_finish)
    again: list[str] = []
    res = rayprune.sweep("small_cnn", data, out=tmp_path / "sw", resume=True, log=again.append)
    assert not any("Training base model" in m for m in again), again
    assert set(res.models) == {"params=0.5"}
    from rayprune.models import load_model

    arch = json.loads((tmp_path / "sw" / "base_model.json").read_text())["architecture"]
    assert weights_fingerprint(load_model(**arch, checkpoint=kept)) == started_with


@pytest.mark.slow
def test_a_resume_whose_model_checkpoint_now_holds_other_weights_is_refused(ray_session, tmp_path, monkeypatch):
    """The candidates already scored were pruned from the checkpoint the sweep started with: a checkpoint file
    overwritten since (retrained in place, or copied over on a cluster) is refused before any search, and nothing
    the sweep had is lost."""
    from rayprune.config import parse_config
    from rayprune.errors import Interrupted
    from rayprune.models import build_model
    from rayprune.sweeps import driver

    torch.manual_seed(0)
    checkpoint = tmp_path / "base.pt"
    torch.save(build_model("small_cnn", num_classes=10, in_channels=1).state_dict(), checkpoint)
    cfg = parse_config({"name": "ckpt", "model": {"name": "small_cnn", "checkpoint": str(checkpoint)},
                        "data": {"name": "digits"}, "sweep": {"budgets": {"params": [0.5]}},
                        "search": {**SMALL["search"], "evaluations": 8}, "evaluation": SMALL["evaluation"]})
    monkeypatch.setattr(driver, "finish_sweep", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(Interrupted):
        driver.run_sweep(cfg, tmp_path / "sw", log=lambda m: None, verbose=0)
    rows_before = sorted(p.name for p in (tmp_path / "sw").rglob("*.parquet"))
    torch.manual_seed(1)  # the same architecture, other weights
    torch.save(build_model("small_cnn", num_classes=10, in_channels=1).state_dict(), checkpoint)
    with pytest.raises(UserError, match=r"--resume: model\.checkpoint .*base\.pt is not the network the sweep in "
                                        r".* started from \(its weights differ\)"):
        driver.run_sweep(None, tmp_path / "sw", resume=True, log=lambda m: None, verbose=0)
    assert sorted(p.name for p in (tmp_path / "sw").rglob("*.parquet")) == rows_before and rows_before


@pytest.mark.slow
def test_sweep_an_in_memory_model_returns_the_front_and_one_model_per_level(ray_session, tmp_path):
    data = load_dataset("digits", seed=0)
    net = trained(user_net_class()(), data)
    logs = []  # evaluation.cpus left unset, as a user would: 2 evaluators and the trial must fit 2 cores
    res = rayprune.sweep(net, data, levels={"params": [0.6, 0.3]}, evaluations=16, out=tmp_path / "sw",
                         log=logs.append, **{**SMALL, "evaluation": {"evaluators": 2}})
    assert any("evaluation.cpus is not set: each of the 2 evaluators reserves 0.85" in m for m in logs), logs
    assert json.loads((res.out / "sweep.json").read_text())["config"]["evaluation"]["cpus"] == 0.85
    assert set(res.models) == {"params=0.6", "params=0.3"}
    assert not res.front.empty and {"level", "accuracy", "accuracy_final", "params"} <= set(res.front.columns)
    assert "models exported" in repr(res) and "params=0.3" in repr(res).split("\n", 1)[1]  # the front, as report's
    base_params = sum(p.numel() for p in net.parameters())
    for level, model in res.models.items():
        assert sum(p.numel() for p in model.parameters()) <= float(level.split("=")[1]) * base_params
    # resuming it with another model is refused: its candidates were pruned from this one
    other = trained(user_net_class()(), data, steps=20)
    with pytest.raises(UserError, match=r"^resume=True: the model handed over is not the one the sweep.*another out=\.$"):
        rayprune.sweep(other, data, levels={"params": [0.6, 0.3]}, evaluations=16, out=res.out, resume=True,
                       log=None, **SMALL)
    # the command line cannot resume it (the model is not in any file) and says what to do instead
    out = subprocess.run([sys.executable, "-m", "rayprune.cli", "sweep", "--resume", "--out", str(res.out)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "handed over in memory" in out.stderr


@pytest.mark.slow
def test_prune_a_csv_regression_with_the_users_own_split(ray_session, tmp_path):
    """A tabular user's most common case — predict a price from a CSV, with their own held-out rows — needed a
    data function of their own."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 480
    frame = pd.DataFrame({f"f{i}": rng.normal(size=n) for i in range(6)})
    frame["town"] = np.array(["north", "south", "east"])[np.arange(n) % 3]
    frame["price"] = 3 * frame.f0 - frame.f1 + rng.normal(size=n) * 0.1
    frame["part"] = np.where(np.arange(n) < 360, "train", np.where(np.arange(n) < 420, "val", "test"))
    frame.to_csv(tmp_path / "houses.csv", index=False)
    settings = {k: v for k, v in SMALL.items() if k != "device"}
    result = rayprune.prune(config={"model": {"name": "mlp"}, "data": {
        "name": "tabular", "path": str(tmp_path / "houses.csv"), "label": "price", "task": "regression",
        "split_column": "part"}, "base_training": {"epochs": 3, "cache_dir": str(tmp_path / "cache")}},
        budgets={"params": 0.5}, evaluations=16, device="cpu", out=tmp_path / "run", log=None, progress=False,
        **settings)
    summary = result.summary
    assert result.feasible and summary["pruned"]["params"] <= 0.5 * summary["base"]["params"]
    test_rows = frame[frame.part == "test"]
    assert result.model(torch.zeros(2, 9)).shape == (2, 1)  # 6 numbers + 3 one-hot towns in, one price out
    assert (result.candidates["stage"] == "search").sum() == 16 and len(test_rows) == 60
    assert summary["metric"] == "neg_mse"
    # the reported test number is minus the MSE on exactly the user's 60 test rows
    data = load_dataset("tabular", path=tmp_path / "houses.csv", label="price", task="regression", split_column="part")
    assert len(data.y_test) == 60 and torch.allclose(torch.sort(data.y_test).values,
                                                     torch.sort(torch.tensor(test_rows.price.to_numpy()).float()).values)
    with torch.no_grad():
        mse = torch.mean((result.model(data.x_test).reshape(-1) - data.y_test) ** 2).item()
    assert summary["pruned"]["accuracy_test"] == pytest.approx(-mse, rel=1e-4)


def test_streamed_2d_samples_keep_their_channel_axis_and_the_error_says_so():
    """Streamed samples are shaped as they are read, batch by batch: a Conv1d model on streamed (6, 20) samples is
    told they come as (1, 6, 20) and how to take them."""
    from torch.utils.data import TensorDataset

    from rayprune.config import parse_config
    from rayprune.data import dataset_from_splits
    from rayprune.problem import PruningProblem

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 6, 20, generator=g), torch.arange(60) % 3
    data = dataset_from_splits(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:50], y[40:50]),
                               TensorDataset(x[50:], y[50:]), streaming=True)
    assert data.streamed and data.input_shape == (1, 6, 20)
    cfg = parse_config({"model": {"name": "<in-memory> AudioNet"}, "data": {"name": "<in-memory> data"},
                        "budgets": {"params": 0.5}, "search": {"agent": "random"}}, source="test")
    with pytest.raises(UserError, match=r"does not accept inputs of shape \(1, 6, 20\).*one-channel images.*fed as "
                                        r"given only when they are held in memory, not streamed.*`x = x.squeeze\(1\)`"):
        PruningProblem.from_parts(cfg, data, audio_net_class()(), {"source": "in-memory"}, device=torch.device("cpu"))


@pytest.mark.slow
def test_a_regression_handed_over_in_python_names_its_targets_in_the_exported_model(ray_session, tmp_path):
    """Python could not name a regression's targets: the exported spec.json and model.onnx did not say which output
    predicts what. A pandas y's columns name them (or data={'train': ..., 'target_names': [...]})."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    targets = pd.DataFrame({"cool": x[:, 0] * 2, "heat": x[:, 1] - x[:, 2]})
    net = torch.nn.Sequential(torch.nn.Linear(5, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    result = rayprune.prune(net, (x, targets), task="regression", budgets={"params": 0.6}, evaluations=8,
                            out=tmp_path / "run", log=None, progress=False, **SMALL)
    spec = json.loads((result.out / "best" / "spec.json").read_text())
    assert spec["preprocessing"]["target_names"] == ["cool", "heat"]
    onnx = pytest.importorskip("onnx")
    props = {p.key: p.value for p in onnx.load(str(result.out / "best" / "model.onnx")).metadata_props}
    assert "cool" in json.dumps(props)


def test_an_onnx_opset_the_model_cannot_be_written_in_is_refused_from_python_before_the_search(tmp_path):
    """`rayprune.prune(..., export={"onnx_opset": 99})` ran the whole search and ended without model.onnx (review,
    s33: the command line's check was not on the Python API's path)."""
    pytest.importorskip("onnx")
    from rayprune.errors import UserError

    x, y = torch.randn(120, 6), torch.arange(120) % 3
    net = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    with pytest.raises(UserError, match=r"export.onnx_opset is 99, but the installed onnx knows opsets up to"):
        rayprune.prune(net, (x, y), budgets={"params": 0.5}, export={"onnx_opset": 99}, out=tmp_path / "run",
                       log=None, progress=False)
    assert not (tmp_path / "run" / "candidates").exists()  # refused before any candidate
