"""Results as data: candidate rows written to Parquet atomically, one small file per flush.

A process killed while a ``pyarrow.parquet.ParquetWriter`` is open leaves a file without a
footer and loses every row in it, so rows are never appended to an open file. Each flush writes
``candidates/part-<writer>-<n>.parquet`` under a hidden temporary name, fsyncs it and renames it
into place; ``pyarrow.dataset`` ignores names starting with ``.`` or ``_``, so a leftover temp file
is harmless. Every row gets a ``row_id`` (writer name, writer instance, sequence number) when it is
added; :func:`merge_candidates` reads the shards, drops duplicate ``row_id`` (a flush written twice)
and writes ``candidates.parquet``. Rows are written by the driver side that asked for the
evaluation, never by the (retried, at-least-once) evaluator actors, so an actor retry cannot
duplicate a row; the same candidate asked for twice is two rows, the second with ``cached=True``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

__all__ = ["CandidateWriter", "write_parquet_atomic", "read_candidates", "merge_candidates", "drop_rows_after", "ROW_KEY"]

#: Columns that identify a row; readers drop duplicates on them.
ROW_KEY = ("row_id",)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` via a hidden temp file, fsync and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def _to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    frame = pd.DataFrame(list(rows))
    return pa.Table.from_pandas(frame, preserve_index=False)


class CandidateWriter:
    """Buffers candidate rows and flushes them as Parquet shards under ``directory/candidates/``.

    Every row gets the writer's ``constants`` (sweep id, trial id, seed, budgets ...) and a
    ``timestamp``. ``flush_every`` rows trigger a flush; :meth:`flush` forces one.
    """

    def __init__(self, directory: str | os.PathLike, *, constants: Optional[Mapping[str, Any]] = None,
                 flush_every: int = 16, name: Optional[str] = None) -> None:
        self.directory = Path(directory) / "candidates"
        self.constants = dict(constants or {})
        self.flush_every = max(1, int(flush_every))
        self.name = name or uuid.uuid4().hex[:8]
        self._rows: list[dict[str, Any]] = []
        self._instance = uuid.uuid4().hex[:8]
        self._seq = 0
        self._parts = len(list(self.directory.glob(f"part-{self.name}-*.parquet"))) if self.directory.exists() else 0
        self.rows_written = 0

    def add(self, row: Mapping[str, Any]) -> None:
        row_id = f"{self.name}/{self._instance}/{self._seq}"
        self._seq += 1
        self._rows.append({**self.constants, **row, "row_id": row_id, "timestamp": time.time()})
        if len(self._rows) >= self.flush_every:
            self.flush()

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        for row in rows:
            self.add(row)

    def flush(self) -> Optional[Path]:
        if not self._rows:
            return None
        path = self.directory / f"part-{self.name}-{self._parts:05d}.parquet"
        write_parquet_atomic(_to_table(self._rows), path)
        self._parts += 1
        self.rows_written += len(self._rows)
        self._rows = []
        return path


def read_candidates(directory: str | os.PathLike) -> pd.DataFrame:
    """All candidate rows under ``directory/candidates/`` (deduplicated on :data:`ROW_KEY`)."""
    shards = Path(directory) / "candidates"
    if not shards.is_dir() or not any(shards.glob("*.parquet")):
        return pd.DataFrame()
    files = sorted(str(p) for p in shards.glob("*.parquet"))
    # shards may disagree on types (a column all-null in one flush); unify them permissively
    schema = pa.unify_schemas([pq.read_schema(f) for f in files], promote_options="permissive")
    frame = ds.dataset(files, schema=schema, format="parquet").to_table().to_pandas()
    key = [k for k in ROW_KEY if k in frame.columns]
    if key:
        frame = frame.drop_duplicates(subset=key, keep="first")
    return frame.reset_index(drop=True)


def drop_rows_after(directory: str | os.PathLike, trial_id: str, iteration: int) -> int:
    """Remove ``trial_id``'s rows with ``iteration > iteration`` from the shards; returns how many.

    Used when a trial resumes from the checkpoint of ``iteration``: what it evaluated after that
    checkpoint is evaluated again, so the earlier rows would be duplicates.
    """
    shards = Path(directory) / "candidates"
    removed = 0
    if not shards.is_dir():
        return 0
    for path in sorted(shards.glob("*.parquet")):
        table = pq.read_table(path)
        if "trial_id" not in table.column_names or "iteration" not in table.column_names:
            continue
        frame = table.to_pandas()
        stale = (frame["trial_id"] == trial_id) & (frame["iteration"] > iteration)
        if not stale.any():
            continue
        removed += int(stale.sum())
        keep = frame[~stale]
        if keep.empty:
            path.unlink()
        else:
            write_parquet_atomic(pa.Table.from_pandas(keep, preserve_index=False), path)
    return removed


def merge_candidates(directory: str | os.PathLike) -> Optional[Path]:
    """Write ``directory/candidates.parquet`` from the shards; returns its path (None if no rows)."""
    frame = read_candidates(directory)
    if frame.empty:
        return None
    return write_parquet_atomic(pa.Table.from_pandas(frame, preserve_index=False), Path(directory) / "candidates.parquet")
