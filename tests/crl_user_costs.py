"""A user cost function for the tests: total output channels of every Conv2d (a black box to rayprune)."""

from torch import nn


def conv_channels(model: nn.Module, context) -> float:
    return float(sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)))


def hangs_once_in_an_evaluator(model: nn.Module, context) -> float:
    """A user cost that hangs (as a stuck driver call or a deadlock would) the first time it runs in an
    evaluator actor after the test arms it by creating ``context.options["hang_file"]``."""
    import os
    import time

    import ray

    path = context.options.get("hang_file")
    in_actor = ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None
    if path and in_actor:
        try:
            os.remove(path)  # only the caller that removes it hangs
        except FileNotFoundError:
            pass
        else:
            time.sleep(3600)
    return float(sum(p.numel() for p in model.parameters()))


def activation_kib(model: nn.Module, context) -> float:
    """Activation memory of one sample's forward pass through the convolutions, in KiB (a user cost
    that grows with MACs, as memory and latency do, but is not a function of them)."""
    import torch

    total = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: total.append(out.numel()))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros((1, *context.input_shape)))
    finally:
        for h in hooks:
            h.remove()
    return 4.0 * sum(total) / 1024.0


def fails_on_small_models(model: nn.Module, context) -> float:
    """Parameters, but a lookup that fails below ``context.options["fail_below"]`` (a user's table that
    only covers the sizes they tried)."""
    params = sum(p.numel() for p in model.parameters())
    if params < context.options.get("fail_below", 0):
        raise KeyError(f"no entry for {params} parameters")
    return float(params)


def fails_between(model: nn.Module, context) -> float:
    """Parameters, but an exporter that cannot handle models whose parameter count lies in
    ``context.options["fail_between"]`` (a user's tool with a gap in what it supports)."""
    params = sum(p.numel() for p in model.parameters())
    lo, hi = context.options.get("fail_between", (0, 0))
    if lo <= params <= hi:
        raise ValueError(f"exporter cannot handle a model of {params} params")
    return float(params)
