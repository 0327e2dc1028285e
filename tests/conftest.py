"""Shared test fixtures: seeded zoo models with non-trivial BatchNorm, and a tiny concat/residual net."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from _procs import free_port, pids_mentioning
from torch import nn

from rayprune.models import build_model

# One intra-op thread by default: on 2 CPU cores shared with other jobs, 2 threads made a
# ResNet56 forward pass ~50x slower (OpenMP workers wait on each other when a core is taken).
TEST_THREADS = int(os.environ.get("RAYPRUNE_TEST_THREADS", "1"))
torch.set_num_threads(TEST_THREADS)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Re-apply the thread count after collection (test modules may set their own on import)."""
    torch.set_num_threads(TEST_THREADS)


def randomize_batchnorm_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm distinct gamma, beta and running statistics, in place.

    With the defaults (gamma=1, beta=0, mean=0, var=1) BatchNorm is the identity in eval mode and
    every channel ties under ``bn_scale``, so pruning the wrong BN channels would go unnoticed.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.4 * torch.rand(n, generator=gen) - 0.2)
                m.running_mean.copy_(0.2 * torch.rand(n, generator=gen) - 0.1)
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
    return model


@pytest.fixture(scope="session")
def make_model():
    """``make(name, seed=0, num_classes=10, **build_model_kwargs)``: a seeded zoo model in eval mode."""

    def make(name: str, seed: int = 0, num_classes: int = 10, **kwargs) -> nn.Module:
        torch.manual_seed(seed)
        model = build_model(name, num_classes=num_classes, **kwargs)
        return randomize_batchnorm_(model, seed).eval()

    return make


class ConcatResidualNet(nn.Module):
    """stem -> cat(branch_a, branch_b) -> merge -> residual block -> down -> flatten -> fc1 -> head.

    Covers a concatenation of two conv branches (``merge`` reads 6 + 10 channels), a residual add
    coupling ``merge`` with ``res2``, and a flatten after a 2x2 pool (each ``down`` channel feeds 4
    inputs of ``fc1``). Input ``(N, 3, 8, 8)``, output ``(N, 5)``.
    """

    input_shape = (3, 8, 8)
    num_classes = 5

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.branch_a = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.branch_b = nn.Sequential(nn.Conv2d(8, 10, 1), nn.BatchNorm2d(10), nn.ReLU())
        self.merge = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12))
        self.res1 = nn.Sequential(nn.Conv2d(12, 9, 3, padding=1, bias=False), nn.BatchNorm2d(9), nn.ReLU())
        self.res2 = nn.Sequential(nn.Conv2d(9, 12, 3, padding=1, bias=False), nn.BatchNorm2d(12))
        self.down = nn.Conv2d(12, 8, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc1 = nn.Linear(8 * 4, 20)
        self.head = nn.Linear(20, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.merge(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1))
        y = torch.relu(y + self.res2(self.res1(y)))
        y = torch.flatten(self.pool(torch.relu(self.down(y))), 1)
        return self.head(torch.relu(self.fc1(y)))


class GroupedResidualNet(nn.Module):
    """stem -> ResNeXt block (1x1 -> 3x3 with groups=4 -> 1x1, residual add) -> a depthwise conv with a channel
    multiplier (groups=16, 16 -> 32) -> pool -> head. Input ``(N, 3, 8, 8)``, output ``(N, 5)``."""

    input_shape = (3, 8, 8)
    num_classes = 5

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.reduce = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.grouped = nn.Sequential(nn.Conv2d(24, 24, 3, padding=1, groups=4, bias=False), nn.BatchNorm2d(24),
                                     nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(24, 16, 1, bias=False), nn.BatchNorm2d(16))
        self.multiplier = nn.Sequential(nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16), nn.BatchNorm2d(32),
                                        nn.ReLU())
        self.head = nn.Linear(32, self.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.expand(self.grouped(self.reduce(x))))
        return self.head(self.multiplier(x).mean(dim=(2, 3)))


class AttentionNet(nn.Module):
    """conv stem -> tokens + a learned position parameter -> LayerNorm -> nn.MultiheadAttention (4 heads) and a
    GELU MLP with residual adds -> mean -> head: a new user's small vision transformer. Input ``(N, 3, 8, 8)``,
    output ``(N, 4)``."""

    def __init__(self, dim: int = 16, heads: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        self.pos = nn.Parameter(torch.randn(1, 16, dim) * 0.1)
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.head = nn.Linear(dim, 4)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(x.mean(dim=1))


@pytest.fixture
def concat_net() -> ConcatResidualNet:
    """A seeded :class:`ConcatResidualNet` in eval mode with randomized BatchNorm."""
    torch.manual_seed(0)
    return randomize_batchnorm_(ConcatResidualNet(), seed=0).eval()


# -- a real Ray cluster on loopback (tests that join one, submit jobs to it) ---------------------

@pytest.fixture
def ray_head():
    """`ray start --head --block` on loopback, in its own session, with a temp dir of its own.

    Stopping it terminates that one ``ray start`` process, which shuts down the node it started;
    anything left is found by the unique temp dir (ours alone) — never by a port number or by
    ``ray stop``, which would stop every Ray on the machine.
    """
    temp = Path(tempfile.mkdtemp(prefix="rps-", dir="/tmp"))  # short: Ray's socket paths have a length limit
    gcs, dashboard, metrics = free_port(), free_port(), free_port()
    # the node's own base-model cache, apart from any driver's (as on a cluster whose nodes have their own disks)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_ADDRESS": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "RAYPRUNE_CACHE": str(temp / "node-cache")}
    args = ["ray", "start", "--head", "--block", "--node-ip-address", "127.0.0.1", f"--port={gcs}",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={metrics}", f"--temp-dir={temp}", "--num-cpus=2", "--disable-usage-stats"]
    log = (temp / "ray_start.log").open("w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 180
        while "block forever" not in (temp / "ray_start.log").read_text():
            assert proc.poll() is None and time.time() < deadline, (temp / "ray_start.log").read_text()[-3000:]
            time.sleep(0.5)
        session = (temp / "session_latest").resolve().name
        yield {"gcs": f"127.0.0.1:{gcs}", "dashboard": f"http://127.0.0.1:{dashboard}", "temp": str(temp),
               "node_cache": temp / "node-cache",
               "session": session, "env": env, "metrics": f"http://127.0.0.1:{metrics}/metrics"}
    finally:
        proc.terminate()  # `ray start --block` stops its node on SIGTERM
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        deadline = time.time() + 30
        while pids_mentioning(str(temp)) and time.time() < deadline:
            time.sleep(1)
        for pid in pids_mentioning(str(temp)):  # started by this fixture: the temp dir is unique to it
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_session():
    """A small local Ray for the module's tests (joined if one is already running in this process)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
                 log_to_driver=False)
    yield
