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
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "atomic_path", "atomic_torch_save", "atomic_write_bytes", "atomic_write_text",
           "replace_directory"]


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


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden staging folder to fill with ``path``'s new content; on a clean exit it takes ``path``'s place.

    A reader of ``path`` sees the old folder or the whole new one, never a mix of the two (a pruned
    model's new weights under its old spec). If filling fails, the staging folder is removed and
    ``path`` is left as it was. See :func:`replace_directory` for the swap.

    >>> import tempfile, pathlib
    >>> model = pathlib.Path(tempfile.mkdtemp()) / "best"
    >>> with atomic_directory(model) as tmp:
    ...     _ = (tmp / "spec.json").write_text("{}")
    >>> sorted(p.name for p in model.iterdir()), sorted(p.name for p in model.parent.iterdir())
    (['spec.json'], ['best'])
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(target)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    staging.mkdir()
    try:
        yield staging
        for item in staging.rglob("*"):
            if item.is_file():
                _fsync_file(item)
        _fsync_dir(staging)
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_directory(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Move the folder ``source`` to ``target``, replacing what ``target`` held, by two renames.

    ``target`` is first renamed to a hidden ``.NAME.<random>.old`` sibling, then ``source`` to
    ``target``, then the old folder is removed. A crash between the two renames leaves ``target``
    missing with both the old and the new folder whole under hidden names (:func:`stale_copies`
    names them); at no moment does ``target`` hold a part of either. Both must be on one file system.
    """
    source, target = Path(source), Path(target)
    old = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    if target.exists():
        os.rename(target, old)
    os.rename(source, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def stale_copies(path: str | os.PathLike) -> list[Path]:
    """Hidden staging (``.tmp``) and replaced (``.old``) folders of ``path`` left by a crash."""
    target = Path(path)
    if not target.parent.is_dir():
        return []
    return sorted(p for p in target.parent.glob(f".{target.name}.*") if p.is_dir() and p.suffix in (".tmp", ".old"))


def _remove_stale(target: Path) -> None:
    """Remove what a crashed earlier replacement of ``target`` left, once ``target`` itself is whole."""
    if target.exists():
        for stale in stale_copies(target):
            shutil.rmtree(stale, ignore_errors=True)
