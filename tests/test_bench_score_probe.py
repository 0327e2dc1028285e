"""benchmarks/bench_score_probe.py: the probe rebuilds a bench_scores.py row's candidate from the same base
and reproduces the row's own scores (adaptive BN, the re-rank's fine-tune) before adding new ones; a row
measured on another base is refused; the score maths on known logits."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def probe():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    return _load("bench_score_probe")


def test_stats_on_known_logits(probe):
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1, 1])
    same = probe._stats(logits, y, teacher=logits)
    assert same["acc"] == pytest.approx(2 / 3)
    assert same["loss"] == pytest.approx(-F.cross_entropy(logits, y).item())
    assert same["kd"] == pytest.approx(0.0, abs=1e-7) and same["fid"] == 1.0  # the base against itself
    teacher = torch.tensor([[1.0, 0.5, -1.0], [0.2, 0.1, 2.0], [0.0, 1.5, 0.3]])
    other = probe._stats(logits, y, teacher=teacher)
    t, p = F.softmax(teacher, 1), F.softmax(logits, 1)
    kl_base_to_candidate = (t * (t.log() - p.log())).sum(1).mean().item()  # KL(base || candidate), by hand
    kl_candidate_to_base = (p * (p.log() - t.log())).sum(1).mean().item()
    assert other["kd"] == pytest.approx(-kl_base_to_candidate)
    assert abs(kl_base_to_candidate - kl_candidate_to_base) > 0.05  # the case tells the two directions apart
    assert other["fid"] == pytest.approx(1 / 3)  # top-1 agrees on the first row only


def test_probe_reproduces_the_rows_scores_and_refuses_another_base(probe, tmp_path, monkeypatch):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"""
name: tiny
seed: 0
model: {{name: small_cnn}}
data: {{name: digits, device: cpu}}
base_training: {{optimizer: sgd, lr: 0.05, epochs: 2, batch_size: 64, cache_dir: {tmp_path / 'cache'}}}
pruning: {{importance: l2, round_to: 1, min_keep: 0.05}}
costs: {{measure: [params]}}
budgets: {{params: 0.5}}
search:
  adaptive_bn: {{batches: 2, batch_size: 32}}
  finetune: {{optimizer: sgd, lr: 0.01, iterations: 3, batch_size: 32}}
  final_finetune: {{optimizer: sgd, lr: 0.01, iterations: 4, batch_size: 32}}
""")
    scores = _load("bench_scores")
    threads = torch.get_num_threads()  # both scripts set one thread (they run one per core); later tests get theirs back
    try:
        _check_probe(scores, probe, config, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _check_probe(scores, probe, config, monkeypatch):
    rows = scores.run_chunk({"config": str(config), "budget": 0.5, "seed": 1000, "n": 2})
    monkeypatch.setattr(probe, "FT_ITERATIONS", (1, 3))  # 3: the config's re-rank iterations
    out = probe.probe_rows(rows, str(config))
    for row, rec in zip(rows, out):
        assert rec["abn_acc"] == pytest.approx(row["adaptive_bn"], abs=1e-6)  # float32 means
        assert rec["ft3_acc"] == pytest.approx(row["finetune"], abs=1e-6)  # float32 means
        assert rec["final_test"] == row["final_test"] and {"abn_kd", "abn_fid", "abn40_acc", "ft1_acc"} <= set(rec)
    for stale in ({"base_val": rows[0]["base_val"] - 0.01}, {"base_val": float("nan")}, {"base_val": None},
                  {"adaptive_bn": rows[0]["adaptive_bn"] + 0.01}):  # another base, a row without one, another score
        with pytest.raises(SystemExit, match="another base model"):
            probe.probe_rows([{**rows[0], **stale}], str(config))
