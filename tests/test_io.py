"""`rayprune._io`: atomic writes land whole, leave no temp file, and never damage the old file."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from rayprune import _io
from rayprune._io import atomic_path, atomic_torch_save, atomic_write_bytes, atomic_write_text


def listing(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_bytes_text_and_tensors_land_whole(tmp_path):
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01" * 1000)
    atomic_write_text(tmp_path / "b.json", '{"name": "größe"}')
    atomic_torch_save({"w": torch.arange(6.0)}, tmp_path / "c.pt")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01" * 1000
    assert (tmp_path / "b.json").read_text(encoding="utf-8") == '{"name": "größe"}'
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.arange(6.0))
    assert listing(tmp_path) == ["a.bin", "b.json", "c.pt"]  # no temp file left behind


def test_an_overwrite_replaces_the_whole_file(tmp_path):
    path = tmp_path / "spec.json"
    atomic_write_text(path, "x" * 10_000)
    atomic_write_text(path, "short")
    assert path.read_text() == "short" and listing(tmp_path) == ["spec.json"]


def test_a_failure_while_writing_leaves_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "model.pt"
    atomic_torch_save({"w": torch.ones(3)}, path)
    with pytest.raises(Exception):  # a lambda cannot be pickled: torch.save fails half-way
        atomic_torch_save({"w": torch.zeros(3), "f": lambda x: x}, path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(path) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.ones(3))
    assert listing(tmp_path) == ["model.pt"]


def test_a_failed_rename_removes_the_temp_file(tmp_path):
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # os.replace cannot put a file over a non-empty folder
    with pytest.raises(OSError):
        atomic_write_text(target, "text")
    assert listing(tmp_path) == ["taken"] and listing(target) == ["inside"]


def test_two_writers_of_one_file_never_share_a_temp_file(tmp_path):
    path = tmp_path / "cache.json"
    with atomic_path(path) as first, atomic_path(path) as second:
        assert first != second and first.parent == second.parent == tmp_path and first.name.startswith(".")
        first.write_text("first")
        second.write_text("second")
    assert path.read_text() == "first"  # the writer that finished last wins, whole
    assert listing(tmp_path) == ["cache.json"]


def test_the_file_and_its_folder_are_fsynced(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to name file descriptors")
    monkeypatch.setattr(_io.os, "fsync", fsync)
    atomic_write_text(tmp_path / "row.json", "{}")
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".row.json.")  # the temp file, before the rename
    assert synced[1] == str(tmp_path)  # the folder, after it


def test_save_pruned_leaves_no_temp_file_when_the_module_cannot_be_pickled(tmp_path):
    from rayprune.pruning import PruningPlan, read_spec, save_pruned

    class Unpicklable(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 2)
            self.act = lambda x: x  # pickling the whole module fails on this

        def forward(self, x):
            return self.act(self.fc(x))

    out = save_pruned(Unpicklable(), tmp_path / "m", architecture=None, plan=PruningPlan(), input_shape=(4,),
                      torchscript=False)
    onnx = ["model.onnx"] if read_spec(out)["files"]["onnx"] else []  # with the onnx extra
    assert listing(out) == sorted(["spec.json", "weights.pt", *onnx])
