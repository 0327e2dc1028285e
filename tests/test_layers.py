"""The layering of DESIGN.md, checked in fresh processes: the core never imports Ray; the config
layer imports neither torch nor what it configures."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rayprune"
CORE = ("models", "data", "pruning", "costs", "engine")


def modules_of(package: str) -> list[str]:
    folder = ROOT / package
    return [f"rayprune.{package}.{p.stem}" if p.stem != "__init__" else f"rayprune.{package}"
            for p in sorted(folder.glob("*.py"))]


def imported_after(modules: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return set(out.stdout.split())


def test_every_core_module_imports_without_ray():
    modules = [m for package in CORE for m in modules_of(package)]
    assert len(modules) > 25  # every file of the five core packages, not just their __init__
    loaded = imported_after(modules)
    assert not {m for m in loaded if m == "ray" or m.startswith("ray.")}
    assert "torchvision" not in loaded


@pytest.mark.parametrize("module", ["rayprune", "rayprune.config"])
def test_loading_a_config_imports_neither_torch_nor_ray(module):
    loaded = imported_after([module, "rayprune.costs.budget", "rayprune.errors"])
    assert not {"torch", "torch_pruning", "ray"} & loaded


def test_the_plain_agents_and_the_search_loop_import_without_ray():
    loaded = imported_after(["rayprune.agents", "rayprune.agents.baselines", "rayprune.agents.evolution",
                             "rayprune.search.loop", "rayprune.search.selection", "rayprune.evaluation.local"])
    assert "ray" not in loaded
