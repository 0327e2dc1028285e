"""`rayprune sweep` end to end: results layout, resume after a killed driver, a real Ray cluster on loopback.

Every test runs the CLI in a subprocess, as a user would; each sweep starts (or joins) its own Ray.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest
from _procs import pids_titled

from rayprune.search.score_signal import WEAK_BELOW

SWEEP = """
name: tiny-sweep
model: {name: small_cnn, kwargs: {width_mult: 0.5}}
data: {name: digits, device: cpu}
base_training: {epochs: 3, lr: 0.05, batch_size: 64}
pruning: {min_keep: 0.2}
search:
  evaluations: EVALS
  batch_size: 8
  score: SCORE
  rerank: {top_k: 3}
  finetune: {iterations: FT, batch_size: 64}
  final_finetune: {iterations: 10, batch_size: 64}
  eval_samples: 200
evaluation: {evaluators: 1, cpus: 0.75}
sweep: {budgets: {params: [0.5, 0.3]}, agents: [AGENTS], seeds: 1, trial_cpus: 0.25, checkpoint_seconds: CKPT}
"""
LEVELS = {"params=0.5", "params=0.3"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "RAYPRUNE_CACHE": str(tmp_path_factory.mktemp("cache")), "RAY_ADDRESS": "",  # never join a cluster by accident
            "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}



def _sigint_default() -> None:
    """In a child about to run the CLI: Ctrl-C's default action, even where pytest itself was started with SIGINT
    ignored (a background job of a shell script: Python then never raises KeyboardInterrupt, and the tests that
    send SIGINT saw the sweep run to the end)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def cli_process(*args, **popen):
    """A rayprune command started in a session of its own; on leaving (a failed assertion too), killed with its
    process group — the driver and the local Ray it started — if it still runs."""
    proc = subprocess.Popen([sys.executable, "-m", "rayprune.cli", *map(str, args)], start_new_session=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def write_config(folder: Path, evaluations=16, finetune=3, score="two_stage", agents=("random", "crl"),
                 checkpoint_seconds=0) -> Path:
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.replace("EVALS", str(evaluations)).replace("FT", str(finetune)).replace("SCORE", score)
                    .replace("AGENTS", ", ".join(agents)).replace("CKPT", str(checkpoint_seconds)))
    return path


def rayprune(*args, env, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "rayprune.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, **kw)


def last_results(out: Path) -> dict:
    """Each trial's last line of Tune's result.json (Tune repeats iterations after a restore)."""
    results = {}
    for path in (out / "tune").glob("*/result.json"):
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        results[lines[-1]["trial_name"]] = lines[-1]
    return results


def check_sweep_outputs(out: Path, agents=("random", "crl"), seed=0) -> pd.DataFrame:
    rows = pd.read_parquet(out / "candidates.parquet")
    assert rows["row_id"].is_unique
    assert pq.read_table(out / "candidates.parquet").num_rows == len(rows)
    assert duckdb.sql(f"select count(*) from '{out / 'candidates.parquet'}'").fetchall()[0][0] == len(rows)
    results = last_results(out)
    assert set(results) == {f"{a},seed={seed}" for a in agents} and all(r["done"] for r in results.values())
    search = rows[rows["stage"] == "search"]
    for name, result in results.items():
        mine = search[search["trial_name"] == name]
        assert len(mine) == result["evaluations"], name  # nothing lost, nothing duplicated
        assert set(mine["agent"]) == {name.split(",")[0]}  # rows tagged by agent
        assert set(mine["level"]) == LEVELS  # each trial searched every level
    final = rows[(rows["stage"] == "final") & (rows["status"] == "ok")]
    assert set(final["level"]) == LEVELS and len(final) == 2  # one exported model per level
    superseded = rows[rows["status"] == "superseded"]  # a level's own final, served by a model as good or better
    exported_acc = final.set_index("level")["accuracy"]
    for _, row in superseded.iterrows():
        assert row["stage"] == "final" and row["accuracy"] <= exported_acc[row["level"]] and pd.isna(row["export_path"])
    state = json.loads((out / "sweep.json").read_text())
    assert state["status"] == "finished" and state["summary"]["monotone"]
    for level in state["summary"]["levels"]:  # each level's search score measured against chance and the base
        signal = level["search_signal"]
        assert signal["base"] == pytest.approx(state["setup"]["base_accuracy"]["val"])
        assert 0 < signal["chance"] < 1 and signal["median"] <= signal["best"] and signal["candidates"] >= 1
        assert signal["weak"] == (signal["retained"] < WEAK_BELOW)
    acc = final.set_index("level")["accuracy"]
    assert acc["params=0.5"] >= acc["params=0.3"]  # a larger budget never buys a worse model
    for level in LEVELS:
        assert (out / "models" / level / "spec.json").is_file()
    front = pd.read_parquet(out / "pareto.parquet")
    assert 1 <= len(front) <= 2 and front["feasible"].all()
    served = final.groupby("candidate_id")["level"].apply(set)
    for _, member in front.iterrows():  # named by the tightest level it is the model of, listing all of them
        assert set(member["levels"]) == served[member["candidate_id"]]
        assert member["level"] == min(member["levels"], key=lambda name: float(name.split("=")[1]))
    for path in front["export_path"]:
        assert (Path(path) / "spec.json").is_file()
    assert (out / "front_history.parquet").is_file()
    assert (out / "report.png").stat().st_size > 10_000 and "<img" in (out / "report.html").read_text()
    return rows


@pytest.mark.slow
def test_two_agents_sweep_two_levels_end_to_end(tmp_path, env):
    out = tmp_path / "out"
    res = rayprune("sweep", write_config(tmp_path), "--out", out, "-q", "--first-seed", "4", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Pareto front" in res.stdout and "search, by agent" in res.stdout
    for tune_line in ("Configuration for experiment", "View detailed results", "tensorboard --logdir",
                      "Wrote the latest version"):  # -q: Tune's own console output is held back
        assert tune_line not in res.stdout + res.stderr, tune_line
    rows = check_sweep_outputs(out, seed=4)
    assert set(rows.loc[rows["stage"] == "search", "seed"]) == {4}  # the trials searched with --first-seed's seed
    assert json.loads((out / "sweep.json").read_text())["trial_seeds"] == [4]
    from rayprune.report import summary_text
    from rayprune.results import exported_rows

    exported = exported_rows(rows)
    head = summary_text(out).splitlines()[0]  # one model may serve several levels: the count says so
    assert f"{len(exported)} models exported" in head
    assert (f"({exported['candidate_id'].nunique()} distinct" in head) == (exported["candidate_id"].nunique() < len(exported))
    # budgets hold on every feasible row and on the exported models, re-measured in a fresh process
    feas = rows[(rows["stage"] == "search") & rows["feasible"].astype(bool)]
    limits = {"params=0.5": 0.5, "params=0.3": 0.3}
    base = json.loads((out / "sweep.json").read_text())["setup"]["base_costs"]["params"]
    assert all(r["params"] <= limits[r["level"]] * base for _, r in feas.iterrows())
    front = pd.read_parquet(out / "pareto.parquet")
    code = ("import sys, rayprune; m = rayprune.load_pruned(sys.argv[1]); "
            "print(sum(p.numel() for p in m.parameters()))")
    for _, member in front.iterrows():
        n = subprocess.run([sys.executable, "-c", code, member["export_path"]], capture_output=True, text=True,
                           env=env, timeout=120)
        assert n.returncode == 0, n.stderr
        assert int(n.stdout) == member["params"] <= limits[member["level"]] * base
        summary = json.loads((Path(member["export_path"]) / "spec.json").read_text())["summary"]
        assert summary["found_by"] == member["agent"]  # which agent found it (or "uniform (weak level)")
        if not member["agent"].endswith("(weak level)"):  # (the selection's own structured candidate: no trial)
            assert summary["found_by_seed"] == 4
    report = rayprune("report", out, env=env, timeout=120)
    assert report.returncode == 0 and "params=0.3" in report.stdout and "crl" in report.stdout
    again = rayprune("sweep", write_config(tmp_path), "--out", out, env=env, timeout=120)
    assert again.returncode == 2 and "already holds a finished sweep" in again.stderr  # not "pass --resume"
    # --resume of a finished sweep re-runs nothing (it used to redo the selection and overwrite the models)
    weights = {p: p.stat().st_mtime_ns for p in (out / "models").rglob("weights.pt")}
    resumed = rayprune("sweep", "--resume", "--out", out, env=env, timeout=120)
    assert resumed.returncode == 0 and "finished already" in resumed.stdout + resumed.stderr, resumed.stderr[-2000:]
    assert weights and {p: p.stat().st_mtime_ns for p in (out / "models").rglob("weights.pt")} == weights
    assert json.loads((out / "sweep.json").read_text())["status"] == "finished"
    # moved elsewhere (a shared drive, another machine): the report names the models where they are now
    moved = tmp_path / "elsewhere" / "sweep"
    moved.parent.mkdir()
    out.rename(moved)
    from rayprune.report import _load

    _, moved_rows, moved_front = _load(moved)
    assert len(moved_front) and all(Path(p).is_dir() and Path(p).is_relative_to(moved) for p in moved_front["export_path"])
    assert all(Path(p).is_relative_to(moved) for p in exported_rows(moved_rows)["export_path"])


@pytest.mark.slow
@pytest.mark.parametrize("checkpoint_seconds,how", [(0, "kill"), (100000, "kill"), (0, "ctrl-c"), (0, "sigterm")],
                         ids=["after-a-checkpoint", "before-any-checkpoint", "ctrl-c", "sigterm"])
def test_resume_after_the_driver_is_killed(tmp_path, env, checkpoint_seconds, how):
    """Killed mid-search (with a checkpoint behind it, or before its trials wrote any), or stopped with Ctrl-C
    (Tune then returns as if done: the sweep must say it was interrupted, select nothing and exit 130), then
    resumed: every trial ends with exactly its candidates, none lost, none twice."""
    out = tmp_path / "out"
    # fine-tune scores: slow enough that two of the three batches are still ahead at the kill
    # (Ctrl-C: more batches, so that the trial is still searching when the signal lands)
    evaluations = 24 if how == "kill" else 64
    cfg = write_config(tmp_path, evaluations=evaluations, finetune=60, score="finetune", agents=("random",),
                       checkpoint_seconds=checkpoint_seconds)
    stderr = ""
    with cli_process("sweep", cfg, "--out", out, "-q", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                     text=True, preexec_fn=_sigint_default) as proc:
        deadline = time.time() + 400
        while time.time() < deadline:
            shards = list((out / "candidates").glob("*.parquet"))
            if shards and (checkpoint_seconds or list((out / "tune").glob("*/checkpoint_*"))):
                break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.3)
        else:
            pytest.fail("no rows appeared")
        time.sleep(1)  # into the next batch
        if how != "kill":  # the driver only, as `kill -INT` / `kill` (a job scheduler's stop) would
            proc.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGTERM)
            stderr = proc.communicate(timeout=120)[1]
    if how != "kill":  # stopped gracefully: said so, nothing selected, resumable
        assert proc.returncode == 130, stderr[-3000:]
        assert "interrupted" in stderr and "trial(s) had not finished" in stderr and "--resume --out" in stderr
        assert "Tuner.restore" not in stderr and "Trials did not complete" not in stderr  # Tune's own, held back
        assert stderr.index("rayprune sweep --resume") < stderr.index("rayprune.sweep(")  # the CLI's way first
        from rayprune.report import summary_text

        assert "INCOMPLETE" in summary_text(out)
    status = json.loads((out / "sweep.json").read_text())["status"]  # killed: still running; stopped: says so
    assert status == ("running" if how == "kill" else "interrupted"), "the sweep ended before the kill"
    assert not (out / "pareto.parquet").exists()
    assert not (out / "models").exists()  # nothing selected from half a search
    if checkpoint_seconds:
        assert not list((out / "tune").glob("*/checkpoint_*")), "a checkpoint was written: not the case under test"
    res = rayprune("sweep", "--resume", "--out", out, "-q", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = check_sweep_outputs(out, agents=("random",))
    assert (rows["stage"] == "search").sum() == evaluations


@pytest.mark.slow
def test_ctrl_c_in_the_selection_keeps_every_search_row_and_resume_redoes_only_the_selection(tmp_path, env):
    """Every trial finished; Ctrl-C lands while the re-rank fine-tunes run: exit 130, a message that says what is
    kept and how to finish, and `--resume` selects without searching again."""
    out = tmp_path / "out"
    cfg = write_config(tmp_path, evaluations=16, finetune=300, agents=("random",))  # long re-ranks: time to land
    err_file = tmp_path / "stderr.txt"
    stdout = []
    # stderr to a file, not a pipe: a pipe nobody reads can fill and block the driver
    with open(err_file, "w") as err, cli_process("sweep", cfg, "--out", out, env=env, stdout=subprocess.PIPE, stderr=err,
                                                 text=True, preexec_fn=_sigint_default) as proc:
        deadline = time.time() + 400
        for line in proc.stdout:  # the driver's progress lines, unbuffered (env)
            stdout.append(line)
            if line.startswith("Re-ranking") or time.time() > deadline:
                break
        assert stdout and stdout[-1].startswith("Re-ranking"), "".join(stdout)[-3000:] + err_file.read_text()[-3000:]
        time.sleep(1.0)  # into the first re-rank fine-tune
        proc.send_signal(signal.SIGINT)
        stdout.append(proc.communicate(timeout=180)[0])
    stderr = err_file.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    assert "during the selection" in stderr and f"--resume --out {out}" in stderr, stderr[-3000:]
    assert "Traceback" not in stderr
    assert json.loads((out / "sweep.json").read_text())["status"] == "interrupted"
    from rayprune.results import read_candidates

    assert (read_candidates(out)["stage"] == "search").sum() == 16  # every search row kept (in the shards)
    res = rayprune("sweep", "--resume", "--out", out, "-q", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = check_sweep_outputs(out, agents=("random",))
    assert (rows["stage"] == "search").sum() == 16  # the search was not run again


@pytest.mark.slow
def test_a_crashed_trial_process_is_restarted_by_tune_from_its_checkpoint_without_lost_or_twice_written_rows(
        tmp_path, env):
    out = tmp_path / "out"
    # six batches: on a fast day three finished within the second the test waits after the first
    # checkpoint, and the sweep ended before its trial could be killed (session 15)
    cfg = write_config(tmp_path, evaluations=48, finetune=60, score="finetune", agents=("random",))
    killed = []
    with cli_process("sweep", cfg, "--out", out, "-q", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                     text=True, preexec_fn=_sigint_default) as proc:
        deadline = time.time() + 400
        while time.time() < deadline and not killed:
            if list((out / "tune").glob("*/checkpoint_*")) and list((out / "candidates").glob("*.parquet")):
                time.sleep(1)  # into the next batch
                for pid in pids_titled("ray::ImplicitFunc"):  # Tune's function trainable
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            assert proc.poll() is None, "the sweep ended before its trial could be killed"
            time.sleep(0.3)
        assert killed, "no trial process to kill"
        _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    assert json.loads((out / "sweep.json").read_text())["status"] == "finished"
    rows = check_sweep_outputs(out, agents=("random",))
    search = rows[rows["stage"] == "search"]
    assert len(search) == 48 and search["row_id"].is_unique  # the restarted trial dropped what it redid
    assert sorted(search["iteration"].value_counts().unique()) == [8]  # every batch exactly once


@pytest.mark.slow
def test_sweep_on_a_ray_cluster(tmp_path, env, ray_head):
    """A driver on this machine joins the cluster (RAY_AUTH_MODE is set by rayprune from the token
    file). The same sweep as a Ray job: ``rayprune submit`` below (its entrypoint is ``rayprune sweep``)."""
    cfg = write_config(tmp_path)
    client_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    out = tmp_path / "direct"
    res = rayprune("sweep", cfg, "--out", out, "--address", ray_head["gcs"], "-q", env=client_env)
    assert res.returncode == 0, res.stderr[-3000:]
    check_sweep_outputs(out)
    # the trials and evaluators built the driver's problem from the object store: none looked for a
    # base model in the node's own cache (and so none trained another one there)
    assert not ray_head["node_cache"].exists() or not any(ray_head["node_cache"].rglob("*.pt"))


@pytest.mark.slow
def scrape(url: str) -> str:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_submit_follows_the_job_and_every_metric_reaches_prometheus(tmp_path, env, ray_head):
    from rayprune.telemetry import METRICS, prometheus_name

    cfg = write_config(tmp_path, evaluations=24, finetune=20)
    out = tmp_path / "submitted"
    client_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen([sys.executable, "-m", "rayprune.cli", "submit", str(cfg), "--address", ray_head["dashboard"],
                             "--working-dir", str(tmp_path), "--out", str(out)],
                            env=client_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_sigint_default)
    seen = ""
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        seen += scrape(ray_head["metrics"])  # metrics live while the job runs
        time.sleep(2)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, output[-3000:]
    assert "submitted job" in output and "SUCCEEDED" in output
    check_sweep_outputs(out)
    seen += scrape(ray_head["metrics"])
    missing = [prometheus_name(n) for n in METRICS if prometheus_name(n) not in seen]
    assert not missing, f"not exported: {missing}"
    for line in seen.splitlines():
        if line.startswith("ray_rayprune_best_feasible_accuracy{"):
            assert 'sweep="' in line and 'trial="' in line and 'budget="params=' in line
            break
    else:
        pytest.fail("no tagged best_feasible_accuracy series")
    # the job carries rayprune's metadata
    listed = subprocess.run(["ray", "job", "list", "--address", ray_head["dashboard"]], capture_output=True,
                            text=True, env=ray_head["env"], timeout=60)
    assert "rayprune submit" in listed.stdout + listed.stderr and "tiny-sweep" in listed.stdout + listed.stderr


@pytest.mark.slow
def test_ctrl_c_stops_following_not_the_job(tmp_path, env, ray_head):
    cfg = write_config(tmp_path)
    client_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen([sys.executable, "-m", "rayprune.cli", "submit", str(cfg), "--address", ray_head["dashboard"],
                             "--working-dir", str(tmp_path), "--out", str(tmp_path / "o")],
                            env=client_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_sigint_default)
    first = ""
    for _ in range(50):  # Ray logs the upload first
        first = proc.stdout.readline()
        if "submitted job" in first or not first:
            break
    assert "submitted job" in first, first
    job_id = first.split()[2]
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0 and "stopped following" in rest

    def status() -> str:
        done = subprocess.run(["ray", "job", "status", job_id, "--address", ray_head["dashboard"]],
                              capture_output=True, text=True, env=ray_head["env"], timeout=60)
        return (done.stdout + done.stderr).lower()  # the Ray CLI logs to stderr: "Job '...' is running"

    # the job goes on without its follower: alive (or done) well after the follower left
    time.sleep(8)
    now = status()
    if not (any(w in now for w in ("pending", "running", "succeeded")) and "stopped" not in now):
        logs = subprocess.run(["ray", "job", "logs", job_id, "--address", ray_head["dashboard"]], capture_output=True,
                              text=True, env=ray_head["env"], timeout=60)  # failed twice in session 23: say why
        pytest.fail(f"job status: {now}\nfollower output: {rest[-2000:]}\njob logs: {(logs.stdout + logs.stderr)[-4000:]}")
    subprocess.run(["ray", "job", "stop", job_id, "--address", ray_head["dashboard"]], capture_output=True,
                   env=ray_head["env"], timeout=60)  # its sweep is the submit test's above: no need to wait for it


@pytest.mark.slow
def test_a_stopped_submitted_sweep_is_continued_by_submit_resume(tmp_path, env, ray_head):
    """An operator stops a submitted sweep (`ray job stop`) mid-search, and `rayprune submit --resume --out DIR`
    finishes it with every row once (there was no rayprune command for it: the job's log pointed at `rayprune sweep
    --resume --address`, which a submitted sweep has not)."""
    cfg = write_config(tmp_path, evaluations=96, agents=("random",), checkpoint_seconds=1)
    out = tmp_path / "stopped"
    client_env = {k: v for k, v in env.items() if k != "RAY_AUTH_MODE"}
    first = rayprune("submit", cfg, "--address", ray_head["dashboard"], "--working-dir", tmp_path, "--out", out,
                     "--no-follow", env=client_env, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    job_id = next(line for line in first.stdout.splitlines() if "submitted job" in line).split()[2]
    deadline = time.time() + 300
    while not list((out / "candidates").rglob("*.parquet")):  # the search has written rows: stop it mid-search
        assert time.time() < deadline, "the submitted sweep wrote no candidate rows"
        time.sleep(1)
    # (its log says how to continue only if the driver gets back from Tune within the job server's grace before
    # SIGKILL, 3 s by default: not on a loaded machine; the resume works either way)
    subprocess.run(["ray", "job", "stop", job_id, "--address", ray_head["dashboard"]], capture_output=True,
                   env=ray_head["env"], timeout=120)
    again = rayprune("submit", "--resume", "--address", ray_head["dashboard"], "--working-dir", tmp_path, "--out", out,
                     env=client_env, timeout=600)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "SUCCEEDED" in again.stdout
    rows = check_sweep_outputs(out, agents=("random",))
    assert (rows["stage"] == "search").sum() == 96  # every candidate once: none lost, none scored twice
    refused = rayprune("submit", cfg, "--resume", "--address", ray_head["dashboard"], "--out", out, env=client_env)
    assert refused.returncode == 2 and "takes no config" in refused.stderr


@pytest.mark.slow
def test_a_sweep_that_cannot_join_the_cluster_says_why_in_one_line_and_gives_its_out_back(tmp_path, env, ray_head):
    """No token at hand for a token-authenticated cluster: a one-line error naming the token, and --out unclaimed
    (it used to keep a "starting" sweep.json that refused both a new sweep and --resume)."""
    cfg = write_config(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    no_token = {k: v for k, v in env.items() if not k.startswith("RAY_AUTH")} | {"HOME": str(home)}
    out = tmp_path / "runs" / "new" / "out"  # the parents too are the sweep's to give back
    res = subprocess.run([sys.executable, "-m", "rayprune.cli", "sweep", str(cfg), "--address", ray_head["gcs"],
                          "--out", str(out), "-q"], capture_output=True, text=True, env=no_token, timeout=300)
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Could not connect to the Ray cluster" in res.stderr and "No token was at hand" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_prune_stopped_by_sigterm_says_what_it_kept_and_exits_130(tmp_path, env):
    """A CI scheduler stops a job with SIGTERM: `rayprune prune` mid-search exited 134 with a C++ stack dump of Ray's
    core worker (and a sweep starting up exited 15 and said nothing): now as Ctrl-C, 130 with what was kept."""
    cfg = write_config(tmp_path, evaluations=400, agents=("random",))
    out = tmp_path / "p"
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err, cli_process("prune", cfg, "--budget", "params=0.5", "--out", out, "-q", env=env,
                                                 stdout=subprocess.DEVNULL, stderr=err) as proc:
        deadline = time.time() + 300
        while not list((out / "candidates").glob("*.parquet")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert list((out / "candidates").glob("*.parquet")), err_file.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)  # the driver alone, as `kill PID` does
        proc.wait(timeout=120)
    stderr = err_file.read_text()
    assert proc.returncode == 130, stderr[-3000:]
    assert "rayprune prune: interrupted: stopped by SIGTERM" in stderr or "every scored candidate is kept" in stderr
    assert "SIGTERM received" not in stderr and "Traceback" not in stderr, stderr[-3000:]
