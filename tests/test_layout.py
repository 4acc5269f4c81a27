"""The dependency rules of the layout: flows -> tasks -> storage, the desk beside flows, nothing imports tests."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import tasks

REPO = Path(__file__).resolve().parents[1]


def _imports(folder: str) -> dict[str, set[str]]:
    """Top-level package of every module each file under `folder` imports (lazy imports included)."""
    found: dict[str, set[str]] = {}
    for path in (REPO / folder).rglob("*.py"):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


def test_stages_import_and_run_without_prefect() -> None:
    modules = [info.name for info in pkgutil.walk_packages(tasks.__path__, "tasks.")]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n    importlib.import_module(name)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'flows', 'review'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert loaded.stdout.strip() == "[]", loaded.stdout


def test_dependencies_point_one_way() -> None:
    rules = {
        "storage": {"tasks", "flows", "review", "prefect", "tests", "benchmarks"},
        "tasks": {"flows", "review", "prefect", "tests", "benchmarks"},
        "review": {"flows", "prefect", "tests", "benchmarks"},
        "flows": {"tests", "benchmarks"},
        "benchmarks": {"tests"},
        "testkit": {"tests", "benchmarks"},
    }
    broken = [
        f"{file} imports {sorted(names & forbidden)}"
        for folder, forbidden in rules.items()
        for file, names in _imports(folder).items()
        if names & forbidden
    ]
    assert not broken, broken


def test_every_stage_package_has_its_entry_point_and_parameters() -> None:
    for stage in ("ingest", "clean", "tokenize", "train", "generate", "review"):
        assert (REPO / "tasks" / stage / "stage.py").is_file(), stage
        assert (REPO / "tasks" / stage / "params.py").is_file(), stage
