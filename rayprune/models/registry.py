"""Model names -> modules: the zoo, user factories, torchvision, checkpoints and input checks.

A model is named in a config in one of three ways:

- a zoo name (case-insensitive), see :func:`list_models`;
- ``"package.module:factory"``: any importable callable returning an ``nn.Module``;
- ``"torchvision:<name>"``: a torchvision classifier (optional extra ``rayprune[vision]``).

Every zoo model ends in an ``nn.Linear`` producing the logits; :func:`output_layer_name` says which
module that is (zoo models name it in their ``classifier_layer_name`` attribute), so pruning code
can leave it out of the prunable layers.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from rayprune.models.mlp import mlp
from rayprune.models.resnet import resnet18, resnet20, resnet34, resnet56
from rayprune.models.small_cnn import small_cnn
from rayprune.models.vgg import vgg11, vgg13, vgg16, vgg19

from .._imports import import_user_module
from ..errors import UserError, UserTypeError
from ..inputs import probe_inputs

__all__ = [
    "ModelFactoryError",
    "build_model",
    "check_input_shape",
    "check_output_width",
    "check_model_for_data",
    "list_models",
    "load_model",
    "output_layer_name",
]

_ZOO: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "resnet18": resnet18,
    "resnet20": resnet20,
    "resnet34": resnet34,
    "resnet56": resnet56,
    "small_cnn": small_cnn,
    "vgg11": vgg11,
    "vgg13": vgg13,
    "vgg16": vgg16,
    "vgg19": vgg19,
}

# Keys a checkpoint dict may keep its model weights under, besides being a raw state dict.
_STATE_DICT_KEYS = ("state_dict", "model_state")
_TORCHVISION_PREFIX = "torchvision:"
_SHOWN_KEYS = 5


class ModelFactoryError(RuntimeError):
    """A user model factory (``package.module:factory``) raised; its exception is ``__cause__``."""


def list_models() -> list[str]:
    """Names of the zoo models, sorted.

    Example:
        >>> "resnet56" in list_models()
        True
    """
    return sorted(_ZOO)


def build_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | None = None,
    in_features: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a zoo model by name (case-insensitive), with random weights.

    ``in_channels`` goes to the conv models, ``in_features`` to the MLP; a model ignores the one it
    has no use for. Conv models accept any spatial size, so ``input_size`` is only used to infer
    the MLP's ``in_features = in_channels * input_size**2`` when ``in_features`` is not given.
    Remaining ``kwargs`` are model options (``width_mult``; for the MLP ``hidden_sizes``,
    ``pre_layer``, ``activations``, ``dropout``).

    Example:
        >>> model = build_model("ResNet20", num_classes=10, width_mult=0.5)
        >>> model(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    factory = _ZOO.get(name.strip().lower()) if isinstance(name, str) else None
    if factory is None:
        raise UserError(_unknown_model_message(name))
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("input_size", input_size, optional=True)
    _check_positive_int("in_features", in_features, optional=True)

    params = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        options = sorted(set(params) - {"num_classes", "in_channels", "in_features"})
        raise UserTypeError(
            f"Model {name!r} does not accept option(s) {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(options) or 'none'}."
        )
    if "in_features" in params and in_features is None:
        if input_size is None:
            raise UserError(
                f"Model {name!r} needs 'in_features' (or 'input_size' and 'in_channels' to "
                f"infer it from flattened images); got neither."
            )
        in_features = in_channels * input_size * input_size
    context = {"num_classes": num_classes, "in_channels": in_channels, "in_features": in_features}
    return factory(**{k: v for k, v in context.items() if k in params}, **kwargs)


def load_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    input_size: int | None = None,
    in_features: int | None = None,
    checkpoint: str | Path | None = None,
    kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build a model from a zoo name, a user factory or torchvision, then load its weights.

    A user factory is called with ``kwargs`` plus whichever of ``num_classes``, ``in_channels``,
    ``input_size`` and ``in_features`` (when set) its signature names as parameters. A checkpoint is
    read with ``torch.load(weights_only=True)``; it may be a raw state dict or a dict holding one
    under ``"state_dict"`` or ``"model_state"``. A ``module.`` prefix on every key (left by
    ``nn.DataParallel``) is removed. The weights must match the model exactly.

    Example:
        >>> model = load_model("small_cnn", num_classes=10, in_channels=1)
        >>> model = load_model("my_project.nets:make_net", num_classes=10,
        ...                    checkpoint="runs/base.pt", kwargs={"depth": 4})  # doctest: +SKIP
    """
    options = dict(kwargs or {})
    clashes = sorted(set(options) & {"num_classes", "in_channels", "input_size", "in_features"})
    if clashes:
        raise UserError(
            f"model.kwargs must not repeat {', '.join(map(repr, clashes))}: rayprune passes "
            f"{'them' if len(clashes) > 1 else 'it'} to the model factory from the data (its number of classes and "
            "input shape); remove it from kwargs (with load_model, pass it as its own argument)."
        )
    if not isinstance(name, str):
        raise UserError(_unknown_model_message(name))
    if name.startswith(_TORCHVISION_PREFIX):
        model = _build_torchvision(
            name[len(_TORCHVISION_PREFIX) :], num_classes=num_classes, in_channels=in_channels,
            options=options,
        )  # fmt: skip
    elif ":" in name:
        context = {
            "num_classes": num_classes,
            "in_channels": in_channels,
            "input_size": input_size,
            "in_features": in_features,
        }
        model = _build_from_factory(name, context=context, options=options)
    else:
        model = build_model(
            name, num_classes=num_classes, in_channels=in_channels, input_size=input_size,
            in_features=in_features, **options,
        )  # fmt: skip
    if checkpoint is not None:
        _load_checkpoint(model, Path(checkpoint))
    return model


def output_layer_name(model: nn.Module) -> str | None:
    """Name of the module producing the logits, for excluding it from pruning.

    Uses the model's ``classifier_layer_name`` attribute when it has one (every zoo model does),
    else the last ``nn.Linear`` registered in the model, else ``None``.

    Example:
        >>> output_layer_name(build_model("vgg11", num_classes=10))
        'classifier'
    """
    name = getattr(model, "classifier_layer_name", None)
    if isinstance(name, str):
        try:
            model.get_submodule(name)
        except AttributeError as err:
            raise UserError(
                f"{type(model).__name__}.classifier_layer_name is {name!r}, "
                f"which names no submodule."
            ) from err
        return name
    linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linear_names[-1] if linear_names else None


def check_input_shape(model: nn.Module, input_shape: tuple[int, ...], input_dtype: str = "float32") -> Any:
    """Run one forward pass on a zero batch of 2 to check that the model takes ``input_shape``; returns
    the model's output on it. ``input_dtype`` ``"int64"``: token ids (id 1) instead of float inputs; a model
    refusing float inputs because an nn.Embedding reads them raises :class:`FloatIdsRefused`.

    ``input_shape`` excludes the batch dimension. The pass runs in eval mode without gradients;
    every submodule's train/eval mode is restored afterwards.

    Example:
        >>> check_input_shape(build_model("small_cnn", num_classes=10, in_channels=1), (1, 28, 28)).shape
        torch.Size([2, 10])
    """
    shape = tuple(input_shape)
    if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise UserError(
            f"'input_shape' must be a non-empty tuple of positive integers; got {input_shape!r}."
        )
    reference = next(iter(model.parameters()), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else None
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            return model(probe_inputs(2, shape, input_dtype, device=device, float_dtype=dtype))
    except Exception as err:  # noqa: BLE001 - any failure means the shape is not accepted
        if _wants_integer_inputs(model, err):
            raise FloatIdsRefused(
                f"model {type(model).__name__!r} does not accept float32 inputs: {err}. Its nn.Embedding reads the "
                f"input as token ids"
            ) from err
        raise UserError(
            f"model {type(model).__name__!r} does not accept inputs of shape {shape}: {err}"
        ) from err
    finally:
        for module, training in modes.items():
            module.training = training


class FloatIdsRefused(UserError):
    """A model whose nn.Embedding reads its input refused float32 inputs: it wants int64 token ids."""


def _wants_integer_inputs(model: nn.Module, err: Exception) -> bool:
    """Whether ``err`` is an embedding refusing floating-point indices (the input fed to an nn.Embedding)."""
    text = str(err)
    return (any(isinstance(m, (nn.Embedding, nn.EmbeddingBag)) for m in model.modules())
            and "indices" in text and ("Long" in text or "integer" in text.lower()))


def check_model_for_data(model: nn.Module, input_shape: tuple[int, ...], *, task: str, num_classes: Optional[int],
                         custom_loss: bool, input_dtype: str = "float32", custom_metric: bool = False) -> None:
    """:func:`check_input_shape`, then, for a classifier trained with the built-in cross-entropy (a custom loss
    may read the outputs any way), :func:`check_output_width`; for a regressor, :func:`check_regression_width` unless
    both the loss and the metric are the user's (the built-in MSE and minus the MSE compare outputs and targets one
    to one).

    >>> check_model_for_data(nn.Linear(4, 1), (4,), task="classification", num_classes=2, custom_loss=True)
    """
    output = check_input_shape(model, tuple(input_shape), input_dtype)
    if task == "classification" and num_classes and not custom_loss:
        check_output_width(output, int(num_classes), type(model).__name__)
    if task == "regression" and num_classes and not (custom_loss and custom_metric):
        check_regression_width(output, int(num_classes), type(model).__name__)


def check_regression_width(output: Any, targets: int, model_name: str) -> None:
    """Refuse a regressor whose outputs per sample are not its targets per sample (the built-in MSE compares them
    one to one; a classifier handed over with task='regression' failed with a raw reshape error).

    >>> check_regression_width(torch.zeros(2, 1), 1, "Net")
    >>> check_regression_width(torch.zeros(2, 3), 1, "Net")
    Traceback (most recent call last):
    ...
    rayprune.errors.UserError: model 'Net' gives 3 outputs per sample, but the regression targets have 1 value per sample (data.task: regression); if the model is a classifier with 3 classes, the task is classification.
    """
    if not isinstance(output, torch.Tensor) or output.dim() not in (1, 2):
        return
    width = 1 if output.dim() == 1 else output.shape[1]
    if width == targets:
        return
    raise UserError(f"model {model_name!r} gives {width} output{'s' if width > 1 else ''} per sample, but the "
                    f"regression targets have {targets} "
                    f"value{'s' if targets > 1 else ''} per sample (data.task: regression)"
                    + (f"; if the model is a classifier with {width} classes, the task is classification."
                       if width > targets else "."))


def check_output_width(output: Any, num_classes: int, model_name: str) -> None:
    """Refuse a classifier with fewer outputs per sample than the data has classes: its fine-tunes would
    fail on the first label it cannot score, after the whole search (``output``: the model's output on
    a batch, :func:`check_input_shape`'s; anything but a 2-D tensor is not checked).

    >>> check_output_width(torch.zeros(2, 10), 10, "Net")
    >>> check_output_width(torch.zeros(2, 5), 10, "Net")
    Traceback (most recent call last):
    ...
    rayprune.errors.UserError: model 'Net' gives 5 outputs per sample, but the data has 10 classes (labels 0 to 9): its last layer needs 10 outputs (e.g. nn.Linear(..., 10)).
    """
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[1] == num_classes:
        return
    if output.shape[1] > num_classes:  # legal (cross-entropy trains it), but the extra outputs name no class
        warnings.warn(f"model {model_name!r} gives {output.shape[1]} outputs per sample, but the data has {num_classes} "
                      f"classes: outputs {num_classes} to {output.shape[1] - 1} name no class (the exported model keeps "
                      f"them; spec.json's class_names has {num_classes}). A last layer of {num_classes} outputs is "
                      "what this data needs.", UserWarning, stacklevel=3)
        return
    raise UserError(f"model {model_name!r} gives {output.shape[1]} outputs per sample, but the data has {num_classes} "
                    f"classes (labels 0 to {num_classes - 1}): its last layer needs {num_classes} outputs "
                    f"(e.g. nn.Linear(..., {num_classes})).")


def _unknown_model_message(name: object) -> str:
    return (
        f"Unknown model {name!r}; expected one of: {', '.join(list_models())} "
        f"or 'package.module:factory' or 'torchvision:<name>' (those two with load_model)."
    )


def _check_positive_int(field: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"'{field}' must be a positive integer; got {value!r}.")


def _build_torchvision(
    name: str, *, num_classes: int, in_channels: int, options: dict[str, Any]
) -> nn.Module:
    try:
        import torchvision.models as tv_models  # optional extra, imported only when asked for
    except (ImportError, OSError, RuntimeError) as err:
        # A torchvision built for another torch fails with OSError/RuntimeError, not ImportError.
        raise ImportError(
            f"Model 'torchvision:{name}' needs torchvision, which could not be imported ({err}). "
            f"It is an optional extra: pip install 'rayprune[vision]'; the torchvision version "
            f"must match the installed torch {torch.__version__}."
        ) from err
    if in_channels != 3:
        raise UserError(
            f"torchvision models take 3 input channels; got in_channels={in_channels} for "
            f"'torchvision:{name}'."
        )
    builder = getattr(tv_models, name, None)
    listed = tv_models.list_models() if hasattr(tv_models, "list_models") else None
    if name.startswith("_") or not callable(builder) or isinstance(builder, type) or (
        listed is not None and name not in listed
    ):
        raise UserError(
            f"torchvision.models has no model builder {name!r} (e.g. 'torchvision:resnet18')."
        )
    return _require_module(builder(num_classes=num_classes, **options), f"torchvision:{name}")


def _build_from_factory(
    spec: str, *, context: dict[str, Any], options: dict[str, Any]
) -> nn.Module:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise UserError(f"Model {spec!r} must look like 'package.module:factory'.")
    try:
        module = import_user_module(module_name, what=f"model {spec!r}")
    except ModuleNotFoundError as err:
        if err.name is not None and (module_name + ".").startswith(err.name + "."):
            raise ModuleNotFoundError(
                f"Cannot import module {module_name!r} for model {spec!r}: no module named "
                f"{err.name!r}. Is it installed or on sys.path?",
                name=err.name,
            ) from err
        raise ImportError(
            f"Importing module {module_name!r} for model {spec!r} failed: {err}"
        ) from err
    factory: Any = module
    for attr in attr_path.split("."):
        if not hasattr(factory, attr):
            raise UserError(
                f"Module {module_name!r} has no attribute {attr_path!r} (model {spec!r})."
            )
        factory = getattr(factory, attr)
    if callable(factory):  # call_factory itself says so when it is not
        factory = _blaming(factory, spec)
    return call_factory(factory, spec, context=context, options=options)


def _blaming(factory: Callable[..., Any], spec: str) -> Callable[..., Any]:
    """``factory``, whose exceptions become a :class:`ModelFactoryError` naming ``spec``.

    ``functools.wraps`` keeps the factory's signature visible to :func:`call_factory`, which
    passes only the context fields the factory names.
    """

    @functools.wraps(factory, updated=())
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return factory(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any failure of user code is reported the same way
            raise ModelFactoryError(
                f"Model factory {spec!r} raised {type(err).__name__}: {err}"
            ) from err

    return call


def call_factory(
    factory: Any, spec: str, *, context: Mapping[str, Any], options: Mapping[str, Any]
) -> nn.Module:
    """Call a user model factory with ``options`` plus the ``context`` fields its signature names.

    Example:
        >>> call_factory(lambda num_classes: nn.Linear(4, num_classes), "mine:f",
        ...              context={"num_classes": 3, "in_channels": 1}, options={}).out_features
        3
    """
    if not callable(factory):
        raise UserTypeError(
            f"{spec!r} is a {type(factory).__name__}, not a callable returning an nn.Module."
        )
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no inspectable signature
        params = {}
    passed = {k: v for k, v in context.items() if v is not None and k in params}
    return _require_module(factory(**passed, **options), spec)


def _require_module(model: object, source: str) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UserTypeError(
            f"Model {source!r} returned a {type(model).__module__}.{type(model).__qualname__}, "
            f"not a torch.nn.Module."
        )
    return model


_CHECKPOINT_FORMAT = (
    "A checkpoint must be a file written by torch.save holding a state dict (parameter names to "
    "tensors, as saved by torch.save(model.state_dict(), path)) or a dict holding one under "
    + " or ".join(map(repr, _STATE_DICT_KEYS))
    + "; it is read with torch.load(weights_only=True)."
)


def _load_checkpoint(model: nn.Module, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {str(path)!r}.")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt bytes fail in many ways; all mean "not weights"
        raise UserError(
            f"Cannot read checkpoint {str(path)!r} ({path.stat().st_size} bytes): "
            f"{_why_unreadable(err)}. {_CHECKPOINT_FORMAT}"
        ) from err
    state = _state_dict_of(loaded, path)
    _check_state_dict_matches(model, state, path)
    model.load_state_dict(state, strict=True)


def _why_unreadable(err: Exception) -> str:
    """One clause from torch.load's (long, multi-paragraph) error: the refused global or the damage.

    Example:
        >>> _why_unreadable(RuntimeError("Weights only load failed. ... WeightsUnpickler error: "
        ...                              "\\n\\nUnsupported operand 95\\n\\nCheck the docs."))
        'it is not a torch.save file, or it is truncated or corrupt (Unsupported operand 95)'
    """
    detail = str(err).split("WeightsUnpickler error:", 1)[-1].strip()
    first = detail.split("\n", 1)[0].split(". ", 1)[0].strip() or type(err).__name__
    if "Unsupported global" in detail:
        return (
            f"it holds Python objects, not only tensors ({first}); a whole pickled model is "
            f"refused because unpickling it would run code, so save model.state_dict() instead"
        )
    return f"it is not a torch.save file, or it is truncated or corrupt ({first})"


def _state_dict_of(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint, with a DataParallel ``module.`` prefix removed."""
    if isinstance(loaded, Mapping):
        for key in _STATE_DICT_KEYS:
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if (
        not isinstance(loaded, Mapping)
        or not loaded
        or not all(isinstance(v, torch.Tensor) for v in loaded.values())
    ):
        found = list(loaded)[:_SHOWN_KEYS] if isinstance(loaded, Mapping) else type(loaded).__name__
        raise UserError(
            f"Checkpoint {str(path)!r} holds no state dict: expected a mapping of names to tensors "
            f"or one under {' or '.join(map(repr, _STATE_DICT_KEYS))}; found {found!r}."
        )
    state = dict(loaded)
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def _check_state_dict_matches(
    model: nn.Module, state: Mapping[str, torch.Tensor], path: Path
) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:_SHOWN_KEYS])}"
        + (f" and {len(items) - _SHOWN_KEYS} more" if len(items) > _SHOWN_KEYS else "")
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mismatched),
        )
        if items
    ]
    if problems:
        raise UserError(
            f"Checkpoint {str(path)!r} does not fit model {type(model).__name__!r}: "
            + "; ".join(problems)
            + "."
        )
