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


def pids_mentioning(text: str) -> list[int]:
    """Processes (not this one) whose command line contains ``text`` — a temp dir unique to a test,
    never a port number, which other processes' arguments can contain by chance."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if text in cmd and int(pid) != os.getpid():
            pids.append(int(pid))
    return pids
