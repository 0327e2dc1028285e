"""Evaluators sharing a GPU: the MPS check on each GPU node and the hint a run logs (BENCHMARKS.md "One GPU")."""

from __future__ import annotations

import pytest

from rayprune.evaluation.gpu_sharing import MPS_PROCESS, log_gpu_sharing, mps_on_gpu_nodes, mps_running, sharing_hint


def test_mps_running_reads_the_process_names_the_kernel_keeps(tmp_path):
    (tmp_path / "12").mkdir()
    (tmp_path / "12" / "comm").write_text("python3\n")
    (tmp_path / "self").mkdir()  # not a pid: ignored
    (tmp_path / "self" / "comm").write_text(f"{MPS_PROCESS}\n")
    no_pipe = tmp_path / "no-mps"
    assert mps_running(tmp_path, no_pipe) is False
    (tmp_path / "345").mkdir()
    (tmp_path / "345" / "comm").write_text(f"{MPS_PROCESS}\n")  # nvidia-cuda-mps-control, cut to 15 characters
    assert mps_running(tmp_path, no_pipe) is True


def test_a_daemon_outside_the_container_is_seen_by_its_control_pipe(tmp_path, monkeypatch):
    pipes = tmp_path / "mps-pipes"
    pipes.mkdir()
    (pipes / "control").write_text("")  # a named pipe on a real node; its existence is what counts
    assert mps_running(tmp_path, pipes) is True
    monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", str(pipes))
    assert mps_running(tmp_path) is True


def test_the_hint_names_the_nodes_without_mps_and_only_for_a_fractional_share():
    hint = sharing_hint(0.25, 4, {"a": False, "b": True, "c": False})
    assert "not running on 2 of the 3 GPU node(s)" in hint and "nvidia-cuda-mps-control -d" in hint
    assert sharing_hint(0.25, 4, {"a": True}) is None  # MPS everywhere
    assert sharing_hint(1.0, 4, {"a": False}) is None  # a whole GPU each: nothing shared
    assert sharing_hint(0.0, 4, {"a": False}) is None  # CPU evaluators
    assert sharing_hint(0.5, 2, {}) is None  # no GPU node (yet): nothing to say


def test_a_cpu_only_config_asks_ray_nothing(monkeypatch):
    import rayprune.evaluation.gpu_sharing as gs

    monkeypatch.setattr(gs, "mps_on_gpu_nodes", lambda: pytest.fail("asked Ray about GPU nodes"))
    lines: list[str] = []
    log_gpu_sharing(0.0, 2, lines.append)
    log_gpu_sharing(1.0, 2, lines.append)
    assert lines == []


@pytest.mark.slow
def test_the_probe_runs_on_each_gpu_node_and_reads_its_process_table(ray_session, monkeypatch):
    """This machine's node, reported as a GPU node: the pinned zero-CPU task answers for it (no MPS here)."""
    import ray

    real = ray.nodes()
    gpu_nodes = {n["NodeID"] for n in real if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0}
    assert set(mps_on_gpu_nodes()) == gpu_nodes  # only GPU nodes are asked (none on a CPU machine)
    as_gpu = [{**n, "Resources": {**n.get("Resources", {}), "GPU": 1.0}} for n in real]
    monkeypatch.setattr(ray, "nodes", lambda: as_gpu)
    answers = mps_on_gpu_nodes(timeout_s=60)
    assert answers == {n["NodeID"]: mps_running() for n in real if n.get("Alive")}
    lines: list[str] = []
    log_gpu_sharing(0.25, 4, lines.append)
    assert (len(lines) == 1 and "4 evaluators with evaluation.gpus 0.25" in lines[0]) or mps_running()
