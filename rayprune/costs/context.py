"""What a cost function is given besides the model: inputs, device and measurement options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import UserError
from ..inputs import probe_inputs

__all__ = ["CostContext", "CostFn", "LATENCY_RUNTIMES"]

#: Where latency is measured: eager PyTorch, a ``torch.jit.trace`` of the model, or ONNX Runtime
#: (CPU; needs the ``onnx`` extra). The config's ``costs.latency.runtime`` takes these names.
LATENCY_RUNTIMES = ("torch", "torchscript", "onnxruntime")


@dataclass(frozen=True)
class CostContext:
    """Everything a cost needs to measure a candidate.

    Attributes:
        input_shape: one sample's shape, e.g. ``(3, 32, 32)``.
        device: where latency and memory are measured (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
        batch_size: batch used by latency and peak memory.
        threads: torch intra-op threads while measuring latency on CPU (``None``: leave as is).
        warmup, repeats: latency runs discarded, then timed (the median is reported).
        runtime: what runs the model while latency is timed, one of :data:`LATENCY_RUNTIMES`.
        options: free-form settings for user cost functions (from the config's ``costs.options``).
        input_dtype: what the model is fed, ``"float32"`` or ``"int64"`` (token ids for an ``nn.Embedding``).
        onnx_opset: the ONNX opset runtime ``onnxruntime`` times the model in (None: the exporter's default), the
            exports' ``export.onnx_opset``.
    """

    input_shape: tuple[int, ...]
    device: str = "cpu"
    batch_size: int = 1
    threads: int | None = None
    warmup: int = 5
    repeats: int = 20
    options: Mapping[str, Any] = field(default_factory=dict)
    runtime: str = "torch"
    input_dtype: str = "float32"
    onnx_opset: int | None = None

    def __post_init__(self) -> None:
        if self.input_dtype not in ("float32", "int64"):
            raise UserError(f"The 'input_dtype' of a CostContext must be 'float32' or 'int64'; got {self.input_dtype!r}.")
        if self.runtime not in LATENCY_RUNTIMES:
            raise UserError(
                f"The 'runtime' of a CostContext must be one of {', '.join(map(repr, LATENCY_RUNTIMES))}; "
                f"got {self.runtime!r}."
            )

    def example_inputs(self, batch_size: int | None = None, device: str | torch.device | None = None) -> torch.Tensor:
        """A zeros batch of the configured shape; for int64 inputs token id 1 everywhere (0 is padding by convention,
        and an all-padding batch is one a model may refuse or run differently)."""
        n = self.batch_size if batch_size is None else batch_size
        return probe_inputs(n, tuple(self.input_shape), self.input_dtype, device=device or self.device)


#: Every cost has this signature: measured on the candidate that was actually built.
CostFn = Callable[[nn.Module, CostContext], float]
