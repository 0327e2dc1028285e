"""Export a model to ONNX with a dynamic batch dimension.

The graph is recorded with PyTorch's TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``): on 2 CPU cores it takes about 0.1-0.4 s for a CIFAR VGG-11, where the
``torch.export``-based exporter takes 2-5 s, and :func:`~rayprune.pruning.export.save_pruned`
runs it for every exported model. Where the TorchScript-based exporter fails (or a later PyTorch
no longer has it) the ``torch.export``-based one (it needs ``onnxscript``) is tried next. The input
is named ``input``, the output ``output``; dimension 0 of both is the symbolic ``batch``, so the
file runs at any batch size.

Example::

    export_onnx(pruned, "out/best/model.onnx", input_shape=(3, 32, 32))
    session = onnxruntime.InferenceSession("out/best/model.onnx")
    logits = session.run(None, {"input": x.numpy()})[0]          # any batch size
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import re
import warnings
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from .._io import atomic_write_bytes
from ..errors import UserError
from ..inputs import probe_inputs

__all__ = ["export_onnx", "onnx_bytes", "check_onnx_opset", "onnx_missing", "ONNX_INSTALL_HINT", "INPUT_NAME", "OUTPUT_NAME"]

INPUT_NAME, OUTPUT_NAME, BATCH_DIM = "input", "output", "batch"
ONNX_INSTALL_HINT = "pip install 'rayprune[onnx]'"
#: The batch of the example input: 2, not 1, so that no exporter can mistake the batch for a constant.
_EXAMPLE_BATCH = 2


def onnx_missing(*modules: str) -> list[str]:
    """Which of ``modules`` (default: ``onnx``) are not installed.

    >>> onnx_missing("json", "rp_no_such_module")
    ['rp_no_such_module']
    """
    return [m for m in (modules or ("onnx",)) if importlib.util.find_spec(m) is None]


def _torchscript_exporter(model: nn.Module, x: torch.Tensor, opset: Optional[int] = None) -> bytes:
    buffer = io.BytesIO()
    torch.onnx.export(
        model, (x,), buffer, dynamo=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: BATCH_DIM}, OUTPUT_NAME: {0: BATCH_DIM}},
        **({"opset_version": opset} if opset is not None else {}),
    )
    return buffer.getvalue()


def _dynamo_exporter(model: nn.Module, x: torch.Tensor, opset: Optional[int] = None) -> bytes:
    program = torch.onnx.export(
        model, (x,), dynamo=True, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},), verbose=False,
        **({"opset_version": opset} if opset is not None else {}),
    )
    return without_node_metadata(program.model_proto).SerializeToString()


def without_node_metadata(proto):
    """``proto`` (an ``onnx.ModelProto``, edited in place) without its nodes' ``metadata_props``: the
    ``torch.export``-based exporter records each node's Python stack trace, FX node and module path there —
    more than half of a small model's file, and the paths of the user's source files, in a file meant to
    be shipped. Subgraphs and functions too."""
    def clean(graph) -> None:
        for node in graph.node:
            del node.metadata_props[:]
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    clean(attribute.g)
                for sub in attribute.graphs:
                    clean(sub)

    clean(proto.graph)
    for function in proto.functions:
        clean(function)  # a FunctionProto has nodes (and their subgraphs) as a graph does
    return proto


#: Tried in order; the first that returns wins.
_EXPORTERS: tuple[tuple[str, Callable[..., bytes]], ...] = (
    ("torchscript-based exporter", _torchscript_exporter),
    ("torch.export-based exporter", _dynamo_exporter),
)


def onnx_bytes(model: nn.Module, input_shape: Sequence[int], input_dtype: str = "float32",
               opset: Optional[int] = None) -> bytes:
    """The serialised ONNX model of ``model`` in eval mode on CPU (``model`` itself is left as it is), taking
    ``input_dtype`` inputs (``"int64"``: token ids), in ONNX ``opset`` (None: the exporter's default).

    Raises ``RuntimeError`` naming each exporter's failure when none of them can export it.
    """
    return _exported(model, input_shape, input_dtype, opset)[1]


def _exported(model: nn.Module, input_shape: Sequence[int], input_dtype: str = "float32",
              opset: Optional[int] = None) -> tuple[str, bytes]:
    """``(the exporter that wrote it, the serialised ONNX model)``: :func:`onnx_bytes`."""
    net = copy.deepcopy(model).to("cpu").eval()
    if input_dtype == "int64":  # token ids: the probe's id 1 (0 is padding: an all-padding trace is another graph)
        x = probe_inputs(_EXAMPLE_BATCH, tuple(input_shape), input_dtype)
    else:
        x = torch.randn(_EXAMPLE_BATCH, *input_shape, generator=torch.Generator().manual_seed(0))  # global RNG untouched
    failures = []
    for name, exporter in _EXPORTERS:
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
                data = exporter(net, x, opset)
            declared = declared_opset(data) if opset is not None else None
            if declared is not None and declared != opset:  # torch.export's exporter writes 18 when asked for 13
                raise RuntimeError(f"asked for opset {opset}, it wrote opset {declared}")
            return name, data
        except Exception as exc:
            failures.append(f"{name}: {type(exc).__name__}: {_first_line(exc)}")
    raise RuntimeError("ONNX export failed (" + "; ".join(failures) + ")")


def export_onnx(model: nn.Module, path: str | os.PathLike, input_shape: Sequence[int],
                input_dtype: str = "float32", metadata: Optional[Mapping[str, str]] = None,
                opset: Optional[int] = None) -> str:
    """Write ``model`` to ``path`` as ONNX (batch dimension dynamic), atomically; returns which exporter wrote it.

    ``input_shape`` is one sample's shape, e.g. ``(3, 32, 32)``; ``input_dtype`` what it takes (``"int64"``:
    token ids). The file's ``metadata_props`` describe its input (``rayprune.input_shape``, a JSON list, and
    ``rayprune.input_dtype``) and hold ``metadata``'s key/value strings as well (an export's preprocessing), so
    that the file describes its own inputs on a device without rayprune. Raises ``ImportError`` naming the extra
    when ``onnx`` is not installed, ``RuntimeError`` when the model cannot be exported. ``opset``: the ONNX opset
    (None: the exporter's default; ``export.onnx_opset``).
    """
    if onnx_missing():
        raise ImportError(f"onnx not installed ({ONNX_INSTALL_HINT})")
    name, data = _exported(model, input_shape, input_dtype, opset)
    import onnx

    proto = onnx.ModelProto.FromString(data)
    described = {"rayprune.input_shape": json.dumps([int(d) for d in input_shape]), "rayprune.input_dtype": input_dtype,
                 **(metadata or {})}
    for key, value in described.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    data = proto.SerializeToString()
    atomic_write_bytes(path, data)
    return name


def check_onnx_opset(model: nn.Module, input_shape: Sequence[int], input_dtype: str, opset: Optional[int]) -> None:
    """Raise :class:`~rayprune.errors.UserError` (a ``ValueError``) naming ``export.onnx_opset`` when ``opset`` was
    asked for and ``model`` (the base: a pruned model has the same operators) cannot be written in it, or onnx is not
    installed; nothing when ``opset`` is None (the exporter's default, and a failed export is then said in spec.json
    as before). Run once before the search, so that a run asked for opset 99 stops at once instead of ending with no
    model.onnx after the search."""
    if opset is None:
        return
    if onnx_missing():
        raise UserError(f"export.onnx_opset is {opset} but onnx is not installed ({ONNX_INSTALL_HINT}), so no "
                        "model.onnx can be written; install it, or remove export.onnx_opset")
    import onnx

    newest = int(onnx.defs.onnx_opset_version())
    if opset > newest:
        raise UserError(f"export.onnx_opset is {opset}, but the installed onnx knows opsets up to {newest}; give an "
                        f"opset from 7 to {newest} that the target runtime supports, or remove it for the exporter's "
                        "default")
    try:
        _exported(model, input_shape, input_dtype, opset)
    except RuntimeError as err:
        raise UserError(f"export.onnx_opset is {opset}, but the base model cannot be written in that opset "
                        f"({_first_line(err)}); give another opset, or remove it for the exporter's default") from err


def declared_opset(data: bytes) -> Optional[int]:
    """The default-domain (``ai.onnx``) opset a serialised ONNX model declares; None without onnx or such an entry."""
    if onnx_missing():
        return None
    import onnx

    proto = onnx.ModelProto.FromString(data)
    return next((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)


def _first_line(exc: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch.export colours its messages
    return text.splitlines()[0][:300] if text else "(no message)"
