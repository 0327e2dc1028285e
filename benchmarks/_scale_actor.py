"""Benchmark-only, torch-free: an evaluator whose score is a calibrated sleep (a SIMULATION of scoring cost).

``benchmarks/bench_scale.py`` measures what the driver machinery — the agent's ``ask``/``tell``,
:class:`rayprune.evaluation.pool.EvaluatorPool`'s dispatch, Ray calls, the Parquet writer — can
keep busy as evaluators grow to 64, on a loopback ``ray.cluster_utils.Cluster``. Nothing in
``rayprune`` imports this module; it is never a product path.

Why a separate, torch-free actor: a real evaluator actor imports torch, Torch-Pruning, pandas and
builds its problem (about 350 MiB proportional set size and 20-30 CPU-seconds of start-up each on
this 2-core machine), so 64 of them do not fit in 24 GB. :class:`SleepEvaluator` has the real
actor's interface (constructor ``(shared_box, *, index, threads, device, tags)``, ``score_batch``,
``info``) and does per call what :meth:`rayprune.evaluation.evaluator.Evaluator.score_batch` does
(wall interval, node id, pid and the same Ray metrics per candidate); only the score of one
candidate is :class:`SleepScore`:

* keep counts and ``candidate_id`` by the product's own rounding (``rayprune/pruning/rounding.py``,
  loaded from its file so that the ``rayprune.pruning`` package, which imports torch, is not);
* params and MACs from a quadratic polynomial in the channel counts, fitted in the driver to the
  problem's exact analytic model and verified equal to it (``_scale_sim.cost_polynomials``);
* a sleep until ``spec.seconds`` after the call began — never shorter; a late wake-up shows in the
  row's ``t_total_s``;
* a made-up accuracy, a smooth function of the keep ratios (agents need something to climb).

The score spec is :class:`SimSpec` (what :class:`~rayprune.evaluation.pool.EvaluatorPool` and
:class:`~rayprune.search.loop.SearchRun` read of a spec: ``kind``, ``key``,
``finetune_iterations``), so the sleep travels with every batch and each measurement point has its
own cache key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import ray

__all__ = ["SimSpec", "SleepScore", "SleepEvaluator", "rounding"]


def _load_rounding():
    """``rayprune.pruning.rounding`` (pure Python) without importing the ``rayprune.pruning`` package."""
    spec = importlib.util.find_spec("rayprune")
    path = Path(list(spec.submodule_search_locations)[0]) / "pruning" / "rounding.py"
    module_spec = importlib.util.spec_from_file_location("_rayprune_rounding_standalone", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


rounding = _load_rounding()


@dataclass(frozen=True)
class SimSpec:
    """A score spec whose score is a sleep of ``seconds`` per candidate; ``point`` makes each
    measurement's cache key distinct (the pool caches rows per pool and spec key)."""

    seconds: float
    point: str = ""
    kind: str = "simulated_sleep"

    @property
    def finetune_iterations(self) -> int:
        return 0

    @property
    def key(self) -> str:
        return f"sim:{self.seconds:g}s:{self.point}"


def made_up_accuracy(ratios: Sequence[float], cid: str) -> float:
    """``0.98 - 0.6 * mean((1 - r)^2)`` plus a fixed +-0.005 per candidate: smooth and deterministic."""
    loss = sum((1.0 - r) ** 2 for r in ratios) / max(1, len(ratios))
    jitter = (int(hashlib.sha1(cid.encode()).hexdigest()[:6], 16) / 0xFFFFFF - 0.5) * 0.01
    return 0.98 - 0.6 * loss + jitter


def polynomial(poly: dict, counts: Sequence[int]) -> float:
    """``const + sum_i lin[i] c_i + sum_{i<=j} quad[i][j] c_i c_j`` (``quad`` as nested lists)."""
    total = poly["const"] + sum(a * c for a, c in zip(poly["lin"], counts))
    for i, row in enumerate(poly["quad"]):
        ci = counts[i]
        total += ci * sum(a * counts[j] for j, a in zip(range(i, len(counts)), row))
    return float(round(total))


class SleepScore:
    """One candidate's row, the work replaced by a sleep (see the module docstring).

    ``sim``: ``channels``, ``min_channels``, ``round_to`` (the pruning space's) and ``costs``
    (``{name: polynomial}``)."""

    def __init__(self, sim: dict) -> None:
        self.channels = list(sim["channels"])
        self.min_channels = list(sim["min_channels"])
        self.round_to = int(sim["round_to"])
        self.costs = dict(sim["costs"])
        self.host = socket.gethostname()

    def score(self, keep_ratios: Sequence[float], spec: SimSpec, *, seed: int = 0) -> dict[str, Any]:
        t0 = time.perf_counter()
        counts = rounding.keep_counts(list(keep_ratios), self.channels, self.min_channels, self.round_to)
        cid = rounding.candidate_id(counts)
        ratios = [c / g for c, g in zip(counts, self.channels)]
        row: dict[str, Any] = {
            "candidate_id": cid, "keep_ratios": ratios, "keep_counts": list(counts), "score_kind": spec.kind,
            "score_key": spec.key, "finetune_iterations": spec.finetune_iterations, "status": "ok", "error": None,
            "cached": False, "host": self.host, "pid": os.getpid(),
            **{name: polynomial(poly, counts) for name, poly in self.costs.items()},
            "accuracy": made_up_accuracy(ratios, cid),
        }
        deadline = t0 + float(spec.seconds)
        while (left := deadline - time.perf_counter()) > 0:  # never shorter than asked
            time.sleep(left)
        total = time.perf_counter() - t0
        row.update(t_build_s=0.0, t_costs_s=0.0, t_bn_s=0.0, t_finetune_s=0.0, t_eval_s=total, t_total_s=total)
        return row


def smaps(pid: int) -> dict[str, float]:
    """Resident and proportional set size (MiB) of a process of this machine."""
    out = {"rss_mib": float("nan"), "pss_mib": float("nan")}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    out[f"{key.lower()}_mib"] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return out


@ray.remote
class SleepEvaluator:
    """The evaluator actor's interface with :class:`SleepScore` as its score (module docstring).

    ``shared_box[0]`` is the pool's shared object; here it holds only ``{"scale_sim": sim}``
    (``_scale_sim.SimProblem.shareable``). A GPU request is a *logical* resource to Ray's scheduler."""

    def __init__(self, shared_box: list, *, index: int, threads: int, device: Optional[str],
                 tags: Optional[dict] = None) -> None:
        from rayprune.telemetry import Telemetry  # torch-free

        shared = ray.get(shared_box[0])
        self.index = index
        self.device = device
        self.evaluator = SleepScore(shared["scale_sim"])
        self.busy_seconds = 0.0
        self.started = time.time()
        self.telemetry = Telemetry(tags or {})

    # The next two methods follow rayprune.evaluation.evaluator.Evaluator line for line.
    def score_batch(self, ratios: Sequence[Sequence[float]], spec: SimSpec, seeds: Sequence[int]) -> list[dict[str, Any]]:
        ctx = ray.get_runtime_context()
        node, pid = ctx.get_node_id(), os.getpid()
        rows = []
        for r, seed in zip(ratios, seeds):
            t0, wall0 = time.perf_counter(), time.time()
            row = self.evaluator.score(list(r), spec, seed=int(seed))
            self.busy_seconds += time.perf_counter() - t0
            row.update(evaluator=self.index, node_id=node, pid=pid, wall_start=wall0, wall_end=time.time())
            self._record(row)
            rows.append(row)
        return rows

    def _record(self, row: dict[str, Any]) -> None:
        t = self.telemetry
        t.count("rayprune_candidates_evaluated", status="cached" if row.get("cached") else row.get("status", "ok"))
        if not row.get("cached"):
            for phase, key in (("total", "t_total_s"), ("build", "t_build_s"), ("bn", "t_bn_s"),
                               ("finetune", "t_finetune_s"), ("evaluate", "t_eval_s"), ("costs", "t_costs_s")):
                t.observe("rayprune_evaluation_seconds", row.get(key), phase=phase)
        uptime = max(time.time() - self.started, 1e-9)
        t.gauge("rayprune_evaluator_busy_fraction", self.busy_seconds / uptime, evaluator=str(self.index))

    def info(self) -> dict[str, Any]:
        return {
            "index": self.index, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
            "device": f"simulated ({self.device})", "threads": 0, "busy_seconds": self.busy_seconds,
            "uptime_seconds": time.time() - self.started, **smaps(os.getpid()),
            "torch_imported": "torch" in __import__("sys").modules,
        }
