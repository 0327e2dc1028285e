"""Evaluators that share a GPU, and whether NVIDIA MPS lets their kernels run at once.

Without MPS the processes of several evaluators on one GPU take turns on it; with MPS their kernels
run side by side. On one H200 (BENCHMARKS.md, "One GPU"), 4 evaluators of ``evaluation.gpus: 0.25``
scored 2.0-2.7x the candidates/s of one without MPS and 2.4-3.2x with it. A pool with a fractional GPU
share therefore looks, once per run, whether each GPU node runs the MPS daemon, and says so where it
does not (a hint in the log; nothing is changed).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Callable, Mapping, Optional

#: the process name of ``nvidia-cuda-mps-control`` (and of its server) as the kernel keeps it: 15 characters
MPS_PROCESS = "nvidia-cuda-mps"


def mps_running(proc: Path = Path("/proc"), pipe_dir: Optional[Path] = None) -> bool:
    """Whether an NVIDIA MPS daemon serves this machine: a process named ``nvidia-cuda-mps*``, or its control pipe
    (in ``$CUDA_MPS_PIPE_DIRECTORY``, default ``/tmp/nvidia-mps``: a container sees the pipe of a daemon that runs
    outside it, e.g. Kubernetes' device plugin, but not its process)."""
    pipes = pipe_dir if pipe_dir is not None else Path(os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or "/tmp/nvidia-mps")
    if (pipes / "control").exists():
        return True
    for comm in proc.glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == MPS_PROCESS:
                return True
    return False


def sharing_hint(gpus_each: float, evaluators: int, mps_by_node: Mapping[str, bool]) -> Optional[str]:
    """The line to log when evaluators share GPUs on nodes without MPS (None: nothing to say).

    >>> sharing_hint(0.25, 4, {"n1": False, "n2": True})[:76]
    '4 evaluators with evaluation.gpus 0.25 share GPUs, but NVIDIA MPS is not run'
    >>> sharing_hint(1.0, 2, {"n1": False}), sharing_hint(0.5, 2, {"n1": True}), sharing_hint(0.5, 2, {})
    (None, None, None)
    """
    if not 0 < gpus_each < 1 or not mps_by_node:
        return None
    without = [node for node, on in mps_by_node.items() if not on]
    if not without:
        return None
    return (f"{evaluators} evaluators with evaluation.gpus {gpus_each:g} share GPUs, but NVIDIA MPS is not running on "
            f"{len(without)} of the {len(mps_by_node)} GPU node(s), so their processes take turns on each GPU. "
            "With MPS, 4 evaluators per GPU scored 1.2-1.6x more candidates/s on an H200 (BENCHMARKS.md, 'One GPU'): "
            "run `nvidia-cuda-mps-control -d` on each GPU node before `ray start` (docs/cluster.md).")


def mps_on_gpu_nodes(timeout_s: float = 30.0) -> dict[str, bool]:
    """Node id -> whether MPS runs there, for each alive node of the connected cluster that has GPUs.

    One zero-CPU task pinned to each GPU node reads its process table; a node that does not answer
    within ``timeout_s`` is left out (the hint is advice, never a reason to wait).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0]
    probe = ray.remote(num_cpus=0, max_retries=0)(mps_running)
    refs = {probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)).remote(): node
            for node in nodes}
    ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
    for ref in late:
        ray.cancel(ref, force=True)
    answers: dict[str, bool] = {}
    for ref in ready:
        with contextlib.suppress(Exception):  # a probe that failed says nothing
            answers[refs[ref]] = bool(ray.get(ref))
    return answers


def log_gpu_sharing(gpus_each: float, evaluators: int, log: Callable[[str], None]) -> None:
    """Log :func:`sharing_hint` for the connected cluster; asks Ray nothing unless the GPU share is fractional."""
    if 0 < gpus_each < 1:
        hint = sharing_hint(gpus_each, evaluators, mps_on_gpu_nodes())
        if hint:
            log(hint)
