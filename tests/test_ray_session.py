"""`rayprune.ray_session.connect`: which Ray a driver runs on.

The unit tests replace ``ray.init`` to see what ``connect`` asks for; the slow ones start a real
``ray start --head`` (token authentication on, as Ray 2.60 does by default) and check from other
processes that ``connect`` joins it when ``RAY_ADDRESS`` names it, and that ``rayprune pretrain``
submitted as a Ray job runs its tasks on that cluster instead of on a private Ray of its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import ray
import yaml

from rayprune.ray_session import connect


@pytest.fixture
def fake_init(monkeypatch):
    """``ray.init`` replaced by a recorder; ``RAY_AUTH_MODE`` restored after the test."""
    calls: list[dict] = []
    # setenv first so monkeypatch records the variable even when it is absent: connect() sets it, and
    # a RAY_AUTH_MODE left behind makes every later local Ray in this process demand a token
    monkeypatch.setenv("RAY_AUTH_MODE", "")
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 1.0})
    return calls


def test_an_explicit_address_wins_over_RAY_ADDRESS(fake_init, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    logged = []
    connect("10.0.0.2:6379", log=logged.append, metadata={"config": "c", "budget": 0.5}, num_cpus=2)
    (call,) = fake_init
    assert call["address"] == "10.0.0.2:6379" and "num_cpus" not in call
    assert call["job_config"].metadata == {"config": "c", "budget": "0.5"}
    assert logged and "10.0.0.2:6379" in logged[0]


def test_RAY_ADDRESS_is_joined_with_the_cluster_token(fake_init, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    connect(log=lambda m: None, num_cpus=2, object_store_memory=10**8)
    (call,) = fake_init
    # ray.init reads RAY_ADDRESS itself; the local-start options describe a local instance only
    assert "address" not in call and "num_cpus" not in call and "object_store_memory" not in call
    assert os.environ["RAY_AUTH_MODE"] == "token"


@pytest.mark.parametrize("ray_address", [None, ""])
def test_without_an_address_a_fresh_local_instance_starts(fake_init, monkeypatch, ray_address):
    if ray_address is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", ray_address)  # how tests say "never join a cluster"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "secret")
    connect(log=lambda m: None, num_cpus=2, include_dashboard=False)
    (call,) = fake_init
    assert call["address"] == "local"  # not ray.init(): that would join a `ray start` cluster on the machine
    assert call["num_cpus"] == 2 and call["include_dashboard"] is False and "object_store_memory" not in call
    assert "RAY_AUTH_MODE" not in os.environ  # a local instance needs no cluster token


def test_connect_is_a_no_op_when_ray_is_up(fake_init, monkeypatch):
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    connect("10.0.0.2:6379", log=lambda m: None)
    assert fake_init == []


def test_a_local_start_that_times_out_is_tried_once_more(fake_init, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    attempts, shutdowns = [], []

    def init(**kw):
        attempts.append(kw)
        if len(attempts) == 1:
            raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    connect(log=lambda m: None)
    assert len(attempts) == 2 and shutdowns == [1]
    monkeypatch.setattr(ray, "init", lambda **kw: (_ for _ in ()).throw(RuntimeError("bad option")))
    with pytest.raises(RuntimeError, match="bad option"):
        connect(log=lambda m: None)


# -- a real cluster ------------------------------------------------------------------------------

def _client_env(head: dict, **extra: str) -> dict:
    """A client's environment: no RAY_AUTH_MODE (rayprune sets it from the token file)."""
    env = {k: v for k, v in head["env"].items() if not k.startswith("RAY_AUTH_MODE")}
    return {**env, **extra}


PROBE = """
import json
from rayprune.ray_session import connect
connect(log=lambda m: None, num_cpus=1)
import ray
context = ray.get_runtime_context()
print(json.dumps({"temp": context.get_temp_dir(), "session": context.get_session_name(),
                  "cpus": ray.cluster_resources().get("CPU")}))
"""


@pytest.mark.slow
def test_connect_joins_the_cluster_named_by_RAY_ADDRESS(ray_head):
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=180,
                         env=_client_env(ray_head, RAY_ADDRESS=ray_head["gcs"]))
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    # the head's session, not a new one (a local instance would have its own session under /tmp/ray, 1 CPU)
    assert seen == {"temp": ray_head["temp"], "session": ray_head["session"], "cpus": 2.0}


TINY_PRETRAIN = {
    "name": "pretrain-as-a-job",
    "seed": 0,
    "neon": {
        "activation_samples": 32,
        "retrain": {"max_epochs": 1, "patience": 1, "max_samples": 128},
        "pretrain": {
            "iterations": 1, "passes": 1, "steps_per_iteration": 8, "num_envs": 2, "parallel_steps": False,
            "tolerances": [5.0], "num_epochs": 1, "minibatch_size": 8, "hidden": [8], "segment_hidden": 4,
            "suite": {"datasets": ["three_blobs"]},
            "networks": {"per_dataset": 2, "widths": [8], "min_layers": 1, "max_layers": 1,
                         "train": {"max_epochs": 30, "patience": 5}},
        },
    },
}

TRAIN_TASKS = """
import json, sys
import ray
from ray.util.state import list_tasks
ray.init(address=sys.argv[1], log_to_driver=False)
# the state API is told which dashboard to ask: other Ray instances may run on the machine
tasks = list_tasks(address=sys.argv[2], filters=[("name", "=", "_train_task")], detail=True,
                   raise_on_missing_output=False)
print(json.dumps(sorted(t.state for t in tasks)))
"""


@pytest.mark.slow
def test_a_submitted_pretrain_job_runs_on_the_cluster(tmp_path, ray_head):
    cfg = json.loads(json.dumps(TINY_PRETRAIN))
    cfg["neon"]["pretrain"]["networks"]["cache_dir"] = str(tmp_path / "nets")
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "agent"
    job = subprocess.run(
        ["ray", "job", "submit", "--address", ray_head["dashboard"], "--", sys.executable, "-m", "rayprune.cli",
         "pretrain", str(config), "--out", str(out)],
        capture_output=True, text=True, timeout=600, env=ray_head["env"])
    logs = job.stdout + job.stderr
    assert job.returncode == 0 and "succeeded" in logs, logs[-3000:]
    assert "Connected to Ray at" in logs and "Started a local Ray instance" not in logs, logs[-3000:]
    assert (out / "policy" / "policy.pt").is_file()
    # the cluster itself ran the job's network trainings (a private Ray would have run them instead)
    tasks = subprocess.run([sys.executable, "-c", TRAIN_TASKS, ray_head["gcs"], ray_head["dashboard"]],
                           capture_output=True, text=True, timeout=180, env=ray_head["env"])
    assert tasks.returncode == 0, tasks.stderr[-3000:]
    assert json.loads(tasks.stdout.strip().splitlines()[-1]) == ["FINISHED", "FINISHED"]


def test_ray_start_lines_of_a_private_instance_are_dropped_and_every_other_line_kept():
    """Every command's stderr began with Ray's token notice and its coloured "Started a local Ray instance. View the
    dashboard at ..." line, though the command says itself that it started Ray (a new user's pass, s32)."""
    import logging

    from rayprune._logs import without_log_lines
    from rayprune.ray_session import _LOCAL_START_LINES

    seen = []

    class Kept(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    loggers = [logging.getLogger(name) for name in _LOCAL_START_LINES]
    handler, levels = Kept(), [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        with without_log_lines(_LOCAL_START_LINES):
            loggers[0].warning("Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=...")
            loggers[1].info("Started a local Ray instance. View the dashboard at http://127.0.0.1:8265")
            loggers[1].warning("Something else Ray says")
        loggers[1].info("Started a local Ray instance.")  # outside the start: kept
    finally:
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
    assert seen == ["Something else Ray says", "Started a local Ray instance."]


def test_a_sigterm_while_ray_starts_is_an_interrupt_where_the_command_line_asked(monkeypatch):
    """ray.init installs a SIGTERM handler of its own (sys.exit(15)): a scheduler's stop in those seconds ended the
    command with exit 15 and nothing said, where any other moment says what was kept and exits 130."""
    from rayprune import ray_session

    monkeypatch.setattr(ray_session, "_sigterm_interrupts", True)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGTERM while Ray started"):
        with ray_session._sigterm_in_ray_init_interrupts():
            raise SystemExit(15)
    with pytest.raises(SystemExit):  # another exit status is not a SIGTERM
        with ray_session._sigterm_in_ray_init_interrupts():
            raise SystemExit(2)
    monkeypatch.setattr(ray_session, "_sigterm_interrupts", False)  # a Python API user's process keeps Ray's way
    with pytest.raises(SystemExit):
        with ray_session._sigterm_in_ray_init_interrupts():
            raise SystemExit(15)


def test_after_a_sigterm_in_ray_init_the_commands_handler_is_back(monkeypatch):
    """An interrupted ray.init left Ray's own handler (exit 15) in place: a scheduler's second SIGTERM during the
    clean-up ended the command with exit 15 again (review, s33)."""
    import signal

    import ray

    from rayprune import ray_session

    before = signal.getsignal(signal.SIGTERM)

    def interrupted_init(*args, **kwargs):
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # as ray.init installs its own
        raise SystemExit(15)  # what that handler does on SIGTERM

    monkeypatch.setattr(ray_session, "_sigterm_interrupts", True)
    monkeypatch.setattr(ray_session, "_init", interrupted_init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    try:
        with pytest.raises(KeyboardInterrupt, match="while Ray started"):
            ray_session.connect(log=lambda m: None)
        assert signal.getsignal(signal.SIGTERM) is ray_session._interrupted_by_sigterm
    finally:
        signal.signal(signal.SIGTERM, before)
