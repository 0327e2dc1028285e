"""``rayprune submit``: run a sweep on a Ray cluster as a Ray job, and follow its logs.

The config is validated here first; the job's working directory (default: the current
directory) is uploaded with the config and any user code it names. Ctrl-C stops following the
logs, never the job: ``ray job status|logs|stop JOB_ID --address ...`` take over from there.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from .errors import UserError

__all__ = ["SUBMITTED_FROM", "submit_sweep", "sweep_entrypoint"]

#: set in a submitted sweep's environment to the job server it was submitted to, so that an interrupted sweep
#: says how to continue it (submit it again with --resume)
SUBMITTED_FROM = "RAYPRUNE_SUBMITTED_TO"


def sweep_entrypoint(config: Optional[str], out: str, *, budgets: Sequence[str] = (), seeds: Optional[int] = None,
                     max_concurrent_trials: Optional[int] = None, agents: Optional[str] = None,
                     evaluations: Optional[int] = None, first_seed: Optional[int] = None) -> str:
    """The shell command the job runs (``rayprune sweep ...``); ``config`` None: continue the sweep in ``out``.

    >>> sweep_entrypoint(None, "/shared/s1")
    'rayprune sweep --resume --out /shared/s1 -q'
    """
    if config is None:
        return " ".join(shlex.quote(p) for p in ["rayprune", "sweep", "--resume", "--out", out, "-q"])
    parts = ["rayprune", "sweep", config, "--out", out, "-q"]
    for b in budgets:
        parts += ["--budgets", b]
    if agents:
        parts += ["--agents", agents]
    if evaluations is not None:
        parts += ["--evaluations", str(evaluations)]
    if seeds is not None:
        parts += ["--seeds", str(seeds)]
    if first_seed is not None:
        parts += ["--first-seed", str(first_seed)]
    if max_concurrent_trials is not None:
        parts += ["--max-concurrent-trials", str(max_concurrent_trials)]
    return " ".join(shlex.quote(p) for p in parts)


def wait_while_pending(client, job_id: str, log=print, *, first: float = 5.0, every: float = 30.0,
                       sleep=time.sleep, clock=time.monotonic) -> str:
    """Wait until the job leaves PENDING, saying so when it waits longer than ``first`` seconds and every ``every``
    seconds after (Ray's log tail prints nothing until the driver starts: a runtime env being installed, or a busy
    cluster, looked like a hung command); returns the status it left PENDING for.

    >>> class Info:
    ...     def __init__(self, status, message=""): self.status, self.message = status, message
    >>> class Client:
    ...     def __init__(self, seq): self.seq = seq
    ...     def get_job_info(self, job_id): return self.seq.pop(0) if len(self.seq) > 1 else self.seq[0]
    >>> t = [0.0]
    >>> seq = [Info("PENDING", "Job has not started yet.")] * 8 + [Info("RUNNING")]
    >>> wait_while_pending(Client(seq), "job-1", first=2, every=4, sleep=lambda s: t.__setitem__(0, t[0] + s),
    ...                    clock=lambda: t[0])
    job job-1 is pending (2 s): Job has not started yet.
    job job-1 is pending (6 s): Job has not started yet.
    'RUNNING'
    """
    start = clock()
    said = None
    while True:
        try:
            info = client.get_job_info(job_id)
        except Exception as exc:  # noqa: BLE001 - the job server hiccuped: the log tail says what it can
            log(f"job {job_id}: could not read its status ({type(exc).__name__}: {exc}); following its logs")
            return "UNKNOWN"
        status = str(getattr(info, "status", ""))
        if not status.endswith("PENDING"):
            return status.rsplit(".", 1)[-1]
        waited = clock() - start
        if waited >= first and (said is None or clock() - said >= every):
            message = (getattr(info, "message", None) or "").strip() or "waiting for the cluster to start it"
            log(f"job {job_id} is pending ({waited:.0f} s): {message}")
            said = clock()
        sleep(1.0)


async def _follow(client, job_id: str) -> None:
    async for lines in client.tail_job_logs(job_id):
        sys.stdout.write(lines)
        sys.stdout.flush()


#: never uploaded with a job: version control, caches, and rayprune's own outputs (not a user's data files,
#: which may be Parquet or CSV: the job reads them from the uploaded working dir)
OUTPUT_EXCLUDES = [".git", "__pycache__", "*.whl", "runs", "candidates/", "candidates.parquet", "pareto.parquet",
                   "front_history.parquet"]


def upload_excludes(working_dir: Path, out: str) -> list[str]:
    """What the job's upload leaves out: :data:`OUTPUT_EXCLUDES`, ``out`` itself if it lies in ``working_dir``, and
    a ``rayprune`` package at its top (submitted from a checkout of rayprune: Ray puts the working dir first on the
    job's path, so the checkout's code would replace the rayprune installed on the cluster for that job alone, and a
    later resume could run another version).

    >>> upload_excludes(Path("/w"), "/w/results/sweep1")[-1], len(upload_excludes(Path("/w"), "/shared/x"))
    ('/results/sweep1', 8)
    """
    excludes = list(OUTPUT_EXCLUDES)
    if (working_dir / "rayprune" / "__init__.py").is_file():
        excludes.append("/rayprune")
    try:
        inside = Path(out).relative_to(working_dir)
    except ValueError:
        return excludes
    return [*excludes, f"/{inside.as_posix()}"]


def submit_sweep(address: str, config_path: Optional[str | Path], out: str, *, working_dir: str | Path = ".",
                 budgets: Sequence[str] = (), seeds: Optional[int] = None, max_concurrent_trials: Optional[int] = None,
                 agents: Optional[str] = None, evaluations: Optional[int] = None,
                 metadata: Optional[dict[str, str]] = None, follow: bool = True, log=print,
                 first_seed: Optional[int] = None) -> tuple[str, Optional[str]]:
    """Submit the sweep (``config_path`` None: continue the sweep in ``out``, ``rayprune sweep --resume``); returns
    ``(job_id, final status or None if not followed to the end)``."""
    from ._auth import use_cluster_token

    use_cluster_token()
    if not Path(out).is_absolute():
        raise UserError(f"--out {out!r} is relative: the job runs in a temporary copy of the working directory "
                        "that Ray deletes when the job ends, and the sweep's results would go with it. Give an "
                        f"absolute path on storage the cluster's nodes share (on a cluster on this machine: "
                        f"--out {Path(out).resolve()}).")
    working_dir = Path(working_dir).resolve()
    rel_config = None
    if config_path is not None:
        config_path = Path(config_path).resolve()
        try:
            rel_config = str(config_path.relative_to(working_dir))
        except ValueError:
            raise UserError(f"The config {config_path} must be inside the job's working directory {working_dir} "
                            "(it is uploaded with the job); pass --working-dir.") from None
    entrypoint = sweep_entrypoint(rel_config, out, budgets=budgets, seeds=seeds,
                                  max_concurrent_trials=max_concurrent_trials, agents=agents, evaluations=evaluations,
                                  first_seed=first_seed)
    client = _client(address)
    runtime_env: dict[str, Any] = {"working_dir": str(working_dir), "excludes": upload_excludes(working_dir, out),
                                   "env_vars": {SUBMITTED_FROM: address}}
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=dict(metadata or {}))
    log(f"submitted job {job_id} to {address}: {entrypoint}")
    if not follow:
        return job_id, None
    try:
        wait_while_pending(client, job_id, log)
        asyncio.run(_follow(client, job_id))
    except KeyboardInterrupt:
        log(f"\nstopped following job {job_id}; it keeps running. "
            f"`ray job status|logs|stop {job_id} --address {address}` (with RAY_AUTH_MODE=token) take over.\n")
        return job_id, None
    status = str(client.get_job_status(job_id))
    reason = ""
    if not status.endswith("SUCCEEDED"):  # e.g. a runtime env that failed to set up: its logs are empty
        info = client.get_job_info(job_id)
        message = getattr(info, "message", None)
        reason = f" ({message.strip()[:2000]})" if message and message.strip() else ""
        code = getattr(info, "driver_exit_code", None)
        if code is not None:  # the sweep's own exit status, which `rayprune submit` passes on
            reason += f" [driver exit code {code}]"
    log(f"job {job_id}: {status}{reason}")
    return job_id, status + reason


def _client(address: str):
    """Ray's job client for ``address``; one line naming the address when nothing answers there or the token is
    refused (Ray's own errors were a 91-line traceback)."""
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except ConnectionError as err:
        raise UserError(f"--address {address}: no Ray job server answers there ({_first_line(err)}). It is the "
                        "cluster's dashboard address, http://HEAD:8265 by default (`ray start --head "
                        "--dashboard-port`), reachable from here (an SSH tunnel or port-forward for a remote "
                        "cluster: docs/cluster.md).") from None
    except Exception as err:
        if "authentication" in type(err).__name__.lower() or "token" in str(err).lower():
            raise UserError(f"--address {address}: the job server refused this client's token ({_first_line(err)}). "
                            "Give the cluster's token as RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, with "
                            "RAY_AUTH_MODE=token (docs/cluster.md).") from None
        raise


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__
