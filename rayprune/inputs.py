"""What a model is fed: its input dtypes, and the probe batch every shape check, cost, trace and export runs.

Float inputs are probed with zeros; token ids (int64, for a model whose nn.Embedding reads its input) with id 1,
not 0, which is padding by convention: an all-padding batch is one a model may refuse or run differently.

>>> probe_inputs(2, (3,), "int64").tolist(), probe_inputs(1, (2,)).tolist()
([[1, 1, 1], [1, 1, 1]], [[0.0, 0.0]])
"""

from __future__ import annotations

from typing import Optional

import torch

__all__ = ["INPUT_DTYPES", "probe_inputs"]

#: the input dtypes a model may be fed: float32, or int64 token ids (for a model whose first layer is an nn.Embedding)
INPUT_DTYPES = {"float32": torch.float32, "int64": torch.int64}


def probe_inputs(n: int, shape: tuple[int, ...], input_dtype: str = "float32", *,
                 device: Optional[torch.device | str] = None, float_dtype: Optional[torch.dtype] = None) -> torch.Tensor:
    """A batch of ``n`` samples of ``shape``: token id 1 for ``"int64"``, zeros (``float_dtype``, default float32)
    otherwise."""
    if input_dtype == "int64":
        return torch.ones((n, *shape), device=device, dtype=torch.int64)
    return torch.zeros((n, *shape), device=device, dtype=float_dtype)
