"""Save a pruned model so it loads anywhere, and load it back.

A pruned model directory holds

* ``spec.json``: how to rebuild it: the original architecture (zoo name or ``pkg.mod:factory``
  with its arguments) and the :class:`~rayprune.pruning.plan.PruningPlan` that replays the pruning;
* ``weights.pt``: the pruned ``state_dict`` (tensors only: loads with ``weights_only=True``);
* ``model.pt``: the whole pickled module (``torch.save(model)``), for environments without
  rayprune; loading it runs pickled code, so :func:`load_pruned` only does it when asked;
* ``model.torchscript.pt`` when the model can be traced with TorchScript;
* ``model.onnx`` (batch dimension dynamic, input ``input``, output ``output``) when the ``onnx``
  extra is installed and the model can be exported; otherwise ``spec.json``'s ``onnx_error`` says
  why (:mod:`rayprune.pruning.onnx_export`).

Example::

    save_pruned(small, "out/best", architecture={"name": "vgg16", "num_classes": 10}, plan=plan,
                input_shape=(3, 32, 32))
    model = load_pruned("out/best")      # in any process: same outputs as ``small``
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch
from torch import nn

from .._io import atomic_directory, atomic_path, atomic_torch_save, atomic_write_text, stale_copies
from ..errors import UserError
from ..inputs import probe_inputs
from ..names import is_in_memory
from .plan import PruningPlan, apply_plan

__all__ = ["save_pruned", "load_pruned", "read_spec", "update_summary", "SPEC_FORMAT", "UntrustedArchitectureError"]

SPEC_FORMAT = "rayprune.pruned/1"
SPEC_FILE, WEIGHTS_FILE, MODULE_FILE, TORCHSCRIPT_FILE = "spec.json", "weights.pt", "model.pt", "model.torchscript.pt"
ONNX_FILE = "model.onnx"


def save_pruned(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    architecture: Optional[Mapping[str, Any]],
    plan: PruningPlan,
    input_shape: Sequence[int],
    extra: Optional[Mapping[str, Any]] = None,
    torchscript: bool = True,
    input_dtype: str = "float32",
    onnx_opset: Optional[int] = None,
) -> Path:
    """Write ``model`` (already pruned by ``plan``) to ``directory`` and return the directory.

    The folder is filled under a hidden name and then takes ``directory``'s place whole
    (:func:`rayprune._io.atomic_directory`): a reader, or a process killed mid-export, sees the
    previous export or the new one, never the new weights under the old spec.

    ``architecture`` holds the keyword arguments of :func:`rayprune.models.load_model` that rebuild
    the *unpruned* architecture (without its checkpoint); ``None`` if it cannot be rebuilt, in
    which case only the pickled module can be loaded.

    ``model.onnx`` is written best effort, like TorchScript: ``spec["files"]["onnx"]`` is ``None``
    when it is missing and ``spec["onnx_error"]`` says why in one line (onnx not installed, or the
    exporter's error); ``spec["onnx_error"]`` is ``None`` when the file was written. ``onnx_opset``: its ONNX
    opset (None: the exporter's default; ``spec["onnx_opset"]`` records the one written).
    """
    from .. import __version__

    with atomic_directory(directory) as staging:  # the old export or the whole new one, never a mix
        _write_model_files(model, staging, architecture=architecture, plan=plan, input_shape=input_shape,
                           extra=extra, torchscript=torchscript, version=__version__, input_dtype=input_dtype,
                           onnx_opset=onnx_opset)
    return Path(directory)


def without_debug_info(traced: torch.jit.ScriptModule) -> bytes:
    """``traced`` as TorchScript archive bytes without its ``*.debug_pkl`` entries: they map every op to the source
    line that traced it, with the paths of this machine's files (the user's model code, rayprune's, Ray's), and make
    up about a third of a small model's file; ``torch.jit.load`` does not need them. The archive's folder is
    ``model`` (saving to a temporary file named it after that file).

    >>> import io, zipfile
    >>> data = without_debug_info(torch.jit.trace(nn.Linear(2, 1), torch.zeros(1, 2)))
    >>> any(n.endswith(".debug_pkl") for n in zipfile.ZipFile(io.BytesIO(data)).namelist())
    False
    >>> torch.jit.load(io.BytesIO(data))(torch.ones(1, 2)).shape
    torch.Size([1, 1])
    >>> archive = zipfile.ZipFile(io.BytesIO(data))  # every record's data 64-byte aligned, as torch writes it
    >>> all((i.header_offset + 30 + len(i.filename) + len(i.extra)) % 64 == 0 for i in archive.infolist())
    True
    """
    import io
    import struct
    import zipfile

    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            if info.filename.endswith(".debug_pkl"):
                continue
            name = "model/" + info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            entry = zipfile.ZipInfo(name, date_time=info.date_time)
            # each record's data starts on a 64-byte boundary, as PyTorch's writer lays it out (for memory
            # mapping): padded through an extra field, as PyTorch pads it ("FB", then 'Z's)
            start = out.tell() + 30 + len(name.encode()) + 4  # local header, name, the extra field's own header
            pad = -start % _TS_ALIGNMENT
            entry.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad
            dst.writestr(entry, src.read(info))
    return out.getvalue()


#: the alignment of a TorchScript archive's records (PyTorch's ``kFieldAlignment``)
_TS_ALIGNMENT = 64


def _trace_kwargs() -> dict[str, Any]:
    """``_store_inputs=False`` where this torch's ``jit.trace`` takes it (a private argument: without it the
    archive keeps the probe input, and a torch that renamed it must not make the TorchScript file vanish)."""
    import inspect

    return {"_store_inputs": False} if "_store_inputs" in inspect.signature(torch.jit.trace).parameters else {}


def _write_model_files(model: nn.Module, out: Path, *, architecture, plan: PruningPlan, input_shape: Sequence[int],
                       extra, torchscript: bool, version: str, input_dtype: str = "float32",
                       onnx_opset: Optional[int] = None) -> None:
    """Every file of a pruned-model directory into the (empty) folder ``out``; ``spec.json`` last."""
    cpu_state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    atomic_torch_save(cpu_state, out / WEIGHTS_FILE)
    module_copy = copy.deepcopy(model).to("cpu").eval()  # the caller's model keeps its mode
    module_error = None
    try:  # best effort, like TorchScript: spec.json + weights.pt are what load_pruned needs
        atomic_torch_save(module_copy, out / MODULE_FILE)
    except Exception as exc:  # lambdas, local classes, a script's (__main__) class in a Ray actor: not picklable
        module_error = _module_error_text(module_copy, exc)
    module_ok = module_error is None
    ts_ok = False
    if torchscript:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(module_copy, probe_inputs(1, tuple(input_shape), input_dtype),
                                         **_trace_kwargs())  # (the probe is not part of the model)
                with atomic_path(out / TORCHSCRIPT_FILE) as tmp:
                    tmp.write_bytes(without_debug_info(traced))
                ts_ok = True
        except Exception:  # many models cannot be traced; the other two formats remain
            ts_ok = False
    # the ONNX file describes its own inputs (export_onnx writes their shape and dtype): the preprocessing too
    described = ({"rayprune.preprocessing": json.dumps(extra["preprocessing"])}
                 if extra and extra.get("preprocessing") is not None else {})
    onnx_error, onnx_exporter = _write_onnx(module_copy, out / ONNX_FILE, input_shape, input_dtype, described,
                                            onnx_opset)
    spec = {
        "format": SPEC_FORMAT,
        "rayprune_version": version,
        "torch_version": torch.__version__,
        "architecture": dict(architecture) if architecture is not None else None,
        "input_shape": list(input_shape),
        "input_dtype": input_dtype,
        "files": {
            "weights": WEIGHTS_FILE,
            "module": MODULE_FILE if module_ok else None,
            "torchscript": TORCHSCRIPT_FILE if ts_ok else None,
            "onnx": ONNX_FILE if onnx_error is None else None,
        },
        "module_error": module_error,  # why model.pt was not written (None: written)
        "onnx_error": onnx_error,
        "onnx_exporter": onnx_exporter,  # PyTorch's exporter that wrote model.onnx (None: not written)
        "onnx_opset": _onnx_opset(out / ONNX_FILE) if onnx_error is None else None,  # what a runtime must support
        "plan": plan.to_json(),
        **(dict(extra) if extra else {}),
    }
    atomic_write_text(out / SPEC_FILE, json.dumps(spec, indent=1))


def _module_error_text(model: nn.Module, exc: Exception) -> str:
    """Why the pickled module could not be written, in one line, with what to do instead.

    >>> class Local(nn.Module): pass
    >>> Local.__module__ = "__main__"
    >>> _module_error_text(Local(), TypeError("cannot pickle"))[:80]
    'TypeError: cannot pickle; the model class Local is defined in the script that ra'
    """
    text = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or ['(no message)'])[0][:200]}"
    cls = type(model)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        where = "the script that ran rayprune (__main__)" if cls.__module__ == "__main__" else "a function"
        text += (f"; the model class {cls.__qualname__} is defined in {where}, which another process cannot import: "
                 "load with rayprune.load_pruned(path, factory=" + cls.__name__ + "), or define the class in a module")
    return text


def _module_note(spec: Mapping[str, Any]) -> str:
    """Why a directory has no model.pt, for an error message."""
    return f"not written: {spec['module_error']}" if spec.get("module_error") else "not written"


def update_summary(directory: str | Path, values: Mapping[str, Any]) -> None:
    """Rewrite ``spec.json``'s ``summary`` with ``values`` (a model's timed costs measured again after it was
    exported: the file that travels with the model carries the numbers its level was judged on)."""
    path = Path(directory) / SPEC_FILE
    spec = json.loads(path.read_text())
    spec["summary"] = {**(spec.get("summary") or {}), **dict(values)}
    atomic_write_text(path, json.dumps(spec, indent=1))


def _write_onnx(model: nn.Module, path: Path, input_shape: Sequence[int], input_dtype: str = "float32",
                metadata: Optional[Mapping[str, str]] = None,
                opset: Optional[int] = None) -> tuple[Optional[str], Optional[str]]:
    """Export ``model`` to ONNX at ``path`` (with ``metadata`` in its ``metadata_props``): ``(None, the exporter)``
    if written, else ``(why not in one line, None)``."""
    from .onnx_export import ONNX_INSTALL_HINT, export_onnx, onnx_missing

    if onnx_missing():
        return f"onnx not installed ({ONNX_INSTALL_HINT})", None
    try:
        return None, export_onnx(model, path, input_shape, input_dtype, metadata, opset)
    except Exception as exc:  # the other formats are written all the same
        reason = " ".join(str(exc).split()) or "(no message)"
        return f"{type(exc).__name__}: {reason}"[:500], None


def _onnx_opset(path: Path) -> Optional[int]:
    """The default-domain opset of the ONNX file at ``path`` (the oldest ONNX Runtime that runs it follows from it;
    the exporter's default moves with PyTorch), None where it cannot be read."""
    try:
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    except Exception:  # noqa: BLE001 - a note in spec.json, never a reason to fail an export
        return None


def read_spec(directory: str | os.PathLike) -> dict:
    """Read and check ``spec.json`` of a pruned-model directory (data only: nothing is imported)."""
    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        stale = [p for p in stale_copies(directory) if (p / SPEC_FILE).is_file()]
        hint = (f" An export into it was interrupted between its two renames; the whole model folders it left are "
                f"{', '.join(str(p) for p in stale)} (the previous export is the '.old' one, the new the '.tmp' one): "
                "rename one of them to it." if stale and not Path(directory).exists() else "")
        raise FileNotFoundError(
            f"{path} not found: {directory} is not a rayprune pruned-model directory "
            f"(expected {SPEC_FILE} and {WEIGHTS_FILE})." + hint
        )
    try:
        spec = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc}).") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise UserError(f"{path}: expected format {SPEC_FORMAT!r}; got {found!r}.")
    return spec


class UntrustedArchitectureError(PermissionError):
    """``spec.json`` names code (a user factory) that the caller did not allow to run."""


#: Keyword arguments that would make a torchvision builder download weights at load time.
_TORCHVISION_DOWNLOADS = ("weights", "weights_backbone")


def _architecture_builder(
    arch: Mapping[str, Any], spec_path: Path, factory: Optional[Callable[..., nn.Module]],
    allow_factories: Iterable[str],
) -> Callable[[], nn.Module]:
    """How to rebuild the unpruned architecture named in ``spec.json``, or why it may not be.

    A zoo name rebuilds from rayprune's own code. ``torchvision:<name>`` rebuilds from a builder
    that torchvision lists, never with weights to download. A ``package.module:factory`` is code
    chosen by the file: it runs only if the caller passes the factory itself (``factory=``) or
    names it in ``allow_factories``. Everything else is refused before anything is imported.
    """
    from ..models import list_models, load_model

    if not isinstance(arch, Mapping) or not isinstance(arch.get("name"), str):
        raise UserError(f"{spec_path}: 'architecture' must be a mapping with a string 'name'; got {arch!r}.")
    name = arch["name"]
    if is_in_memory(name):  # pruned from a model handed over as an object: no name can rebuild it
        if factory is None:
            raise UntrustedArchitectureError(
                f"{spec_path}: the model was pruned from an object handed over in memory ({name!r}); pass a "
                "callable returning the unpruned model: load_pruned(path, factory=lambda: MyNet(...)), or load "
                "model.onnx / model.torchscript.pt, which need no code.")
        return lambda: _require_unpruned(factory(), spec_path)
    allowed = {a for a in ((allow_factories,) if isinstance(allow_factories, str) else allow_factories)}
    kwargs = arch.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise UserError(f"{spec_path}: 'architecture.kwargs' must be a mapping; got {kwargs!r}.")
    fields = {k: arch.get(k) for k in ("num_classes", "in_channels", "input_size", "in_features") if k in arch}
    fields = {k: v for k, v in fields.items() if v is not None}
    if name.startswith("torchvision:"):
        downloads = [k for k in _TORCHVISION_DOWNLOADS if kwargs.get(k) is not None]
        if downloads:
            raise UntrustedArchitectureError(
                f"{spec_path}: architecture {name!r} asks for {downloads} (a download at load time); refused."
            )
        return lambda: load_model(name, **fields, kwargs=kwargs)
    if ":" not in name:
        if name.strip().lower() not in list_models():
            raise UserError(f"{spec_path}: architecture {name!r} is not a rayprune zoo model ({', '.join(list_models())}).")
        return lambda: load_model(name, **fields, kwargs=kwargs)
    if factory is not None:
        from ..models.registry import call_factory

        return lambda: call_factory(factory, name, context=fields, options=dict(kwargs))
    if name in allowed:
        return lambda: load_model(name, **fields, kwargs=kwargs)
    raise UntrustedArchitectureError(
        f"{spec_path} names the model factory {name!r}: loading would import and run that code, so it is refused. "
        f"If you trust it, pass it: load_pruned(path, factory=<the function>) or "
        f"load_pruned(path, allow_factories=[{name!r}])."
    )


def _require_unpruned(model: object, spec_path: Path) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise UserError(f"{spec_path}: factory= must return the unpruned nn.Module; got {type(model).__name__}.")
    return model


def _mismatch(directory: Path, arch: Mapping[str, Any], factory: Optional[Callable[..., nn.Module]],
              exc: Exception, *, stage: str) -> str:
    """One line for a rebuilt network that the saved pruning plan (``stage="plan"``) or weights (``"weights"``)
    do not fit, with the first mismatch and the likely cause."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith(("size mismatch", "Missing key", "Unexpected key"))),
                 lines[0] if lines else type(exc).__name__)
    name = arch.get("name")
    described = f"{name!r} with num_classes={arch.get('num_classes')}, kwargs={arch.get('kwargs') or {}}"
    user_built = factory is not None and (is_in_memory(name) or ":" in str(name))
    if user_built:
        cause = (f"the factory= you passed does not build the network that was pruned (spec.json: {described}); "
                 "pass the function that built the unpruned model, called with those arguments")
    elif stage == "plan" and ":" in str(name):
        cause = (f"{name!r} no longer builds the network that was pruned (spec.json: {described}; has its code "
                 "changed since the export?)")
    elif stage == "plan":
        cause = (f"the network rebuilt from spec.json ({described}) is not the one that was pruned (a changed zoo "
                 "definition or rayprune version, or an edited spec.json)")
    else:
        cause = (f"{WEIGHTS_FILE} does not match the pruned network spec.json describes ({described}): it may come "
                 "from another export")
    return f"{directory}: {cause}; first mismatch: {first}."


def load_pruned(
    directory: str | os.PathLike,
    *,
    map_location: str | torch.device = "cpu",
    factory: Optional[Callable[..., nn.Module]] = None,
    allow_factories: Iterable[str] = (),
    allow_pickle: bool = False,
) -> nn.Module:
    """Load a pruned model saved by :func:`save_pruned`, in eval mode, running no code it names.

    The unpruned architecture is rebuilt from ``spec.json``, the plan replayed and the weights
    loaded with ``torch.load(weights_only=True)``. The directory never chooses code on its own:

    * zoo architectures (``vgg16``, ``resnet56`` ...) and torchvision builders rebuild by default;
    * a user factory (``package.module:name`` in ``spec.json``) is used only if you pass it as
      ``factory=`` or list its name in ``allow_factories``; otherwise :class:`UntrustedArchitectureError`;
    * the pickled ``model.pt`` is read only with ``allow_pickle=True``, and only when the
      architecture cannot be rebuilt (unpickling runs code from the file: files you trust only).

    Example::

        model = load_pruned("runs/q/models/params=0.25")                      # zoo model
        model = load_pruned("runs/mine/best", factory=my_project.nets.make_net)  # your factory
        model = load_pruned("runs/nb/best", factory=MyNet)                      # a class: MyNet() builds it

    ``factory`` may also be the unpruned model itself (``factory=my_net``, an ``nn.Module``): a copy of it is pruned
    by the plan and takes the saved weights; ``my_net`` is left as it is.
    """
    directory = Path(directory)
    spec = read_spec(directory)
    given = factory  # (named as the caller passed it in messages)
    if isinstance(factory, nn.Module):  # calling an instance ran its forward() with no input: "missing 'x'"
        unpruned = factory
        factory = lambda *args, **kwargs: copy.deepcopy(unpruned)  # noqa: E731 - one line, used once
    arch = spec.get("architecture")
    rebuild_error: Optional[Exception] = None
    if arch is not None:
        try:
            build = _architecture_builder(arch, directory / SPEC_FILE, factory, allow_factories)
        except UntrustedArchitectureError:
            if not allow_pickle:
                raise
            build = None  # the caller trusts the directory: its pickled module is the fallback
        try:
            model = build() if build is not None else None
        except Exception as exc:  # report below, or fall back to the pickle if allowed
            rebuild_error = exc
            model = None
        if model is not None:
            if not isinstance(spec.get("plan"), (list, dict)):
                raise UserError(f"{directory / SPEC_FILE}: no pruning 'plan' (got {spec.get('plan')!r}); the file is "
                                "not a complete rayprune export.")
            try:
                plan = PruningPlan.from_json(spec["plan"])
            except ValueError as exc:
                raise UserError(f"{directory / SPEC_FILE}: {exc}") from None
            state = torch.load(directory / WEIGHTS_FILE, map_location=map_location, weights_only=True)
            try:
                apply_plan(model, plan)
            except (RuntimeError, IndexError, KeyError, ValueError) as exc:
                raise UserError(_mismatch(directory, arch, factory, exc, stage="plan")) from exc
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise UserError(_mismatch(directory, arch, factory, exc, stage="weights")) from exc
            return model.to(map_location).eval()
    if allow_pickle:
        module = torch.load(directory / MODULE_FILE, map_location=map_location, weights_only=False)
        return module.eval()
    reason = f"rebuilding {arch!r} failed: {rebuild_error}" if arch is not None else "spec.json has no architecture"
    name = arch.get("name") if isinstance(arch, Mapping) else None
    if factory is not None and rebuild_error is not None and (is_in_memory(name) or ":" in str(name)):
        # the caller's own code failed (a zoo or torchvision name never calls it): that is what to fix
        how = ("with no arguments (a class, or e.g. lambda: MyNet(width=32)), or be that model itself"
               if is_in_memory(name) else
               f"called as spec.json's {name!r} was: with its kwargs {arch.get('kwargs') or {}} and the context "
               "arguments it names (num_classes, in_channels, in_features, input_size)")
        shown = type(given).__name__ + "()" if isinstance(given, nn.Module) else getattr(given, "__name__", given)
        raise RuntimeError(f"Cannot load {directory}: factory={shown} raised {type(rebuild_error).__name__}: "
                           f"{rebuild_error}. factory must build the unpruned model {how}.") from rebuild_error
    pickled = (f"Pass allow_pickle=True to load the pickled module {MODULE_FILE} instead (this runs code from the "
               "file; only do it for files you trust)" if (directory / MODULE_FILE).is_file() else
               f"There is no {MODULE_FILE} to fall back to ({_module_note(spec)}); load model.onnx or "
               "model.torchscript.pt, which need no code")
    raise RuntimeError(f"Cannot load {directory} safely: {reason}. {pickled}.")
