"""The layers of the code hold, and the contract breaks when an import goes the wrong way.

The contracts are in pyproject.toml ([tool.importlinter]); ``make lint`` runs them too. The
breaking cases run import-linter on a copy of the three packages with one import added.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingestion", "realtime", "orchestration")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_its_layers() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # core imports nothing else of ours
        ("ingestion/core/home.py", "import ingestion.logfiles.parsers", "core < the rest"),
        ("ingestion/core/sites.py", "import orchestration.runtime", "ingestion < realtime"),
        # an import inside a function counts too
        (
            "ingestion/core/enrich.py",
            "def _late():\n    from realtime.engine import rules\n\n    return rules",
            "ingestion < realtime",
        ),
        # ingestion does not reach up
        ("ingestion/logfiles/pull.py", "import realtime.collector.schema", "ingestion < realtime"),
        # realtime and orchestration are independent of each other
        ("realtime/engine/bus.py", "import orchestration.supervisor", "ingestion < realtime"),
        ("orchestration/runtime.py", "import realtime.engine.state", "ingestion < realtime"),
        # the engine runs without the collector (another process reading the Redis bus)
        ("realtime/engine/bus.py", "import realtime.collector.service", "the engine runs"),
    ],
)
def test_a_reverse_import_breaks_the_contract(copy: Path, module: str, line: str, broken: str):
    path = copy / module
    path.write_text(path.read_text() + f"\n{line}  # added by the test\n")
    result = lint(copy)
    assert result.returncode == 1, result.stdout
    assert "Contracts: 2 kept, 1 broken." in result.stdout
    assert f"{broken}" in result.stdout.split("Broken contracts")[1]
    imported = line.split("import")[0].split()[-1] if line.startswith("def") else line.split()[-1]
    assert imported in result.stdout  # the report names the offending import


def test_a_new_ingestion_package_must_be_placed_in_a_layer(copy: Path) -> None:
    (copy / "ingestion" / "alerts").mkdir()
    (copy / "ingestion" / "alerts" / "__init__.py").write_text('"""Unplaced."""\n')
    result = lint(copy)
    assert result.returncode == 1, result.stdout
    assert "ingestion.alerts" in result.stdout.split("Broken contracts")[1]
