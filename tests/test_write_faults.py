"""The candidate store's write path under faults: SIGKILL mid-flush and a full disk.

The promise (docs/reliability.md): a flushed shard is whole or absent, a reader never sees a part,
and rows whose flush failed stay pending and land with the next flush that succeeds.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from rayprune.results import CandidateWriter, read_candidates

ROWS_PER_FLUSH = 50

WRITER = textwrap.dedent(f"""
    import sys
    from rayprune.results import CandidateWriter
    w = CandidateWriter(sys.argv[1], constants={{"stage": "search", "trial_id": "t"}}, name="t", flush_every=10**6)
    i = 0
    while True:
        for _ in range({ROWS_PER_FLUSH}):
            w.add({{"candidate_id": f"c{{i}}", "keep_ratios": [0.5] * 64, "accuracy": 0.5, "status": "ok",
                   "error": None, "params": float(i)}})
            i += 1
        w.flush()
        print(i, flush=True)
""")


def test_sigkill_during_flushes_leaves_only_whole_shards(tmp_path):
    for trial, delay in enumerate((0.5, 1.1, 1.9)):
        out = tmp_path / f"run{trial}"
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline()  # at least one flush done, flushes now back to back
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        rows = read_candidates(out)  # never fails on a partial file
        shards = list((out / "candidates").glob("*.parquet"))
        assert len(rows) == ROWS_PER_FLUSH * len(shards) and len(rows) >= ROWS_PER_FLUSH
        assert rows["candidate_id"].is_unique and rows["row_id"].is_unique
        # what was acknowledged (printed after its flush) is on disk; a temp file may be left by the kill
        # but is never read
        assert all(p.name.startswith("part-") for p in shards)


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KiB tmpfs (needs root and mount; skipped where there is neither)."""
    mount = tmp_path / f"disk-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_flush_loses_nothing_flushed_and_the_pending_rows_land_later(tiny_disk):
    writer = CandidateWriter(tiny_disk, constants={"stage": "search", "trial_id": "t"}, name="t", flush_every=10**6)
    filler = tiny_disk / "filler.bin"
    with open(filler, "wb") as fh:  # leave room for a few shards only
        fh.write(b"\0" * (200 * 1024))
    flushed, i = 0, 0
    with pytest.raises(OSError) as info:
        while True:
            for _ in range(ROWS_PER_FLUSH):
                writer.add({"candidate_id": f"c{i}", "keep_ratios": [0.5] * 64, "accuracy": 0.5, "status": "ok",
                            "error": None, "params": float(i)})
                i += 1
            writer.flush()
            flushed = i
    assert info.value.errno == errno.ENOSPC and str(tiny_disk) in str(info.value)  # names the place
    assert f"{ROWS_PER_FLUSH} rows" in str(info.value)  # and what is pending
    assert not [p for p in (tiny_disk / "candidates").iterdir() if p.suffix == ".tmp"]  # no partial file left
    assert len(read_candidates(tiny_disk)) == flushed  # every acknowledged row is readable
    filler.unlink()  # space again: the rows of the failed flush were kept and land now
    writer.flush()
    rows = read_candidates(tiny_disk)
    assert len(rows) == i and rows["candidate_id"].is_unique
