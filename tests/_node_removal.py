"""Run by tests/test_node_faults.py in its own process: a prune on a two-node loopback Ray cluster
whose second node (holding one of the two evaluators) is removed mid-search. Prints one JSON line."""

import json
import os
import sys
import threading
import time
from pathlib import Path

from rayprune._auth import use_cluster_token

use_cluster_token()  # before Ray is imported: the nodes and this driver agree on token authentication

from ray.cluster_utils import Cluster  # noqa: E402

import rayprune  # noqa: E402

out, temp, result_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
store = dict(object_store_memory=150 * 1024**2)
cluster = Cluster(initialize_head=True, head_node_args=dict(include_dashboard=False, temp_dir=temp, num_cpus=1, **store))
doomed = cluster.add_node(num_cpus=1, **store)  # one CPU each: one evaluator per node, no room to restart one
cluster.wait_for_nodes()
removed = {}


def remove_mid_search():
    while not list((out / "candidates").glob("*.parquet")):  # the first batch is in: the search is under way
        time.sleep(0.2)
    time.sleep(1.0)  # into the next batch's calls
    removed["at"] = time.time()
    cluster.remove_node(doomed, allow_graceful=False)


threading.Thread(target=remove_mid_search, daemon=True).start()
result = {}
try:
    t_start = time.time()
    res = rayprune.prune(
        None, None, agent="random", evaluations=24, out=out, address=cluster.address, seed=0, progress=False,
        budgets={"params": 0.5},
        config={"model": {"name": "small_cnn", "kwargs": {"width_mult": 0.5}}, "data": {"name": "digits", "device": "cpu"}},
        base_training={"epochs": 2}, evaluation={"evaluators": 2, "cpus": 1},
        search={"batch_size": 8, "score": "finetune", "finetune": {"iterations": 80, "batch_size": 64},
                "final_finetune": {"iterations": 10}, "rerank": {"top_k": 2}})
    rows = res.candidates
    search = rows[rows["stage"] == "search"]
    result = {"ok": True, "search_rows": len(search), "row_ids_unique": bool(rows["row_id"].is_unique),
              "status": search["status"].value_counts().to_dict(),
              "errors": sorted(set(search.loc[search["status"] != "ok", "error"].astype(str).str[:200])),
              "evaluators": sorted(int(e) for e in search["evaluator"].dropna().unique()),
              "best": str(out / "best"), "removed": bool(removed),
              "seconds_after_removal": round(time.time() - removed["at"], 1) if removed else None,
              "seconds": round(time.time() - t_start, 1)}
except Exception as exc:  # noqa: BLE001 - reported to the test
    result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000], "removed": bool(removed)}
# a file, not stdout: Ray's processes share this one's stdout, and a heartbeat warning written at the
# same moment once landed on the RESULT line and broke its JSON
result_file.write_text(json.dumps(result))
os._exit(0)  # the loopback nodes go with this process group (the test kills it)
