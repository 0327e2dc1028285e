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

import glob
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ._io import atomic_path

__all__ = ["exported_rows", "CandidateWriter", "write_parquet_atomic", "read_candidates", "merge_candidates", "drop_rows_after", "ROW_KEY",
           "ROW_TYPES", "failed_candidates", "frame_table", "relocated", "with_current_paths"]

#: Columns that identify a row; readers drop duplicates on them.
ROW_KEY = ("row_id",)


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike) -> Path:
    """Write ``table`` to ``path`` via a hidden temp file, fsync and ``os.replace`` (:mod:`rayprune._io`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


#: Arrow types of the columns every row has, whatever its status: an error row (costs and accuracy
#: null, ``error`` a string) and an ok row (``error`` null) give shards with one schema, so merging
#: never fails on "double vs string". Columns not named here (costs, user extras) are inferred, and
#: a column that is null in every row of a flush is written as float64 (costs are numbers).
ROW_TYPES: dict[str, pa.DataType] = {
    "row_id": pa.string(), "sweep_id": pa.string(), "trial_id": pa.string(), "trial_name": pa.string(),
    "agent": pa.string(), "stage": pa.string(), "level": pa.string(), "candidate_id": pa.string(),
    "status": pa.string(), "error": pa.string(), "score_kind": pa.string(), "score_key": pa.string(),
    "host": pa.string(), "node_id": pa.string(), "export_path": pa.string(), "source_trial": pa.string(),
    "found_for": pa.string(),
    "seed": pa.int64(), "iteration": pa.int64(), "finetune_iterations": pa.int64(), "evaluator": pa.int64(),
    "pid": pa.int64(),
    "accuracy": pa.float64(), "accuracy_final": pa.float64(),
    "timestamp": pa.float64(), "wall_start": pa.float64(), "wall_end": pa.float64(),
    "t_build_s": pa.float64(), "t_costs_s": pa.float64(), "t_bn_s": pa.float64(), "t_finetune_s": pa.float64(),
    "t_eval_s": pa.float64(), "t_total_s": pa.float64(),
    "feasible": pa.bool_(), "cached": pa.bool_(),
    "keep_ratios": pa.list_(pa.float64()), "keep_counts": pa.list_(pa.int64()),
}


def _column(name: str, values: list[Any]) -> pa.Array:
    known = ROW_TYPES.get(name)
    if known is not None:
        return pa.array(values, type=known, from_pandas=True)
    array = pa.array(values, from_pandas=True)
    if pa.types.is_null(array.type):
        return array.cast(pa.float64())
    if pa.types.is_large_string(array.type):
        return array.cast(pa.string())
    if pa.types.is_integer(array.type):
        return array.cast(pa.float64()) if name.startswith(("budget_", "limit_")) else array
    return array


def frame_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` (rows read back, a front) as an Arrow table with :data:`ROW_TYPES`' types and every one of those
    columns, null where the frame has none: a run without an exported model lacked ``found_for``, ``export_path`` ...
    (a documented query failed on the case that matters most), ``seed`` was int64 in one file and double in another,
    and an all-null ``error`` was written as double."""
    columns = {name: _column(name, [None if _missing(v) else v for v in frame[name].tolist()])
               for name in frame.columns}
    for name, kind in ROW_TYPES.items():
        if name not in columns:
            columns[name] = pa.nulls(len(frame), type=kind)
    return pa.table(columns)


def _missing(value: Any) -> bool:
    """A pandas missing value (NaN, None, NaT, pd.NA) of a scalar cell; lists and arrays are never missing."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    names = list(dict.fromkeys(k for row in rows for k in row))
    return pa.table({name: _column(name, [row.get(name) for row in rows]) for name in names})


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
        self._parts = _next_shard(self.directory, self.name)
        self.rows_written = 0

    def add(self, row: Mapping[str, Any]) -> None:
        self._append(row)
        if len(self._rows) >= self.flush_every:
            self.flush()

    def extend(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add ``rows`` as one shard: a search batch of 256 rows is one file (one fsync), not 16."""
        for row in rows:
            self._append(row)
        if len(self._rows) >= self.flush_every:
            self.flush()

    def _append(self, row: Mapping[str, Any]) -> None:
        row_id = f"{self.name}/{self._instance}/{self._seq}"
        self._seq += 1
        self._rows.append({**self.constants, **row, "row_id": row_id, "timestamp": time.time()})

    def flush(self) -> Optional[Path]:
        if not self._rows:
            return None
        # the writer's own id in the name too: two live writers of one trial (a zombie on a partitioned node beside
        # its restart) cannot rename over each other's shards
        path = self.directory / f"part-{self.name}-{self._parts:05d}-{self._instance}.parquet"
        try:
            write_parquet_atomic(_to_table(self._rows), path)
        except OSError as exc:  # a full disk, a lost mount: say where; the rows stay pending
            raise OSError(exc.errno, f"Could not write the candidate shard {path}: {exc.strerror or exc}. "
                                     f"Its {len(self._rows)} rows stay pending in this writer (a later flush "
                                     f"writes them); every shard written before is intact.") from exc
        self._parts += 1
        self.rows_written += len(self._rows)
        self._rows = []
        return path


def _next_shard(directory: Path, name: str) -> int:
    """The number of ``name``'s next shard in ``directory``: one past the highest there, never a number in use. (It
    was the count of shards: after a restart had dropped a trial's earliest shards, a later writer of the same trial
    renamed its batches over shards it still had, and rows scored before the checkpoint were lost in silence.)

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for i in (2, 3):
    ...     _ = (folder / f"part-random,seed=0-{i:05d}.parquet").write_bytes(b"")  # (before the writer's id was in it)
    >>> _ = (folder / "part-random,seed=0-00011-1a2b3c4d.parquet").write_bytes(b"")
    >>> _ = (folder / "part-random,seed=0-extra-00040.parquet").write_bytes(b"")  # another writer's name
    >>> _next_shard(folder, "random,seed=0"), _next_shard(folder, "crl,seed=0"), _next_shard(folder / "no", "x")
    (12, 0, 0)
    """
    if not directory.exists():
        return 0
    prefix = f"part-{name}-"
    tails = [p.stem[len(prefix):].split("-")[0] for p in directory.glob(f"{glob.escape(prefix)}*.parquet")]
    numbers = [int(t) for t in tails if t.isdigit()]
    return max(numbers) + 1 if numbers else 0


def exported_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of exported models (``stage == "final"``, ``status == "ok"``); a final fine-tune
    that failed has a ``final`` row with ``status == "error"`` and is not one of them."""
    from .names import STAGE_FINAL, STATUS_OK

    if rows.empty or "stage" not in rows.columns:
        return rows
    final = rows["stage"] == STAGE_FINAL
    return rows[final & (rows["status"] == STATUS_OK)] if "status" in rows.columns else rows[final]


def read_candidates(directory: str | os.PathLike) -> pd.DataFrame:
    """All candidate rows under ``directory/candidates/`` (deduplicated on :data:`ROW_KEY`), with every
    :data:`ROW_TYPES` column, as ``candidates.parquet`` has them (null where the run has no such value)."""
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
    missing = [name for name in ROW_TYPES if name not in frame.columns]  # as candidates.parquet has them: every
    frame = frame.assign(**{name: None for name in missing}) if missing else frame  # ROW_TYPES column, null if unset
    return frame.reset_index(drop=True)


def relocated(path: Optional[str], directory: str | os.PathLike) -> Optional[str]:
    """Where an ``export_path`` a run recorded (absolute) is in ``directory``, the run's directory as it is now
    (moved or copied: a copy's report names the copy's models): its part from the last ``models/`` on, under
    ``directory``, when that is there; else as recorded (None stays None).

    >>> import tempfile
    >>> moved = Path(tempfile.mkdtemp())
    >>> (moved / "models" / "params=0.5").mkdir(parents=True)
    >>> relocated("/old/place/sweep/models/params=0.5", moved) == str(moved.resolve() / "models" / "params=0.5")
    True
    >>> relocated("/old/place/sweep/models/gone", moved), relocated(None, moved), relocated("/x/best", moved)
    ('/old/place/sweep/models/gone', None, '/x/best')
    """
    if not isinstance(path, str):
        return path
    parts = Path(path).parts
    if "models" not in parts:
        return path
    here = Path(directory).resolve().joinpath(*parts[len(parts) - 1 - parts[::-1].index("models"):])  # absolute
    return str(here) if here.exists() else path


def with_current_paths(frame: pd.DataFrame, directory: str | os.PathLike) -> pd.DataFrame:
    """``frame`` with its ``export_path`` column :func:`relocated` to ``directory`` (a sweep read after it was
    moved or copied named its models where they were; ``rayprune report`` and the Python API showed or loaded
    nothing there)."""
    if frame.empty or "export_path" not in frame.columns:
        return frame
    return frame.assign(export_path=[relocated(p, directory) for p in frame["export_path"]])


def drop_rows_after(directory: str | os.PathLike, trial_id: str, iteration: int, *, stage: Optional[str] = None) -> int:
    """Remove ``trial_id``'s rows with ``iteration > iteration`` (of ``stage``, if given); returns how many.

    Used when a trial (re)starts from the checkpoint of ``iteration`` (0: no checkpoint, a fresh
    start): what it wrote after that checkpoint is produced again, so the earlier rows would be
    duplicates. Shards are rewritten atomically; a shard left with no rows is removed.
    """
    import pyarrow.compute as pc

    shards = Path(directory) / "candidates"
    removed = 0
    if not shards.is_dir():
        return 0
    for path in sorted(shards.glob("*.parquet")):
        table = pq.read_table(path)
        if "trial_id" not in table.column_names or "iteration" not in table.column_names:
            continue
        stale = pc.and_(pc.equal(table["trial_id"], trial_id), pc.greater(table["iteration"], iteration))
        if stage is not None and "stage" in table.column_names:
            stale = pc.and_(stale, pc.equal(table["stage"], stage))
        stale = pc.fill_null(stale, False)
        n = pc.sum(stale).as_py() or 0
        if not n:
            continue
        removed += int(n)
        keep = table.filter(pc.invert(stale))
        if keep.num_rows == 0:
            path.unlink()
        else:
            write_parquet_atomic(keep, path)
    return removed


def merge_candidates(directory: str | os.PathLike) -> Optional[Path]:
    """Write ``directory/candidates.parquet`` from the shards; returns its path (None if no rows).

    The shards stay where they are: the merged file is a convenience that can always be rebuilt,
    so a failed merge loses nothing (:func:`read_candidates` reads the shards)."""
    frame = read_candidates(directory)
    if frame.empty:
        return None
    return write_parquet_atomic(frame_table(frame), Path(directory) / "candidates.parquet")


def failed_candidates(search_rows: pd.DataFrame) -> Optional[dict[str, Any]]:
    """How many search candidates failed (``status == "error"``) and the most frequent first line of their
    errors (lines that differ only in their numbers — a parameter count, a size — count as one; the first such
    line is shown), with its count; None when none failed.

    >>> import pandas as pd
    >>> rows = pd.DataFrame({"status": ["ok", "error", "error", "error"],
    ...                      "error": [None, "ValueError: a\\ntrace", "ValueError: a\\nother", "KeyError: b"]})
    >>> failed_candidates(rows)
    {'count': 3, 'of': 4, 'message': 'ValueError: a', 'with_message': 2}
    >>> failed_candidates(pd.DataFrame({"status": ["error"] * 3, "error": ["no entry for 20784 params",
    ...                                  "no entry for 19000 params", "no entry for 2.5e4 params"]}))["with_message"]
    3
    """
    if search_rows.empty or "status" not in search_rows.columns:
        return None
    from .names import STATUS_ERROR

    bad = search_rows[search_rows["status"] == STATUS_ERROR]
    if bad.empty:
        return None
    firsts = bad["error"].fillna("(no message)").astype(str).str.strip().str.split("\n").str[0] \
        if "error" in bad.columns else pd.Series(["(no message)"] * len(bad))
    shapes = firsts.str.replace(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?", "#", regex=True)  # one error, other numbers
    counts = shapes.value_counts()
    return {"count": int(len(bad)), "of": int(len(search_rows)),
            "message": str(firsts[shapes == counts.index[0]].iloc[0]), "with_message": int(counts.iloc[0])}
