"""Results as data: shards, one schema whatever the status, dropping rows on restart, merging."""

import pandas as pd
import pyarrow.parquet as pq

from rayprune.results import CandidateWriter, drop_rows_after, merge_candidates, read_candidates


def ok_row(i, **extra):
    return {"candidate_id": f"c{i}", "status": "ok", "error": None, "accuracy": 0.5 + i / 100, "params": 100.0 + i,
            "keep_ratios": [0.5, 1.0], "keep_counts": [4, 8], "feasible": True, "iteration": 1, **extra}


def error_row(i, **extra):
    return {"candidate_id": f"e{i}", "status": "error", "error": "RuntimeError: user cost exploded", "accuracy": None,
            "params": None, "keep_ratios": [0.3, 0.3], "keep_counts": [2, 2], "feasible": False, "iteration": 1, **extra}


def test_error_rows_and_ok_rows_merge_into_one_file(tmp_path):
    """A flush of only error rows (costs and accuracy null) next to a flush of ok rows (error null):
    the merge failed with 'double vs string' before rows had one schema."""
    w = CandidateWriter(tmp_path, constants={"trial_id": "t"}, name="t", flush_every=100)
    w.extend([error_row(0), error_row(1)])
    w.flush()
    w.extend([ok_row(0), ok_row(1)])
    w.flush()
    # a row taken back from a DataFrame (pandas turns a missing error into NaN, a float)
    w.add(pd.DataFrame([ok_row(2)]).iloc[0].to_dict() | {"error": float("nan")})
    w.flush()
    schemas = [pq.read_schema(p) for p in sorted((tmp_path / "candidates").glob("*.parquet"))]
    assert schemas[0].field("error").type == schemas[1].field("error").type == schemas[2].field("error").type
    assert schemas[0].field("accuracy").type == schemas[1].field("accuracy").type
    assert merge_candidates(tmp_path) is not None
    rows = pd.read_parquet(tmp_path / "candidates.parquet")
    assert len(rows) == 5 and set(rows["status"]) == {"ok", "error"}
    assert rows.loc[rows["status"] == "error", "accuracy"].isna().all()


def test_every_row_gets_a_unique_id_and_the_constants(tmp_path):
    w = CandidateWriter(tmp_path, constants={"trial_id": "t", "seed": 3}, name="t", flush_every=2)
    for i in range(5):
        w.add(ok_row(i))
    w.flush()
    rows = read_candidates(tmp_path)
    assert len(rows) == 5 and rows["row_id"].is_unique and set(rows["seed"]) == {3}
    assert len(list((tmp_path / "candidates").glob("*.parquet"))) == 3  # flush_every=2: 2 + 2 + 1


def test_read_candidates_has_the_columns_of_candidates_parquet(tmp_path):
    """rayprune.prune's result.candidates (read from the shards) had 40 columns where candidates.parquet had 43: a
    column the docs list (export_path, found_for ...) was missing from the frame a Python user got (s33)."""
    w = CandidateWriter(tmp_path, constants={"trial_id": "t", "seed": 3}, name="t")
    w.extend([ok_row(i) for i in range(3)])
    w.flush()
    merge_candidates(tmp_path)
    frame = read_candidates(tmp_path)
    assert set(frame.columns) == set(pd.read_parquet(tmp_path / "candidates.parquet").columns)
    assert frame["export_path"].isna().all() and frame["found_for"].isna().all()


def test_a_batch_added_at_once_is_one_shard(tmp_path):
    w = CandidateWriter(tmp_path, name="t", flush_every=2)
    w.extend([ok_row(i) for i in range(5)])  # one search batch: one file, one fsync
    assert len(list((tmp_path / "candidates").glob("*.parquet"))) == 1
    assert len(read_candidates(tmp_path)) == 5 and w.rows_written == 5
    assert not [p for p in (tmp_path / "candidates").iterdir() if p.name.startswith(".")]  # no temp files left


def test_a_shard_written_twice_is_read_once(tmp_path):
    w = CandidateWriter(tmp_path, name="t")
    w.extend([ok_row(i) for i in range(3)])
    path = w.flush()
    copy = path.with_name("part-copy-00000.parquet")  # an at-least-once flush that landed twice
    copy.write_bytes(path.read_bytes())
    assert len(read_candidates(tmp_path)) == 3


def test_drop_rows_after_removes_only_that_trials_later_rows(tmp_path):
    a = CandidateWriter(tmp_path, constants={"trial_id": "a"}, name="a")
    b = CandidateWriter(tmp_path, constants={"trial_id": "b"}, name="b")
    for it in (1, 2, 3):
        a.extend([ok_row(i, iteration=it) for i in range(2)])
        a.flush()
        b.extend([ok_row(i, iteration=it) for i in range(2)])
        b.flush()
    assert drop_rows_after(tmp_path, "a", 1) == 4
    rows = read_candidates(tmp_path)
    assert sorted(rows[rows["trial_id"] == "a"]["iteration"]) == [1, 1]
    assert len(rows[rows["trial_id"] == "b"]) == 6  # the other trial is untouched
    assert drop_rows_after(tmp_path, "a", 0) == 2  # a restart without checkpoint drops all of its rows
    assert (read_candidates(tmp_path)["trial_id"] == "b").all()
    assert len(list((tmp_path / "candidates").glob("part-a-*.parquet"))) == 0  # emptied shards are removed


def test_a_trial_restarted_twice_loses_no_rows(tmp_path):
    """Tune restarts a trial before its first checkpoint (its two shards are dropped), the restart checkpoints after
    iteration 4, and a --resume restarts it from there: the third writer numbered its shards by their count (4)
    and renamed iterations 5-6 over the shards of iterations 3-4, which were lost in silence (an operator's
    SIGKILLs of a trial process, session 31)."""
    def attempt(iterations, restored_from=None):
        w = CandidateWriter(tmp_path, constants={"trial_id": "t"}, name="t")  # the trial's writer, then its restore
        if restored_from is not None:
            drop_rows_after(tmp_path, "t", restored_from)
        for it in iterations:
            w.extend([ok_row(i, iteration=it) for i in range(2)])
            w.flush()

    attempt([1, 2])
    attempt([1, 2, 3, 4], restored_from=0)  # restarted with no checkpoint
    attempt([5, 6], restored_from=4)  # resumed from the checkpoint after iteration 4
    rows = read_candidates(tmp_path)
    assert sorted(rows["iteration"]) == [it for it in range(1, 7) for _ in range(2)]  # each once, none lost


def test_two_live_writers_of_one_trial_keep_each_others_rows(tmp_path):
    """A zombie trial still writing beside its restart: both took the same shard numbers, and one renamed its
    batch over the other's (the review's reproduction: 1 row of 2 left)."""
    first = CandidateWriter(tmp_path, constants={"trial_id": "t"}, name="t")
    second = CandidateWriter(tmp_path, constants={"trial_id": "t"}, name="t")
    first.add(ok_row(0))
    second.add(ok_row(1))
    first.flush()
    second.flush()
    assert sorted(read_candidates(tmp_path)["candidate_id"]) == ["c0", "c1"]


def test_a_leftover_temp_file_is_ignored(tmp_path):
    w = CandidateWriter(tmp_path, name="t")
    w.add(ok_row(0))
    w.flush()
    (tmp_path / "candidates" / ".part-t-00001.parquet.1234.tmp").write_bytes(b"half a file")
    assert len(read_candidates(tmp_path)) == 1


def test_merge_keeps_the_shards(tmp_path):
    w = CandidateWriter(tmp_path, name="t")
    w.extend([ok_row(i) for i in range(2)])
    w.flush()
    merge_candidates(tmp_path)
    assert list((tmp_path / "candidates").glob("*.parquet"))  # the merged file is a convenience, shards stay


def test_a_merged_or_front_file_has_every_typed_column_whatever_the_run_exported():
    """A run without an exported model lacked found_for, export_path, source_trial and accuracy_final (the DuckDB query
    of docs/inspecting.md failed on it), seed was int64 in prune's file and double in a sweep's, and an all-null
    error column was written as double."""
    import numpy as np
    import pandas as pd

    from rayprune.results import ROW_TYPES, frame_table

    frame = pd.DataFrame({"candidate_id": ["a", "b"], "seed": [0.0, np.nan], "error": [np.nan, np.nan],
                          "accuracy": [0.5, 0.6], "params": [10.0, 20.0], "keep_ratios": [[0.5, 0.5], [1.0, 0.2]]})
    table = frame_table(frame)
    assert set(ROW_TYPES) <= set(table.column_names) and table.num_rows == 2
    for name, kind in ROW_TYPES.items():
        assert table.schema.field(name).type == kind, name
    assert table.column("seed").to_pylist() == [0, None] and table.column("error").to_pylist() == [None, None]
    assert table.column("found_for").null_count == 2 and table.column("keep_ratios").to_pylist()[1] == [1.0, 0.2]
    assert str(table.schema.field("params").type) == "double"  # a cost: inferred, as before
    assert frame_table(frame.iloc[:0]).num_rows == 0  # an empty front keeps the columns


def test_a_sweep_read_through_a_relative_directory_still_names_absolute_paths(tmp_path, monkeypatch):
    """relocated() built the path from the directory as given: rayprune.sweep(out="runs/s1") gave relative
    export_paths, which break once a notebook changes directory (review, s33)."""
    from rayprune.results import relocated

    (tmp_path / "s1" / "models" / "params=0.5").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    written = str(tmp_path / "s1" / "models" / "params=0.5")
    assert relocated(written, "s1") == written  # not moved: absolute, as written
    (tmp_path / "s1").rename(tmp_path / "s2")
    assert relocated(written, "s2") == str(tmp_path / "s2" / "models" / "params=0.5")
