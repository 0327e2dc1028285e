"""The base-model cache key follows what the config's names point at, not only the config's text."""

from __future__ import annotations

import json
import sys

import numpy as np

from rayprune.base_model import base_cache_key
from rayprune.config import parse_config


def _cfg(**data):
    return parse_config({"model": {"name": "mynets_cache_key:make"}, "data": data or {"name": "digits"}})


def test_editing_the_model_factorys_source_changes_the_key(tmp_path, monkeypatch):
    src = tmp_path / "mynets_cache_key.py"
    src.write_text("def make(**kw):\n    return None  # with a residual add\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mynets_cache_key", None)
    before = base_cache_key(_cfg())
    assert base_cache_key(_cfg()) == before  # stable while nothing changes
    src.write_text("def make(**kw):\n    return None  # without it\n")
    assert base_cache_key(_cfg()) != before


def test_replacing_the_data_file_or_a_folders_file_changes_the_key(tmp_path):
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 2)), y_train=np.zeros(4))
    before = base_cache_key(_cfg(name="npz", path=str(data)))
    np.savez(data, x_train=np.ones((4, 2)), y_train=np.zeros(4))  # same shapes and size, other values
    assert base_cache_key(_cfg(name="npz", path=str(data))) != before
    folder = tmp_path / "images"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "1.png").write_bytes(b"x")
    before = base_cache_key(_cfg(name="imagefolder", root=str(folder)))
    (folder / "a" / "2.png").write_bytes(b"y")
    assert base_cache_key(_cfg(name="imagefolder", root=str(folder))) != before


def test_a_large_data_file_keeps_its_key_when_only_its_modification_time_changes(tmp_path, monkeypatch):
    """Files over 64 MiB were keyed by size and mtime: Ray's unzip of a submitted job's working dir resets mtimes, so
    a sweep resumed after a cluster restart was refused as "the data changed". Now the whole contents, remembered by
    path, size and mtime (the threshold shrunk here so the test writes a few MB): an edit that keeps the size changes
    the key, wherever it is, and a file read once is not read again."""
    import os

    import rayprune.base_model as bm

    monkeypatch.setenv("RAYPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(bm, "_REMEMBER_BYTES", 2**20)
    data = tmp_path / "big.npz"
    np.savez(data, x_train=np.arange(400_000, dtype=np.float64).reshape(-1, 4), y_train=np.zeros(100_000))
    before = base_cache_key(_cfg(name="npz", path=str(data)))
    assert (tmp_path / "cache" / "digests.json").is_file()  # remembered
    os.utime(data, (1, 1))  # what an unzip or a copy does
    assert base_cache_key(_cfg(name="npz", path=str(data))) == before
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2 + 12345] ^= 0xFF  # one byte in the middle, the same size
    data.write_bytes(bytes(raw))
    os.utime(data, (2, 2))  # written: another mtime (set here: the file system's clock may be coarse)
    assert base_cache_key(_cfg(name="npz", path=str(data))) != before  # read whole again: the edit is seen
    assert len(json.loads((tmp_path / "cache" / "digests.json").read_text())) == 3
    calls = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: calls.append(str(p)) or real_open(p, *a, **k))
    again = base_cache_key(_cfg(name="npz", path=str(data)))
    assert str(data) not in calls  # remembered: not read again
    assert again == base_cache_key(_cfg(name="npz", path=str(data)))


def test_a_zoo_model_on_embedded_data_keeps_the_key_it_had():
    """Nothing to fingerprint: caches of zoo models on built-in data stay valid."""
    from rayprune.base_model import _sources

    assert _sources(parse_config({"model": {"name": "small_cnn"}, "data": {"name": "digits"}})) == {}


def test_editing_a_building_block_in_another_file_of_the_users_package_changes_the_key(tmp_path, monkeypatch):
    """The factory's own file did not change; the residual block it imports did (new-user pass, session 24)."""
    pkg = tmp_path / "ckpkg"
    (pkg / "parts").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "parts" / "__init__.py").write_text("from .blocks import Block\n")
    (pkg / "parts" / "blocks.py").write_text("class Block:\n    residual = True\n")
    (pkg / "nets.py").write_text("import torch\nfrom .parts import Block\nfrom ckpkg import helpers\n\n"
                                 "def make(**kw):\n    return None\n")
    (pkg / "helpers.py").write_text("WIDTH = 4\n")
    (pkg / "unrelated.py").write_text("x = 1\n")  # not imported by the factory's module
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = parse_config({"model": {"name": "ckpkg.nets:make"}, "data": {"name": "digits"}})
    before = base_cache_key(cfg)
    (pkg / "unrelated.py").write_text("x = 2\n")
    assert base_cache_key(cfg) == before  # only what the factory's module imports counts
    (pkg / "parts" / "blocks.py").write_text("class Block:\n    residual = False\n")
    after_block = base_cache_key(cfg)
    assert after_block != before
    (pkg / "helpers.py").write_text("WIDTH = 8\n")
    assert base_cache_key(cfg) != after_block

    from rayprune.base_model import _module_file, local_sources

    found = {p.relative_to(tmp_path).as_posix() for p in local_sources(_module_file("ckpkg.nets:make"), "ckpkg.nets")}
    assert found == {"ckpkg/nets.py", "ckpkg/__init__.py", "ckpkg/parts/__init__.py", "ckpkg/parts/blocks.py",
                     "ckpkg/helpers.py"}  # torch is not followed


def test_a_factory_from_an_installed_package_is_keyed_by_its_own_file_not_everything_it_imports():
    """Following torch's imports would hash hundreds of unrelated installed files (and retrain after any upgrade)."""
    from rayprune.base_model import _module_file, local_sources

    origin = _module_file("torch.nn.modules.linear:Linear")
    assert local_sources(origin, "torch.nn.modules.linear") == [origin]


def test_a_data_setting_added_later_keeps_the_keys_of_configs_that_leave_it_unset():
    """data.drop (session 30) defaulted to [] and entered every key: every cached base model would retrain, and
    every sweep started before it refused --resume ("the data changed"). The quickstart's key, pinned as it was
    before data.drop existed (torch 2.13, the README's pin)."""
    from pathlib import Path

    import pytest
    import torch

    from rayprune.config import load_config

    if not torch.__version__.startswith("2.13."):
        pytest.skip("the pinned key was computed with torch 2.13")
    quickstart = load_config(Path(__file__).parents[1] / "configs" / "quickstart.yaml")
    assert base_cache_key(quickstart) == "e4d8258617262564"
    assert base_cache_key(parse_config({})) == "dce110d4bd4fc55a"
    table = {"name": "tabular", "path": "/tmp/x.csv", "label": "y"}
    assert base_cache_key(parse_config({"data": {**table, "drop": ["id"]}})) != base_cache_key(
        parse_config({"data": table}))  # set, it counts
