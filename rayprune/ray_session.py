"""Connecting a rayprune driver to Ray: the one place that decides which Ray a command runs on.

:func:`connect` picks, in this order:

1. the ``address`` it is given (``auto``, ``HOST:PORT``, ``ray://...``), from ``--address``;
2. the cluster named by ``RAY_ADDRESS``, which Ray's job server sets for every submitted job
   (``ray job submit``, ``rayprune submit``) — so a command run as a job joins the cluster it was
   submitted to instead of starting a private Ray beside it;
3. otherwise a *fresh* local instance (``ray.init(address="local")``), never a ``ray start``
   cluster that happens to run on the machine (which ``ray.init()`` with no address would join).

Joining a cluster presents its token (Ray >= 2.52 turns token authentication on by default):
:func:`rayprune._auth.use_cluster_token` sets ``RAY_AUTH_MODE=token`` when a token is at hand.
Ray reads that when it is imported, so the CLI calls it before anything imports Ray; here it is
called again for library callers that have not imported Ray yet.

Example::

    connect(args.address, metadata={"rayprune": "pretrain", "config": cfg.name})
    connect(num_cpus=2, include_dashboard=False)   # tests: a small private instance
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping

from rayprune._auth import token_available, use_cluster_token
from rayprune._logs import without_log_lines
from rayprune.errors import UserError

__all__ = ["connect"]

_STARTUP_TIMEOUT = "timed out during startup"  # Ray raises a bare Exception with this text
_sigterm_interrupts = False  # set by the command line (sigterm_interrupts): connect() keeps it after ray.init


def _interrupted_by_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt("stopped by SIGTERM")


def sigterm_interrupts() -> None:
    """From now on SIGTERM (what a CI scheduler or `kill` sends) interrupts this process as Ctrl-C does, so the
    command says what was kept and exits 130: Ray's ``ray.init`` makes it ``sys.exit(15)`` (exit 15, nothing said),
    before it the default ended the process (143), and mid-search the core worker aborted with a C++ stack dump
    (134). The command line calls it; :func:`connect` puts it back after ``ray.init``. A Python API user's own
    process keeps Ray's behaviour. Off the main thread, nothing changes."""
    global _sigterm_interrupts
    if threading.current_thread() is not threading.main_thread():
        return
    _sigterm_interrupts = True
    signal.signal(signal.SIGTERM, _interrupted_by_sigterm)


def connect(
    address: str | None = None,
    *,
    log: Callable[[str], None] = print,
    metadata: Mapping[str, object] | None = None,
    num_cpus: int | None = None,
    object_store_memory: int | None = None,
    include_dashboard: bool | None = None,
) -> None:
    """Connect this process to Ray (see the module docstring for which Ray); a no-op if it already is.

    ``metadata`` (config name, budgets, ...) becomes the Ray job's metadata, shown in the dashboard.
    ``num_cpus``, ``object_store_memory`` and ``include_dashboard`` shape a *local* instance and
    are ignored when joining a cluster, whose resources are the cluster's.
    """
    joining = bool(address or os.environ.get("RAY_ADDRESS"))
    if joining:
        use_cluster_token()  # effective only while Ray is not imported yet
    import ray
    from ray.job_config import JobConfig

    if ray.is_initialized():
        return
    job = JobConfig(metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    try:
        with _sigterm_in_ray_init_interrupts():
            _init(ray, job, address if joining else None, joining, log,
                  num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=include_dashboard)
    finally:  # Ray's own handler (exit 15) never outlives ray.init, an interrupted one too (a scheduler repeats TERM)
        if _sigterm_interrupts:
            sigterm_interrupts()


@contextlib.contextmanager
def _sigterm_in_ray_init_interrupts():
    """Where the command line turned SIGTERM into an interrupt (:func:`sigterm_interrupts`): a SIGTERM while Ray
    starts is one too. ``ray.init`` installs its own handler, ``sys.exit(15)``: the command ended with exit 15 and
    said nothing; now it says it was stopped and exits 130 as at any other moment."""
    try:
        yield
    except SystemExit as exc:
        if _sigterm_interrupts and exc.code == signal.SIGTERM:
            raise KeyboardInterrupt("stopped by SIGTERM while Ray started") from None
        raise


def _init(ray, job, address, joining: bool, log, **local_options) -> None:
    """``ray.init``: join a cluster (``address``, or ``RAY_ADDRESS``) or start a private local instance."""
    if joining:
        where = address or os.environ["RAY_ADDRESS"]
        _probe(where)
        try:  # RAY_ADDRESS (inside a Ray job, or set by the user): ray.init reads it
            ray.init(**({"address": address} if address else {}), log_to_driver=False, job_config=job)
        except ConnectionError as exc:
            raise UserError(_connect_advice(where, exc)) from None
        log(f"Connected to Ray at {where}: {ray.cluster_resources()}")
    else:
        local = {k: v for k, v in local_options.items() if v is not None}
        for attempt in (1, 2):  # on a loaded machine the raylet can miss its start-up deadline once
            try:
                with without_log_lines(_LOCAL_START_LINES):
                    ray.init(address="local", log_to_driver=False, job_config=job, **local)
                break
            except Exception as exc:
                if attempt == 2 or _STARTUP_TIMEOUT not in str(exc):
                    raise
                log(f"Ray did not start in time ({exc}); trying once more")
                ray.shutdown()
        log(f"Started a local Ray instance: {ray.cluster_resources()}")


#: Ray's own lines when it starts a private local instance, said again (without colour codes) by the line
#: "Started a local Ray instance: {resources}"; the token notice concerns a cluster that others join, not a private
#: instance of one command: logger name -> message fragment
_LOCAL_START_LINES = {"ray._private.authentication.authentication_token_setup": "Token authentication is enabled",
                      "ray._private.worker": "Started a local Ray instance."}


#: seconds a HOST:PORT address has to accept a TCP connection before the join is refused (Ray retried for minutes)
PROBE_S = 10.0


def _probe(where: str) -> None:
    """Refuse a ``HOST:PORT`` address where nothing accepts a connection, in one line and within :data:`PROBE_S`:
    Ray's own join retried for minutes without a word for a mistyped port. ``auto``, ``ray://`` and other forms are
    left to Ray.

    >>> _probe("auto"), _probe("ray://head:10001"), _probe("fe80::1"), _probe("local")
    (None, None, None, None)
    """
    import socket

    host, sep, port = where.rpartition(":")
    if not sep or not host or "/" in where or not port.isdigit() or (":" in host and not host.startswith("[")):
        return  # (a bare IPv6 address is Ray's to refuse: it cannot tell the port from the address)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
    except OSError as exc:
        raise UserError(f"Could not connect to the Ray cluster at {where}: nothing accepts a connection there "
                        f"({exc.strerror or exc}). A cluster's address is its head's GCS port, {host}:6379 by default "
                        "(`ray start --head --port`; `ray status` on the head prints it).") from None


def _connect_advice(where: str, exc: Exception) -> str:
    """One line for a cluster that could not be joined, with what usually causes it."""
    token = ("no token was at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token): a cluster started "
             "with `ray start --head` needs its token (cluster/local-cluster.sh env prints the exports)"
             if not token_available() else
             "if the cluster's log says InvalidAuthToken, the token at hand is not this cluster's (RAY_AUTH_TOKEN_PATH)")
    return (f"Could not connect to the Ray cluster at {where} ({(str(exc).strip().splitlines() or [type(exc).__name__])[0]}). Is it running "
            f"at that address (`ray status --address {where}`)? {token[0].upper() + token[1:]}.")
