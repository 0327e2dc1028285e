"""Process and port helpers for the tests that start Ray nodes of their own."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command_lines():
    """(pid, command line) of every other process."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if int(pid) != os.getpid():
            yield int(pid), cmd


def pids_mentioning(text: str) -> list[int]:
    """Processes (not this one) whose command line contains ``text`` — a temp dir unique to a test,
    never a port number, which other processes' arguments can contain by chance."""
    return [pid for pid, cmd in _command_lines() if text in cmd]


def pids_titled(prefix: str) -> list[int]:
    """Processes whose title (Ray renames its workers ``ray::Class.method``) starts with ``prefix``."""
    return [pid for pid, cmd in _command_lines() if cmd.startswith(prefix)]
