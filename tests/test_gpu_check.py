"""The GPU check (``benchmarks/gpu_check.sh``, issue #12 item 5) run as a user would: a subprocess.

No GPU here: the dry run checks on CPU that every step of the script works end to end and writes
its tables; without CUDA and without ``--dry-run`` the script must refuse with exit status 2.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
MODELS = ("vgg16", "resnet18")
DRY_RUN_EVALUATORS = (1, 2)


def gpu_check(*args, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "RAY_ADDRESS": ""}
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: the script would run for real")
def test_without_cuda_and_without_dry_run_it_exits_2_and_says_why(tmp_path):
    res = gpu_check("--out", tmp_path / "out", timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "no CUDA GPU here" in res.stderr and "--dry-run" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_dry_run_prints_every_table_and_writes_rows_for_both_models_and_each_evaluator_count(tmp_path):
    res = gpu_check("--dry-run", "--out", tmp_path, timeout=420)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = res.stdout
    assert "DRY RUN on CPU — not GPU numbers" in out
    for heading in ("(a) score time per candidate", "(b) evaluators sharing one GPU",
                    "(c) fine-tune step: channels_last and mixed precision", "(d) GPU utilisation while scoring",
                    "target: 4 evaluators sharing the GPU >= 2.5x one"):
        assert heading in out, heading

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["meta"]["dry_run"] is True and results["meta"]["device"] == "cpu"
    assert results["meta"]["mps"] in (True, False) and "; MPS o" in out  # whether NVIDIA MPS ran, in the header

    scores = pd.read_csv(tmp_path / "score_times.csv")
    assert set(zip(scores["model"], scores["score"])) == {(m, s) for m in MODELS for s in ("adaptive_bn", "finetune")}
    assert (scores["s_per_candidate"] > 0).all()
    assert (scores.loc[scores["score"] == "finetune", "finetune_s"] > 0).all()

    pool = pd.read_csv(tmp_path / "pool.csv")
    assert set(zip(pool["model"], pool["evaluators"], pool["score"])) == {
        (m, k, s) for m in MODELS for k in DRY_RUN_EVALUATORS for s in ("adaptive_bn", "finetune")}
    assert (pool["errors"] == 0).all() and (pool["cache_hits"] == 0).all() and (pool["candidates_per_s"] > 0).all()
    assert (pool.loc[pool["evaluators"] == 1, "vs_fewest"] == 1.0).all()

    variants = pd.read_csv(tmp_path / "finetune_variants.csv")
    for model in MODELS:
        names = set(variants.loc[variants["model"] == model, "variant"])
        assert any("channels_last" in n and "amp" in n for n in names), names
        assert any("rayprune fine_tune" in n for n in names), names
    assert (variants["ms_per_iteration"] > 0).all()

    util = pd.read_csv(tmp_path / "gpu_util.csv")
    assert len(util) > 0 and util["gpu_util_mean"].isna().all()  # no GPU: 'n/a', never a made-up number

