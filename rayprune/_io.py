"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every writer goes through :func:`atomic_path`: the data goes to a hidden temp name in the target's
folder (``.NAME.<random>.tmp``, so two writers of the same file never share a temp file), is
flushed to disk (``fsync``), and ``os.replace`` swaps it in — atomic on POSIX and Windows because
both names are on the same file system. The folder is then ``fsync``-ed where the platform allows,
so the rename itself survives a crash. If writing fails, the temp file is removed and the old
file is left as it was.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "spec.json"
    >>> atomic_write_text(path, '{"format": 1}')
    >>> path.read_text()
    '{"format": 1}'
    >>> with atomic_path(path) as tmp:          # any writer that takes a path
    ...     _ = tmp.write_text("{}")
    >>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
    ('{}', ['spec.json'])
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path to write ``path``'s new content to; on a clean exit it replaces ``path``.

    The folder must exist. The temp file is fsync-ed before the rename and the folder after it.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (UTF-8 unless ``encoding`` says otherwise)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch  # not at module level: writers of plain files need no torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable; skipped where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a directory
        pass
    finally:
        os.close(fd)
