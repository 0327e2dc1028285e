"""The sweep's plain parts, without Ray: level parsing, the levels of a config, sweep.json states."""

import json

import pytest

from rayprune.config import parse_config
from rayprune.costs.levels import contains, levels_from_config
from rayprune.errors import UserError
from rayprune.sweeps.driver import load_state, parse_levels, sweep_agents


def test_parse_levels_reads_one_constraint_and_names_bad_input():
    assert parse_levels("params=0.5,0.25, 0.1") == ("params", [0.5, 0.25, 0.1])
    for bad, message in [("params", "NAME=V1"), ("params=", "NAME=V1"), ("=0.5", "NAME=V1"),
                         ("params=0.5,x", "must be a number"), ("params=0", "must be in \\(0, 1\\]")]:
        with pytest.raises(ValueError, match=message):
            parse_levels(bad)


def test_levels_are_the_product_of_the_sweep_budgets_with_absolute_limits():
    cfg = parse_config({"budgets": {"params": 0.5},
                        "sweep": {"budgets": {"params": [0.5, 0.25], "latency_ms": [2.0, 4.0]}}})
    levels = levels_from_config(cfg, {"params": 1000.0, "latency_ms": 10.0}, sweep=True)
    assert [lvl.name for lvl in levels] == ["params=0.5,latency_ms=2", "params=0.5,latency_ms=4",
                                            "params=0.25,latency_ms=2", "params=0.25,latency_ms=4"]
    assert levels[2].limits == {"params": 250.0, "latency_ms": 2.0}  # params relative, latency absolute
    assert contains(levels[1], levels[2]) and not contains(levels[2], levels[1])
    single = levels_from_config(cfg, {"params": 1000.0, "latency_ms": 10.0})  # not a sweep: `budgets`
    assert [lvl.name for lvl in single] == ["params=0.5"]
    with pytest.raises(ValueError, match="No budget"):
        levels_from_config(parse_config({}), {"params": 1.0})


def test_sweep_agents_default_to_the_search_agent_and_refuse_neon():
    assert sweep_agents(parse_config({"search": {"agent": "evolution"}})) == ["evolution"]
    assert sweep_agents(parse_config({"sweep": {"agents": ["crl", "tpe"]}})) == ["crl", "tpe"]
    with pytest.raises(ValueError, match="neon"):
        sweep_agents(parse_config({"search": {"agent": "neon"}}))
    with pytest.raises(ValueError, match="'neon' prunes by tolerance, not to budget levels"):  # refused with the reason,
        parse_config({"sweep": {"agents": ["neon", "random"]}})  # by the config: before validate, submit or any training


def test_a_config_whose_prune_agent_is_neon_sweeps_its_budgeted_agents_on_a_cnn():
    """search.agent: neon (for `rayprune prune`) with sweep.agents [random]: the sweep runs random alone, but neon's
    dense-model check refused the CNN before its base trained."""
    from types import SimpleNamespace

    from rayprune.models import build_model
    from rayprune.problem import check_neon_model, neon_requested
    from rayprune.sweeps.driver import without_unswept_neon

    cfg = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"},
                        "search": {"agent": "neon"}, "sweep": {"budgets": {"params": [0.5]}, "agents": ["random", "tpe"]}})
    cnn = build_model("small_cnn", num_classes=10, in_channels=1)
    data = SimpleNamespace(input_shape=(1, 8, 8), input_dtype="float32")
    with pytest.raises(UserError, match="The neon agent prunes dense networks only"):
        check_neon_model(cfg, cnn, data)  # what `rayprune prune` on this config does, rightly
    said = []
    swept = without_unswept_neon(cfg, sweep_agents(cfg), said.append)
    assert swept.search.agent == "random" and not neon_requested(swept) and swept.sweep.agents == ["random", "tpe"]
    check_neon_model(swept, cnn, data)  # the sweep's model is not refused
    assert said == ["search.agent is neon, the agent of `rayprune prune` on this config; the sweep runs "
                    "sweep.agents (random, tpe) and stores search.agent: random."]
    plain = parse_config({"search": {"agent": "evolution"}})
    assert without_unswept_neon(plain, ["evolution"], said.append) is plain and len(said) == 1


def test_a_sweep_that_stopped_while_starting_is_named_as_such(tmp_path):
    with pytest.raises(FileNotFoundError, match="not the output of"):
        load_state(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"status": "starting"}))
    with pytest.raises(UserError, match="before its first trial started"):
        load_state(tmp_path, what="--resume")


def test_a_submitted_sweep_runs_the_same_options_as_a_local_one():
    from rayprune.submit import sweep_entrypoint

    cmd = sweep_entrypoint("cfg dir/c.yaml", "/shared/o", budgets=["params=0.5,0.25"], seeds=2, agents="crl,random",
                           evaluations=64, max_concurrent_trials=3, first_seed=5)
    assert cmd == ("rayprune sweep 'cfg dir/c.yaml' --out /shared/o -q --budgets params=0.5,0.25 --agents crl,random "
                   "--evaluations 64 --seeds 2 --first-seed 5 --max-concurrent-trials 3")


def test_a_ctrl_c_is_told_apart_from_a_finished_sweep():
    """Tune returns normally after a SIGINT; trials whose last report is not ``done`` (and did not fail) make the
    driver stop before any selection (the end-to-end case: tests/test_sweep.py)."""
    import doctest

    from rayprune.sweeps import driver

    assert doctest.testmod(driver).failed == 0


def test_the_handlers_tune_leaves_behind_are_put_back_after_the_trials():
    """Tune replaces SIGINT's handler and keeps it after fit(): Ctrl-C in the selection then did nothing."""
    import signal

    from rayprune.sweeps.driver import _sigterm_stops_trials

    outer = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}
    # known handlers first: an earlier test in this process (Ray, Tune) may have left its own
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    try:
        before = {sig: signal.getsignal(sig) for sig in outer}
        with _sigterm_stops_trials():
            assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
            signal.signal(signal.SIGINT, lambda *a: None)  # what Tune does
            signal.signal(signal.SIGUSR1, lambda *a: None)
        assert {sig: signal.getsignal(sig) for sig in before} == before
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C interrupts again
            signal.raise_signal(signal.SIGINT)
    finally:
        for sig, handler in outer.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def test_sigterm_marks_the_sweep_interrupted_before_anything_else(tmp_path, capfd):
    """A scheduler's SIGTERM to the process group also stops the driver's local Ray: the driver never got back from
    Tune, and sweep.json said 'running' for a sweep that was dead."""
    import json
    import signal

    from rayprune.sweeps.driver import _sigterm_stops_trials

    (tmp_path / "sweep.json").write_text(json.dumps({"status": "running", "agents": ["random"]}))
    outer = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    stopped = []
    try:
        signal.signal(signal.SIGUSR1, lambda *a: stopped.append(1))  # Tune's graceful stop
        with _sigterm_stops_trials(tmp_path, "rayprune sweep --resume --out X"):
            signal.raise_signal(signal.SIGTERM)
        assert stopped == [1] and json.loads((tmp_path / "sweep.json").read_text())["status"] == "interrupted"
        # said at once: a job's stop kills the driver a few seconds later, maybe before it gets back from Tune
        assert "Continue the sweep with: rayprune sweep --resume --out X" in capfd.readouterr().err
    finally:
        for sig, handler in outer.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def test_resume_refuses_a_sweep_whose_model_source_changed_since_it_started(tmp_path, monkeypatch):
    """A resumed sweep must prune the base its candidates came from; a changed factory would retrain another."""
    import sys

    from rayprune.base_model import base_cache_key
    from rayprune.sweeps.driver import run_sweep

    src = tmp_path / "resumed_nets.py"
    src.write_text("def make(**kw):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("resumed_nets", None)
    cfg = parse_config({"model": {"name": "resumed_nets:make"}, "data": {"name": "digits"}})
    out = tmp_path / "sweep"
    out.mkdir()
    setup = {"config": cfg.model_dump(mode="json"), "out_dir": str(out), "sweep_id": "x", "base_costs": {},
             "base_accuracy": {}}
    (out / "sweep.json").write_text(json.dumps({"config": setup["config"], "setup": setup, "status": "running",
                                                "base_key": base_cache_key(cfg)}))
    src.write_text("def make(**kw):\n    return None  # edited\n")
    with pytest.raises(UserError, match="changed since the sweep"):
        run_sweep(None, out, resume=True, log=lambda m: None)


def test_resume_refuses_a_sweep_whose_pruning_space_is_built_differently_now(tmp_path):
    """A sweep of a grouped-conv or attention model started before groups were pruned in blocks resumed onto other
    groups (keep ratios of other length, or counts rounded otherwise): refused, saying why; the same space goes on."""
    import torch
    from conftest import GroupedResidualNet

    from rayprune.pruning.space import PruningSpace
    from rayprune.sweeps.driver import check_same_space, space_signature

    grouped = PruningSpace(GroupedResidualNet().eval(), torch.zeros(1, 3, 8, 8))
    plain = PruningSpace(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3)).eval(),
                         torch.zeros(1, 3, 8, 8))
    check_same_space({"space": space_signature(grouped)}, grouped, tmp_path)  # the same: goes on
    check_same_space({}, plain, tmp_path)  # an older sweep of a model without blocks: nothing changed for it
    with pytest.raises(UserError, match=r"--resume: .*\(groups coupled to grouped convolutions or attention heads are "
                                        r"now pruned alike in each block.*Start a new sweep"):
        check_same_space({}, grouped, tmp_path)
    old = [g for g in space_signature(grouped) if g[2] == 1]
    with pytest.raises(UserError, match=r"its groups were .* and are now"):
        check_same_space({"space": old}, grouped, tmp_path)


def test_the_jobs_page_shows_a_sweeps_levels_for_a_fresh_and_a_resumed_driver(tmp_path):
    from rayprune.config import parse_config
    from rayprune.sweeps.driver import _job_metadata, budgets_text

    cfg = parse_config({"name": "qs", "model": {"name": "small_cnn"}, "data": {"name": "digits"},
                        "sweep": {"budgets": {"params": [0.5, 0.25], "macs": [0.5]}}}, source="x")
    assert budgets_text(cfg) == "params=0.5,0.25;macs=0.5"
    single = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"}, "budgets": {"params": 0.3}},
                          source="x")
    assert budgets_text(single) == "params=0.3"
    assert _job_metadata(cfg, tmp_path) == {"rayprune": "sweep", "config": "qs", "budgets": "params=0.5,0.25;macs=0.5",
                                            "out": str(tmp_path)}
    # Fractions of the base latency keep their mark (latency_ms=0.9 would read as 0.9 ms), as the levels are named.
    relative = parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"},
                             "budgets": {"latency_ms": {"value": 0.9, "relative": True}},
                             "sweep": {"budgets": {"latency_ms": [0.9, 0.8]}}}, source="x")
    assert budgets_text(relative) == "latency_ms=90%,80%"
    from rayprune.costs.levels import levels_from_config

    assert [lvl.name for lvl in levels_from_config(relative, {"latency_ms": 2.0}, sweep=True)] == [
        "latency_ms=90%", "latency_ms=80%"]
    assert levels_from_config(relative, {"latency_ms": 2.0}, sweep=True)[0].limits == {"latency_ms": 1.8}


def test_a_submitted_job_uploads_the_users_data_files_but_not_rayprunes_outputs(tmp_path):
    """Matched as Ray matches a working dir's excludes (its _get_excludes: gitwildmatch, paths relative to it)."""
    from ray._private.runtime_env.packaging import _get_excludes

    from rayprune.submit import upload_excludes

    (tmp_path / "data").mkdir()
    (tmp_path / "results" / "s1" / "candidates").mkdir(parents=True)
    excluded = _get_excludes(tmp_path, upload_excludes(tmp_path, str(tmp_path / "results" / "s1")))
    for kept in ("data/table.parquet", "data/table.csv", "sweep.yaml"):
        assert not excluded(tmp_path / kept), kept
    for left_out in ("results/s1", "runs", "candidates.parquet", "results/other/pareto.parquet", ".git"):
        assert excluded(tmp_path / left_out), left_out
    assert not excluded(tmp_path / "rayprune")  # a folder of that name that is no package: the user's
    (tmp_path / "rayprune").mkdir()
    (tmp_path / "rayprune" / "__init__.py").write_text("")  # submitted from a checkout of rayprune: the job runs
    excluded = _get_excludes(tmp_path, upload_excludes(tmp_path, "/shared/s1"))  # the cluster's installed rayprune
    assert excluded(tmp_path / "rayprune") and not excluded(tmp_path / "data" / "rayprune")


def test_a_pending_job_says_it_waits_and_a_quick_one_says_nothing():
    """Ray's log tail prints nothing until the driver starts: `submit` looked hung while a runtime env installed."""
    from types import SimpleNamespace

    from ray.job_submission import JobStatus

    from rayprune.submit import wait_while_pending

    def run(statuses, message="Job has not started yet. It may be waiting for the runtime environment."):
        infos = [SimpleNamespace(status=s, message=message) for s in statuses]
        client = SimpleNamespace(get_job_info=lambda job_id: infos.pop(0) if len(infos) > 1 else infos[0])
        now, said = [0.0], []
        status = wait_while_pending(client, "raysubmit_1", said.append, first=5, every=30,
                                    sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
        return status, said

    assert run([JobStatus.PENDING] * 3 + [JobStatus.RUNNING]) == ("RUNNING", [])
    status, said = run([JobStatus.PENDING] * 70 + [JobStatus.RUNNING])
    assert status == "RUNNING" and [line.split("(")[1].split(")")[0] for line in said] == ["5 s", "35 s", "65 s"]
    assert "runtime environment" in said[0] and "raysubmit_1" in said[0]
    assert run([JobStatus.PENDING] * 2 + [JobStatus.FAILED])[0] == "FAILED"  # its reason is read after the tail
    said = []

    def down(job_id):
        raise ConnectionError("job server restarting")

    assert wait_while_pending(SimpleNamespace(get_job_info=down), "raysubmit_1", said.append) == "UNKNOWN"
    assert said == ["job raysubmit_1: could not read its status (ConnectionError: job server restarting); following "
                    "its logs"]  # not a traceback that ends the command


def test_a_quiet_sweep_prints_a_progress_line_when_more_candidates_were_scored(tmp_path):
    """Tune's output off (Python's default, sweep -q): a line per period in which rows landed, none otherwise."""
    import time

    import pyarrow as pa
    import pyarrow.parquet as pq

    from rayprune.sweeps.driver import progress_lines, scored_so_far

    shards = tmp_path / "candidates"
    shards.mkdir()
    (shards / "part-t1-00000.parquet").write_bytes(b"not parquet yet")  # being replaced: skipped, no error
    assert scored_so_far(tmp_path) == 0
    lines = []
    with progress_lines(tmp_path, 64, lines.append, every=0.2):
        time.sleep(0.3)
        assert lines == []  # nothing scored yet: nothing said
        pq.write_table(pa.table({"x": list(range(16))}), shards / "part-t1-00000.parquet")
        pq.write_table(pa.table({"x": list(range(8))}), shards / "part-t2-00000.parquet")
        time.sleep(0.5)
        said = len(lines)
        time.sleep(0.5)
        assert len(lines) == said  # nothing new scored: nothing more said
    assert lines and lines[-1].startswith("24 of 64 candidates scored (")  # (a wake between the two writes: 16 first)


def test_an_interrupted_sweep_names_the_resume_of_the_way_it_was_started_first():
    from pathlib import Path

    from rayprune.sweeps.driver import resume_how

    shell, python = resume_how(Path("runs/s"), False), resume_how(Path("runs/s"), True)
    assert shell.startswith("rayprune sweep --resume --out runs/s") and "rayprune.sweep(" in shell
    assert python.startswith("rayprune.sweep(..., out='runs/s', resume=True)")
    assert python.index("rayprune sweep --resume") > python.index("rayprune.sweep(")
    in_memory = resume_how(Path("runs/s"), True, in_memory=True)  # only Python can hand the model over again
    assert "same model and data" in in_memory and "rayprune sweep --resume" not in in_memory


def test_tunes_own_closing_lines_are_held_back_while_a_sweep_runs_and_only_then():
    """Tune's "Resume experiment with: Tuner.restore(...)" printed above rayprune's own resume command."""
    import logging

    from rayprune.sweeps.driver import tune_endings_held

    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    tune_logger, keep = logging.getLogger("ray.tune.tune"), Keep()
    tune_logger.addHandler(keep)
    try:
        with tune_endings_held():
            tune_logger.warning("Experiment has been interrupted, but the most recent state was saved.\n"
                                "Resume experiment with: Tuner.restore(path=..., trainable=...)")
            tune_logger.error("Trials did not complete: %s", ["t1"])
            tune_logger.warning("a trial is slow")  # anything else still shows
        tune_logger.warning("Experiment has been interrupted, outside a sweep")
    finally:
        tune_logger.removeHandler(keep)
    assert seen == ["a trial is slow", "Experiment has been interrupted, outside a sweep"]


def test_a_sweep_with_crl_env_runners_is_refused_before_it_starts():
    """search.crl.env_runners: 1 in a sweep hung (RLlib's env runner found no CPU in the trial's placement group),
    died with a Ray SYSTEM_ERROR, was restarted and hung again; nothing named the setting."""
    from rayprune.sweeps.driver import _check_resources

    cfg = parse_config({"search": {"crl": {"env_runners": 1}}, "sweep": {"agents": ["crl", "random"]}})
    with pytest.raises(UserError, match=r"search.crl.env_runners is 1.*Set search.crl.env_runners: 0"):
        _check_resources(cfg, log=lambda m: None)


def test_a_failed_trial_is_listed_in_the_summary_and_the_report_says_incomplete():
    """A sweep whose only trial failed half-way was marked finished, its models exported from half a search, and
    `rayprune report` showed it as complete (an operator's SIGKILLs, session 31)."""
    from pathlib import Path
    from types import SimpleNamespace

    from rayprune.report import incomplete_note
    from rayprune.sweeps.driver import failed_trial

    result = SimpleNamespace(config={"agent": "random", "seed": 0}, metrics={"evaluations": 64},
                             error=RuntimeError("The actor died unexpectedly\nbefore the task finished"))
    failed = failed_trial(result)
    assert failed == {"trial": "random,seed=0", "error": "The actor died unexpectedly", "evaluations": 64}
    assert failed_trial(SimpleNamespace(config={}, metrics=None, error=RuntimeError("x")))["evaluations"] == 0
    state = {"status": "finished", "summary": {"failed_trials": [failed]}}
    note = incomplete_note(state, Path("/runs/s"))
    assert "INCOMPLETE: 1 trial(s) failed" in note and "random,seed=0 after 64 candidates" in note
    assert "rayprune sweep --resume --out /runs/s" in note
    assert incomplete_note({"status": "finished", "summary": {"failed_trials": []}}, Path("/runs/s")) == ""
    assert "did not finish" in incomplete_note({"status": "interrupted"}, Path("/runs/s"))
    in_memory = {"status": "finished", "config": {"model": {"name": "<in-memory> Net"}, "data": {"name": "digits"}},
                 "summary": {"failed_trials": [failed]}}  # only Python can hand the model over again
    assert "rayprune.sweep(model, data, out='/runs/s', resume=True) retries them" in incomplete_note(
        in_memory, Path("/runs/s"))


def test_a_resume_is_refused_while_the_sweeps_driver_is_alive(tmp_path, monkeypatch):
    """A resume submitted while the first job still ran re-scored, dropped and re-exported rows of a sweep that
    finished under it (an operator's report, session 31); a live driver is recognised whatever sweep.json says."""
    import json
    import os
    import socket
    import subprocess
    import sys
    import threading
    import time

    from rayprune.errors import UserError
    from rayprune.sweeps import driver

    def beat(host, pid):
        (tmp_path / driver.DRIVER_FILE).write_text(json.dumps({"host": host, "pid": pid, "time": time.time()}))

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # another live process
    try:
        beat(socket.gethostname(), sleeper.pid)
        with pytest.raises(UserError, match=rf"is running: process {sleeper.pid} on this host is alive.*ray job stop"):
            driver.refuse_if_running(tmp_path, lambda m: None)
    finally:
        sleeper.kill()
        sleeper.wait()
    driver.refuse_if_running(tmp_path, lambda m: None)  # killed on this host without a word: resume at once
    beat(socket.gethostname(), os.getpid())
    driver.refuse_if_running(tmp_path, lambda m: None)  # this very process's own ended sweep (the Python API)
    monkeypatch.setattr(driver, "HEARTBEAT_S", 0.2)
    beat("another-node", 1234)  # another node's driver: alive only if it rewrites the file meanwhile
    driver.refuse_if_running(tmp_path, lambda m: None)
    stop = threading.Event()

    def other_node():
        while not stop.wait(0.05):
            beat("another-node", 1234)

    writer = threading.Thread(target=other_node)
    writer.start()
    try:
        with pytest.raises(UserError, match="the driver on another-node .* is still writing driver.json"):
            driver.refuse_if_running(tmp_path, lambda m: None)
    finally:
        stop.set()
        writer.join()
    (tmp_path / driver.DRIVER_FILE).unlink()
    driver.refuse_if_running(tmp_path, lambda m: None)  # no driver recorded (an older sweep)

    # the heartbeat: written once the sweep is this driver's and past its start, removed when the driver ends
    monkeypatch.setattr(driver, "HEARTBEAT_S", 0.05)
    (tmp_path / "sweep.json").write_text(json.dumps({"status": "starting"}))
    with driver._heartbeat(tmp_path, owned=False) as claimed:
        time.sleep(0.3)
        assert not (tmp_path / driver.DRIVER_FILE).exists()  # not claimed: another sweep's directory, say
        claimed.set()
        time.sleep(0.3)
        assert not (tmp_path / driver.DRIVER_FILE).exists()  # starting: a failure must find the directory as it was
        (tmp_path / "sweep.json").write_text(json.dumps({"status": "interrupted"}))
        time.sleep(0.3)
        assert json.loads((tmp_path / driver.DRIVER_FILE).read_text())["pid"] == os.getpid()
    assert not (tmp_path / driver.DRIVER_FILE).exists()


def test_a_resumed_sweeps_files_are_found_under_the_new_working_directory(tmp_path, monkeypatch):
    """A submitted sweep's stored config named its checkpoint in Ray's temporary copy of the working dir; after a
    cluster restart that copy was gone and --resume failed with 'Checkpoint not found' (an operator's report)."""
    from rayprune.config import parse_config
    from rayprune.sweeps.driver import rebased_paths

    first = tmp_path / "ray_pkg_1"  # the first job's working dir copy, gone since
    again = tmp_path / "ray_pkg_2"  # the resume job's
    (again / "bases").mkdir(parents=True)
    (again / "bases" / "base.pt").write_bytes(b"weights")
    cfg = parse_config({"model": {"name": "small_cnn", "checkpoint": str(first / "bases" / "base.pt")},
                        "data": {"name": "tabular", "path": str(tmp_path / "elsewhere.csv")}})
    monkeypatch.chdir(again)
    said: list[str] = []
    moved = rebased_paths(cfg, str(first), said.append)
    assert moved.model.checkpoint == again / "bases" / "base.pt"
    assert moved.data.path == tmp_path / "elsewhere.csv"  # not under the old working dir: left for its own error
    assert len(said) == 1 and said[0].startswith("model.checkpoint: ") and "is gone" in said[0]
    assert cfg.model.checkpoint == first / "bases" / "base.pt"  # the stored config itself is left as it was
    assert rebased_paths(cfg, None, said.append) is cfg  # a sweep of an older rayprune recorded no directory
