"""A worker node removed mid-search (issue #11's catalogue): the run completes on what is left.

A two-node loopback Ray cluster (``ray.cluster_utils.Cluster``), one evaluator per node and no room
to restart the lost one; the second node is removed while its evaluator is scoring. The promise
(docs/reliability.md): the candidates of the lost calls are scored on the surviving evaluator —
none lost, none twice, none turned into an ``error`` row because a machine went away.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.slow
def test_a_node_removed_mid_search_loses_nothing_and_the_run_completes(tmp_path):
    env = {**os.environ, "RAYPRUNE_CACHE": str(tmp_path / "cache"), "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1"}
    temp = Path("/tmp") / f"rp-node-{os.getpid()}"  # short: Ray's socket paths must stay under 108 bytes
    result_file = tmp_path / "result.json"
    proc = subprocess.Popen([sys.executable, str(HERE / "_node_removal.py"), str(tmp_path / "out"), str(temp),
                             str(result_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=500)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the loopback nodes it started
        except ProcessLookupError:
            pass
    assert result_file.exists(), stdout[-1500:] + stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["removed"], "the node was not removed: the search ended first"
    assert result["ok"], result["error"]
    assert result["search_rows"] == 24 and result["row_ids_unique"]  # none lost, none twice
    assert result["status"] == {"ok": 24}, result["errors"]  # a lost machine is not the candidates' failure
    assert result["evaluators"] == [0, 1]  # both scored before the removal

    from rayprune.pruning import load_pruned

    assert load_pruned(result["best"]) is not None
