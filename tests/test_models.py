"""Tests for the model zoo and model loading (rayprune.models)."""

from __future__ import annotations

import random
import sys
import textwrap

import pytest
import torch
from torch import nn

from rayprune.errors import UserError
from rayprune.models import (
    build_model,
    check_input_shape,
    list_models,
    load_model,
    output_layer_name,
)
from rayprune.models.registry import ModelFactoryError

torch.set_num_threads(2)

ZOO = ["mlp", "resnet18", "resnet20", "resnet34", "resnet56", "small_cnn",
       "vgg11", "vgg13", "vgg16", "vgg19"]  # fmt: skip

# Small but real configurations: (build_model kwargs, input shape without the batch dimension).
TINY: dict[str, tuple[dict, tuple[int, ...]]] = {
    "mlp": ({"in_features": 12, "hidden_sizes": (16, 8)}, (12,)),
    "resnet18": ({"width_mult": 0.125}, (3, 32, 32)),
    "resnet34": ({"width_mult": 0.125}, (3, 32, 32)),
    "resnet20": ({"width_mult": 0.5}, (3, 32, 32)),
    "resnet56": ({"width_mult": 0.25}, (3, 32, 32)),
    "small_cnn": ({"in_channels": 1, "width_mult": 0.5}, (1, 28, 28)),
    "vgg11": ({"width_mult": 0.125}, (3, 32, 32)),
    "vgg13": ({"width_mult": 0.125}, (3, 32, 32)),
    "vgg16": ({"width_mult": 0.125}, (3, 32, 32)),
    "vgg19": ({"width_mult": 0.125}, (3, 32, 32)),
}

# Width 1, 10 classes, 3 input channels (1 for small_cnn). Literature values:
# VGG-BN for CIFAR with a single Linear(512, 10) head (kuangliu/pytorch-cifar, Torch-Pruning
# benchmarks): VGG11 9.23M, VGG16 14.73M ("14.7M"), VGG19 20.04M. ResNet18-CIFAR 11,173,962.
# ResNet20/56 differ from He et al.'s option-A counts (269,722 "0.27M" / 853,018 "0.85M") by the
# two 1x1 conv + BN projection shortcuts: 16*32 + 2*32 + 32*64 + 2*64 = 2,752 more parameters.
PARAM_COUNTS = {
    "vgg11": 9_231_114,
    "vgg13": 9_416_010,
    "vgg16": 14_728_266,
    "vgg19": 20_040_522,
    "resnet18": 11_173_962,
    "resnet34": 21_282_122,
    "resnet20": 269_722 + 2_752,
    "resnet56": 853_018 + 2_752,
    "small_cnn": 24_058,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def tiny(name: str, num_classes: int = 10) -> tuple[nn.Module, tuple[int, ...]]:
    kwargs, shape = TINY[name]
    return build_model(name, num_classes=num_classes, **kwargs), shape


def test_list_models_is_the_zoo():
    assert list_models() == ZOO


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_forward_gives_logits(name):
    model, shape = tiny(name, num_classes=7)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    head = model.get_submodule(output_layer_name(model))
    assert isinstance(head, nn.Linear) and head.out_features == 7


@pytest.mark.parametrize("name", sorted(PARAM_COUNTS))
def test_parameter_counts_match_the_literature(name):
    in_channels = 1 if name == "small_cnn" else 3
    model = build_model(name, num_classes=10, in_channels=in_channels)
    assert n_params(model) == PARAM_COUNTS[name]


def test_mlp_parameter_count():
    model = build_model("mlp", num_classes=10, in_features=784, hidden_sizes=(300, 100))
    assert n_params(model) == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10  # LeNet-300-100


@pytest.mark.parametrize("name", [n for n in ZOO if n != "mlp"])
def test_width_mult_scales_every_conv_model(name):
    kwargs = {"in_channels": 1} if name == "small_cnn" else {}
    narrow = build_model(name, num_classes=10, width_mult=0.125, **kwargs)
    wider = build_model(name, num_classes=10, width_mult=0.25, **kwargs)
    assert n_params(narrow) < n_params(wider)
    convs = [m.out_channels for m in narrow.modules() if isinstance(m, nn.Conv2d)]
    assert max(convs) == (64 if name.startswith(("vgg", "resnet18", "resnet34")) else 8)


def test_tiny_width_keeps_at_least_one_channel():
    model = build_model("resnet20", num_classes=10, width_mult=0.001)
    assert min(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)) == 1
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("bad", [0, -1.0, "wide", True])
def test_width_mult_must_be_positive(bad):
    with pytest.raises(ValueError, match="width_mult"):
        build_model("vgg11", num_classes=10, width_mult=bad)


@pytest.mark.parametrize("size", [16, 28, 32, 40])
def test_vgg_accepts_mnist_and_cifar_sizes(size):
    model = build_model("vgg11", num_classes=10, in_channels=1, width_mult=0.125)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("size", [8, 14, 28, 32])
def test_small_cnn_accepts_8_to_32_pixels(size):
    model = build_model("small_cnn", num_classes=10, in_channels=1, width_mult=0.25)
    assert model(torch.zeros(2, 1, size, size)).shape == (2, 10)


@pytest.mark.parametrize("name", ZOO)
def test_torch_pruning_traces_and_prunes_zoo_model(name):
    tp = pytest.importorskip("torch_pruning")
    model, shape = tiny(name)
    example = torch.randn(2, *shape)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    head = model.get_submodule(output_layer_name(model))
    groups = list(
        graph.get_all_groups(ignored_layers=[head], root_module_types=[nn.Conv2d, nn.Linear])
    )
    assert groups
    assert all(group[0].dep.target.module is not head for group in groups)
    # Removing one channel of the first group must leave a working, smaller network.
    root = groups[0][0].dep
    before = n_params(model)
    graph.get_pruning_group(root.target.module, root.handler, idxs=[0]).prune()
    assert n_params(model) < before
    assert model(example).shape == (2, 10)


def test_names_are_case_insensitive():
    model = build_model(" VGG11 ", num_classes=10, width_mult=0.125)
    assert output_layer_name(model) == "classifier"


def test_unknown_model_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="resnet99") as info:
        build_model("resnet99", num_classes=10)
    message = str(info.value)
    assert all(name in message for name in ZOO)
    assert "package.module:factory" in message and "torchvision:<name>" in message


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="hidden_sizes.*width_mult"):
        build_model("resnet20", num_classes=10, hidden_sizes=(4,))


@pytest.mark.parametrize(
    ("field", "value"), [("num_classes", 0), ("in_channels", -3), ("input_size", 2.5)]
)
def test_bad_sizes_are_rejected(field, value):
    kwargs = {"num_classes": 10, field: value}
    with pytest.raises(ValueError, match=f"'{field}'.*{value}"):
        build_model("small_cnn", **kwargs)


def test_mlp_needs_in_features_or_an_image_size():
    with pytest.raises(ValueError, match="in_features"):
        build_model("mlp", num_classes=10)
    model = build_model("mlp", num_classes=10, in_channels=1, input_size=28, hidden_sizes=(8,))
    assert model.features[0].linear.in_features == 784
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_mlp_places_pre_layers_and_activations_per_layer():
    model = build_model(
        "mlp", num_classes=3, in_features=6, hidden_sizes=(5, 4),
        pre_layer=("batchnorm", "dropout", "dropout"), activations=("tanh", "sigmoid"), dropout=0.3,
    )  # fmt: skip
    first, second = model.features
    assert isinstance(first.batchnorm, nn.BatchNorm1d) and first.batchnorm.num_features == 6
    assert isinstance(first.act, nn.Tanh)
    assert isinstance(second.dropout, nn.Dropout) and second.dropout.p == 0.3
    assert isinstance(second.act, nn.Sigmoid)
    assert isinstance(model.pre_classifier, nn.Dropout)
    plain = build_model("mlp", num_classes=3, in_features=6, hidden_sizes=(5,))
    assert not any(isinstance(m, (nn.Dropout, nn.BatchNorm1d)) for m in plain.modules())


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"pre_layer": ("none", "none")}, "pre_layer.*3"),
        ({"pre_layer": "layernorm"}, "layernorm"),
        ({"activations": "gelu"}, "gelu"),
        ({"hidden_sizes": (4, 0)}, "hidden_sizes"),
        ({"dropout": 1.5}, "dropout"),
    ],
)
def test_mlp_options_are_validated(options, match):
    kwargs = {"hidden_sizes": (4, 4), **options}
    with pytest.raises(ValueError, match=match):
        build_model("mlp", num_classes=2, in_features=3, **kwargs)


def test_output_layer_name_falls_back_to_last_linear():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    assert output_layer_name(model) == "2"
    assert output_layer_name(nn.Sequential(nn.Conv2d(1, 2, 3))) is None


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """An importable module ``user_nets`` with a few factories."""
    (tmp_path / "user_nets.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def make_net(num_classes, hidden=4):
                return nn.Sequential(nn.Linear(6, hidden), nn.Linear(hidden, num_classes))

            def fixed_net():
                return nn.Linear(6, 2)

            def not_a_model(num_classes):
                return {"classes": num_classes}

            def broken(num_classes, depth=2):
                return nn.Linear(6, num_classes // (depth - 2))

            NOT_CALLABLE = 3
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "user_nets"
    sys.modules.pop("user_nets", None)


def test_user_factory_gets_num_classes_and_options(user_module):
    options = {"hidden": 5}
    model = load_model(f"{user_module}:make_net", num_classes=3, kwargs=options)
    assert model[0].out_features == 5 and model[1].out_features == 3
    assert options == {"hidden": 5}


def test_user_factory_only_gets_arguments_it_names(user_module):
    model = load_model(f"{user_module}:fixed_net", num_classes=3, in_channels=1)
    assert isinstance(model, nn.Linear)


def test_user_factory_errors_name_the_problem(user_module):
    with pytest.raises(ModuleNotFoundError, match="no_such_pkg.nets"):
        load_model("no_such_pkg.nets:make", num_classes=2)
    with pytest.raises(ValueError, match="missing_factory"):
        load_model(f"{user_module}:missing_factory", num_classes=2)
    with pytest.raises(TypeError, match="NOT_CALLABLE"):
        load_model(f"{user_module}:NOT_CALLABLE", num_classes=2)
    with pytest.raises(TypeError, match="dict"):
        load_model(f"{user_module}:not_a_model", num_classes=2)


def test_a_syntax_error_in_the_users_model_file_is_one_line_with_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "typo_nets.py").write_text("from torch import nn\n\ndef make(num_classes)\n    return nn.Linear(2, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError) as error:
        load_model("typo_nets:make", num_classes=2)
    message = str(error.value)
    assert "typo_nets.py, line 3" in message and "hit a syntax error" in message and "def make(num_classes)" in message
    assert "\n" not in message and error.value.__cause__ is None
    # in a package's __init__ (imported first, also by the base model's cache key): the same one line
    (tmp_path / "typo_pkg").mkdir()
    (tmp_path / "typo_pkg" / "__init__.py").write_text("x = (\n")
    (tmp_path / "typo_pkg" / "nets.py").write_text("def make(num_classes):\n    return None\n")
    from rayprune.base_model import _module_file

    assert _module_file("typo_pkg.nets:make") is None
    with pytest.raises(UserError, match=r"__init__.py, line 1"):
        load_model("typo_pkg.nets:make", num_classes=2)


def test_user_factory_that_raises_is_named_with_its_exception_as_cause(user_module):
    with pytest.raises(ModelFactoryError) as error:
        load_model(f"{user_module}:broken", num_classes=2)
    message = str(error.value)
    assert message == "Model factory 'user_nets:broken' raised ZeroDivisionError: integer division or modulo by zero"
    assert isinstance(error.value.__cause__, ZeroDivisionError)
    # The factory still gets only the arguments it names, and its options.
    assert load_model(f"{user_module}:broken", num_classes=2, kwargs={"depth": 3}).out_features == 2
    # An option the factory does not take is the factory's TypeError, under the same line.
    with pytest.raises(ModelFactoryError, match=r"'user_nets:make_net' raised TypeError.*'depth'"):
        load_model(f"{user_module}:make_net", num_classes=2, kwargs={"depth": 3})


def test_torchvision_missing_explains_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ImportError, match=r"rayprune\[vision\]"):
        load_model("torchvision:resnet18", num_classes=10)


def test_checkpoint_round_trips(tmp_path):
    source = build_model("small_cnn", num_classes=4, in_channels=1, width_mult=0.25)
    for param in source.parameters():
        nn.init.normal_(param)
    path = tmp_path / "base.pt"
    torch.save({"state_dict": source.state_dict(), "epoch": 3}, path)
    loaded = load_model(
        "small_cnn", num_classes=4, in_channels=1, checkpoint=path, kwargs={"width_mult": 0.25}
    )
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_raw_and_data_parallel_state_dicts_load(tmp_path):
    source = build_model("resnet20", num_classes=10, width_mult=0.25)
    prefixed = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save(prefixed, tmp_path / "dp.pt")
    loaded = load_model(
        "resnet20", num_classes=10, checkpoint=tmp_path / "dp.pt", kwargs={"width_mult": 0.25}
    )
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)


def test_missing_checkpoint_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "model.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_model("small_cnn", num_classes=10, checkpoint=path)


def test_mismatched_checkpoint_says_what_differs(tmp_path):
    narrow = build_model("small_cnn", num_classes=10, in_channels=1, width_mult=0.5)
    path = tmp_path / "narrow.pt"
    torch.save(narrow.state_dict(), path)
    with pytest.raises(ValueError, match=r"narrow\.pt.*shape mismatches.*features\.0\.weight"):
        load_model("small_cnn", num_classes=10, in_channels=1, checkpoint=path)

    other = tmp_path / "other.pt"
    torch.save({"model_state": {"extra.weight": torch.zeros(1)}}, other)
    with pytest.raises(ValueError, match=r"missing keys.*unexpected keys \(1\): extra\.weight"):
        load_model("small_cnn", num_classes=10, in_channels=1, checkpoint=other)


def test_pickled_module_checkpoint_is_refused(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(build_model("small_cnn", num_classes=2, width_mult=0.25), path)
    with pytest.raises(ValueError, match="weights_only"):
        load_model("small_cnn", num_classes=2, checkpoint=path)


@pytest.mark.parametrize("damage", ["random", "truncated", "empty"])
def test_unreadable_checkpoint_names_the_file_and_the_format(tmp_path, damage):
    path = tmp_path / "base.pt"
    if damage == "random":
        path.write_bytes(random.Random(0).randbytes(3000))
    elif damage == "truncated":
        torch.save(build_model("small_cnn", num_classes=2, width_mult=0.25).state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    else:
        path.write_bytes(b"")
    with pytest.raises(ValueError) as error:
        load_model("small_cnn", num_classes=2, checkpoint=path, kwargs={"width_mult": 0.25})
    message = str(error.value)
    assert message.startswith(f"Cannot read checkpoint {str(path)!r} (")
    assert "it is not a torch.save file, or it is truncated or corrupt" in message
    assert "torch.save(model.state_dict(), path)" in message and "'state_dict'" in message
    assert "weights_only=False" not in message  # torch's advice to unpickle does not reach users


def test_check_input_shape_accepts_the_right_shape_and_keeps_modes():
    model = build_model("small_cnn", num_classes=10, in_channels=1, width_mult=0.25)
    model.train()
    model.features[1].eval()  # e.g. a frozen BatchNorm
    check_input_shape(model, (1, 28, 28))
    assert model.training and not model.features[1].training
    assert model.features[4].training


def test_an_embedding_that_reads_the_input_refuses_floats_as_token_ids_and_takes_int64():
    """A text model whose forward feeds the input to nn.Embedding was refused as if its input shape were wrong."""
    from rayprune.models.registry import FloatIdsRefused

    class TextNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.head = nn.Embedding(50, 8), nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.emb(x).mean(dim=1))

    with pytest.raises(FloatIdsRefused, match=r"does not accept float32 inputs: .*Long.*nn.Embedding reads the input "
                                              r"as token ids") as err:
        check_input_shape(TextNet(), (12,))
    assert "does not accept inputs of shape" not in str(err.value)  # the shape was right
    assert check_input_shape(TextNet(), (12,), "int64").shape == (2, 3)
    with pytest.raises(UserError, match="does not accept inputs of shape") as err:  # a wrong shape is still that
        check_input_shape(nn.Linear(4, 2), (5,), "int64")
    assert not isinstance(err.value, FloatIdsRefused)


def test_check_input_shape_rejects_a_wrong_shape():
    model = build_model("small_cnn", num_classes=10, in_channels=1, width_mult=0.25)
    expected = r"'SmallCNN' does not accept inputs of shape \(3, 28, 28\)"
    with pytest.raises(ValueError, match=expected):
        check_input_shape(model, (3, 28, 28))
    assert model.training
