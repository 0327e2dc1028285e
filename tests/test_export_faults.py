"""A pruned-model directory under faults: SIGKILL while it is being (re-)exported.

The promise (docs/reliability.md): a reader of ``models/<level>/`` or ``best/`` sees the previous
export or the new one, whole — never the new weights under the old spec (a re-export after
``--resume`` or a later run writes into the same place), never a folder without its spec.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from rayprune._io import atomic_directory, replace_directory
from rayprune.pruning import load_pruned

WRITER = textwrap.dedent("""
    import sys
    import torch
    from rayprune.models import load_model
    from rayprune.pruning import PruningSpace
    from rayprune.pruning.export import save_pruned

    arch = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "kwargs": {"width_mult": 0.5}}
    base = load_model(**arch)
    space = PruningSpace(base, torch.zeros(1, 1, 8, 8))
    models = []
    for keep in (0.5, 0.25):  # two different plans: the wrong spec with the other's weights fails to load
        small, plan = space.build([keep] * len(space.groups)), space.plan([keep] * len(space.groups))
        models.append((small, plan))
    i = 0
    while True:
        small, plan = models[i % 2]
        save_pruned(small, sys.argv[1], architecture=arch, plan=plan, input_shape=(1, 8, 8), extra={"export": i})
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.05, 0.5, 1.3])
def test_sigkill_during_a_re_export_leaves_the_old_or_the_new_model_whole(tmp_path, delay):
    out = tmp_path / "models" / "params=0.5"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline()  # one export done: the next ones replace it
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    model = load_pruned(out)  # whole: its spec and weights belong together
    widths = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10) and widths
    # nothing half-written is visible under the model's name; staging folders are hidden siblings
    assert all(p.name.startswith(".") or p.name == out.name for p in out.parent.iterdir())


def test_a_failed_export_leaves_the_previous_one_as_it_was(tmp_path):
    target = tmp_path / "best"
    with atomic_directory(target) as tmp:
        (tmp / "spec.json").write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_directory(target) as tmp:
        (tmp / "spec.json").write_text("new")
        1 / 0
    assert (target / "spec.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # the staging folder is gone


def test_a_crash_between_the_two_renames_is_named_when_loading(tmp_path, monkeypatch):
    target = tmp_path / "best"
    with atomic_directory(target) as tmp:
        (tmp / "spec.json").write_text("{}")
    new = tmp_path / "new"
    new.mkdir()
    real_rename = __import__("os").rename
    calls = []

    def crash_on_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the renames
        real_rename(src, dst)

    monkeypatch.setattr("rayprune._io.os.rename", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        replace_directory(new, target)
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError, match=r"interrupted between its two renames.*\.best\.\w+\.old"):
        load_pruned(target)
    # the next export into it clears what the crash left once it is whole again
    with atomic_directory(target) as tmp:
        (tmp / "spec.json").write_text("{}")
    with atomic_directory(target) as tmp:
        (tmp / "spec.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best", "new"]
