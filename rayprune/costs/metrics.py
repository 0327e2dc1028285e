"""Built-in costs of a (pruned) model: parameters, MACs, latency and peak memory.

Each has the signature ``f(model, context) -> float`` (:data:`~rayprune.costs.context.CostFn`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import statistics
import sys
import threading
import time
import warnings
import weakref
from typing import Callable, Optional

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, _FlopCounterMode

from ..errors import UserError
from .context import CostContext

__all__ = ["count_params", "count_macs", "measure_latency_ms", "measure_peak_memory_mb", "on_device"]


@contextlib.contextmanager
def _eval_mode(model: nn.Module):
    """Eval mode for the block; every submodule's own flag is restored afterwards."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def count_params(model: nn.Module, context: CostContext | None = None) -> float:
    """Number of parameters (every element of every ``nn.Parameter``)."""
    return float(sum(p.numel() for p in model.parameters()))


def _native_mha_flops(query, key, value, embed_dim, num_head, qkv_weight, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``nn.MultiheadAttention``'s fused inference path (``aten._native_multi_head_attention``, taken
    in eval mode without gradients), which ``FlopCounterMode`` does not count: the q projection over the
    ``n`` query tokens, the k and v projections over the ``s`` key tokens, the two attention products and
    the output projection — what its unfused path counts as matrix products.

    >>> _native_mha_flops((1, 16, 16), (1, 16, 16), (1, 16, 16), 16, 4, (48, 16)) // 2  # 4*n*e*e + 2*n*s*e
    24576
    """
    b, n, s, e = query[0], query[1], key[1], embed_dim
    return 2 * b * (n * e * e + 2 * s * e * e + 2 * n * s * e + n * e * e)


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of ``scaled_dot_product_attention``'s CPU kernel (``(b, h, n, d)`` queries against ``s`` keys), which
    ``FlopCounterMode`` counts on GPUs only: the two products ``q @ k^T`` and ``attention @ v``."""
    b, h, n, d = query
    return 2 * 2 * b * h * n * key[-2] * d


#: attention kernels PyTorch's counter misses on CPU and in inference (the MACs of a transformer block would
#: otherwise depend on whether its attention ran fused, and leave out the attention itself)
_ATTENTION_FLOPS = {
    op: formula for name, formula in (("_native_multi_head_attention", _native_mha_flops),
                                      ("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_flops))
    if (op := getattr(torch.ops.aten, name, None)) is not None
}


@torch.no_grad()
def count_macs(model: nn.Module, context: CostContext) -> float:
    """Multiply-accumulates of one sample's forward pass.

    Counted by PyTorch's ``FlopCounterMode`` (convolutions, matrix products, attention), halved:
    ``MACs = FLOPs / 2``. Bias additions, normalisation and activations are not counted, as is
    usual in the pruning literature. Attention counts its projections and its two products
    (``q @ k^T``, ``attention @ v``) whichever kernel runs it (:data:`_ATTENTION_FLOPS`).
    """
    counter = FlopCounterMode(display=False, custom_mapping=_ATTENTION_FLOPS)
    with _eval_mode(model), _without_dynamo_import(_FlopCounterMode), _unfused_attention(), counter:
        model(context.example_inputs(batch_size=1, device=_model_device(model)))
    return counter.get_total_flops() / 2.0


@contextlib.contextmanager
def _unfused_attention():
    """PyTorch's fused inference kernels for ``nn.MultiheadAttention`` and ``nn.TransformerEncoderLayer`` (taken in
    eval mode without gradients) turned off while MACs are counted: the counter does not see inside them (a
    whole encoder layer, its feed-forward Linears too, counted 0). The unfused path runs the same products as
    Linears and attention, which it counts. Restored afterwards."""
    fastpath = getattr(torch.backends, "mha", None)
    if fastpath is None or not hasattr(fastpath, "set_fastpath_enabled"):
        yield
        return
    global _UNFUSED_USERS, _FASTPATH_BEFORE
    with _UNFUSED_LOCK:  # a process-wide switch: counted, so that threads counting at once restore it last
        if _UNFUSED_USERS == 0:
            _FASTPATH_BEFORE = fastpath.get_fastpath_enabled()
            fastpath.set_fastpath_enabled(False)
        _UNFUSED_USERS += 1
    try:
        yield
    finally:
        with _UNFUSED_LOCK:
            _UNFUSED_USERS -= 1
            if _UNFUSED_USERS == 0:
                fastpath.set_fastpath_enabled(bool(_FASTPATH_BEFORE))


_UNFUSED_LOCK = threading.Lock()
_UNFUSED_USERS = 0
_FASTPATH_BEFORE: Optional[bool] = None


#: the attribute ``torch._compile._disable_dynamo``'s wrapper caches its disabled function under
_DYNAMO_CACHE = "__dynamo_disable"


@contextlib.contextmanager
def _without_dynamo_import(mode: type):
    """Run ``mode``'s dispatch handler as it is, not through ``torch._disable_dynamo``'s wrapper.

    PyTorch wraps the ``__torch_dispatch__`` of every ``TorchDispatchMode`` subclass so that Dynamo
    never traces it; the wrapper imports ``torch._dynamo`` on its first call: 2-5 s in every
    process that counts MACs (the driver, each trial, each evaluator), on the critical path of
    every sweep's start. Counting MACs compiles nothing, so the unwrapped handler is equivalent here.
    The wrapper looks up the disabled function it caches on the raw handler; for the block the raw
    handler stands in for it, and afterwards the wrapper is as it was. Anything else (Dynamo already
    imported, a PyTorch whose wrapper looks different): the block runs unchanged.
    """
    wrapper = mode.__dict__.get("__torch_dispatch__")
    raw = getattr(wrapper, "__wrapped__", None)
    if raw is None or "torch._dynamo" in sys.modules or hasattr(raw, _DYNAMO_CACHE):
        yield
        return
    setattr(raw, _DYNAMO_CACHE, raw)
    try:
        yield
    finally:
        delattr(raw, _DYNAMO_CACHE)


@contextlib.contextmanager
def _num_threads(n: int | None):
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def on_device(model: nn.Module, device: str) -> nn.Module:
    """``model`` if it is on ``device`` already, else a copy moved there (the original stays)."""
    return model if _model_device(model) == torch.device(device) else copy.deepcopy(model).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_latency_ms(model: nn.Module, context: CostContext) -> float:
    """Median wall time of one forward pass in milliseconds, after ``context.warmup`` untimed runs.

    Measured on ``context.device`` with ``context.batch_size`` and, on CPU, ``context.threads``,
    in ``context.runtime``: ``torch`` runs the module eagerly, ``torchscript`` runs its
    ``torch.jit.trace``, ``onnxruntime`` runs its ONNX export in an ``onnxruntime.InferenceSession``
    (CPU only, ``intra_op_num_threads = context.threads``). Tracing and exporting are not timed.
    """
    return 1000.0 * statistics.median(_LATENCY_RUNNERS[context.runtime](model, context))


def _time_calls(run: Callable[[], object], context: CostContext, device: torch.device) -> list[float]:
    """Seconds of each of ``context.repeats`` calls of ``run``, after ``context.warmup`` untimed ones."""
    for _ in range(max(0, context.warmup)):
        run()
    _sync(device)
    times = []
    for _ in range(max(1, context.repeats)):
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _torch_times(model: nn.Module, context: CostContext) -> list[float]:
    device = torch.device(context.device)
    net = on_device(model, context.device)
    x = context.example_inputs(device=device)
    with _eval_mode(net), torch.inference_mode(), _num_threads(context.threads if device.type == "cpu" else None):
        return _time_calls(lambda: net(x), context, device)


def _torchscript_times(model: nn.Module, context: CostContext) -> list[float]:
    device = torch.device(context.device)
    net = on_device(model, context.device)
    x = context.example_inputs(device=device)
    with _eval_mode(net), _num_threads(context.threads if device.type == "cpu" else None):
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings and torch.jit's deprecation notice
            traced = torch.jit.trace(net, x)
        with torch.inference_mode():
            return _time_calls(lambda: traced(x), context, device)


def _onnxruntime_times(model: nn.Module, context: CostContext) -> list[float]:
    from ..pruning.onnx_export import INPUT_NAME, ONNX_INSTALL_HINT, onnx_bytes

    if importlib.util.find_spec("onnxruntime") is None:
        raise UserError(
            f"costs.latency.runtime 'onnxruntime' needs the onnxruntime package, which is not installed: "
            f"{ONNX_INSTALL_HINT}."
        )
    if torch.device(context.device).type != "cpu":
        raise UserError(
            f"costs.latency.runtime 'onnxruntime' measures on CPU; got device {context.device!r} "
            "(use device 'cpu', or runtime 'torch' or 'torchscript' on an accelerator)."
        )
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(context.threads or 0)  # 0: onnxruntime's default
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(
        onnx_bytes(model, context.input_shape, context.input_dtype, context.onnx_opset), sess_options=options,
        providers=["CPUExecutionProvider"]
    )
    feed = {INPUT_NAME: context.example_inputs(device="cpu").numpy()}
    return _time_calls(lambda: session.run(None, feed), context, torch.device("cpu"))


#: ``context.runtime`` -> the timed runs' durations in seconds.
_LATENCY_RUNNERS: dict[str, Callable[[nn.Module, CostContext], list[float]]] = {
    "torch": _torch_times,
    "torchscript": _torchscript_times,
    "onnxruntime": _onnxruntime_times,
}


class _LiveTensorBytes(TorchDispatchMode):
    """Tracks the bytes of tensors created inside the mode that are still alive, and their peak."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._storages: dict[int, int] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """No ``torch._disable_dynamo`` wrapper (nothing here is compiled): its first call would
        import ``torch._dynamo``, seconds per process (see :func:`_without_dynamo_import`)."""
        return False

    def _free(self, key: int, nbytes: int) -> None:
        self.live -= nbytes
        self._storages.pop(key, None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key, nbytes = storage.data_ptr(), storage.nbytes()
                if nbytes == 0 or key in self._storages:  # views share their base's storage
                    continue
                self._storages[key] = nbytes
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, key, nbytes)
        return out


def measure_peak_memory_mb(model: nn.Module, context: CostContext) -> float:
    """Peak memory of an inference forward pass in MiB: weights + buffers + peak live activations.

    On CUDA this is the caching allocator's peak (``torch.cuda.max_memory_allocated``) during the
    pass, model included; elsewhere the peak bytes of live tensors created by the pass (tracked
    with a ``TorchDispatchMode``) plus the model's parameters and buffers.
    """
    device = torch.device(context.device)
    net = on_device(model, context.device)
    x = context.example_inputs(device=device)
    with _eval_mode(net), torch.inference_mode():
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            net(x)
            torch.cuda.synchronize(device)
            return torch.cuda.max_memory_allocated(device) / 2**20
        tracker = _LiveTensorBytes()
        with tracker:
            net(x)
    static = sum(t.numel() * t.element_size() for t in [*net.parameters(), *net.buffers()])
    return (static + tracker.peak) / 2**20
