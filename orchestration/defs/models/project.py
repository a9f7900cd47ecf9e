"""The dbt project, and keeping its manifest current for Dagster to read."""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

import yaml
from dagster_dbt import DbtProject

from ingestion.core.errors import SitelineError
from orchestration.dbt_paths import DBT_DIR, DBT_EXECUTABLE, cli_target_dir

__all__ = ["DBT_DIR", "DBT_EXECUTABLE", "cli_target_dir", "dbt_project", "ensure_manifest"]

dbt_project = DbtProject(project_dir=DBT_DIR, profiles_dir=DBT_DIR)


def _source_folders() -> list[str]:
    """The folders dbt parses, as dbt_project.yml names them (models, macros, seeds, tests)."""
    config = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())
    return [
        folder
        for key, default in [("model-paths", ["models"]), ("macro-paths", ["macros"]),
                             ("seed-paths", ["seeds"]), ("test-paths", ["tests"])]
        for folder in config.get(key, default)
    ]  # fmt: skip


def _newest_source_mtime() -> float:
    newest = (DBT_DIR / "dbt_project.yml").stat().st_mtime
    for folder in _source_folders():
        for path in (DBT_DIR / folder).rglob("*"):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    return newest


def ensure_manifest() -> Path:
    """Run ``dbt parse`` when the manifest is missing or older than the project's files.

    Dagster reads dbt's manifest when it loads the code location; parsing needs no database.
    """
    manifest = dbt_project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime():
        return manifest
    # One parse at a time: processes starting together (services, test workers) would
    # otherwise write the same manifest at once.
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest.parent / ".parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest.exists() and manifest.stat().st_mtime >= _newest_source_mtime():
            return manifest
        return _parse(manifest)


def _parse(manifest: Path) -> Path:
    result = subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            "--project-dir",
            str(DBT_DIR),
            "--profiles-dir",
            str(DBT_DIR),
        ],
        capture_output=True,
        text=True,
        cwd=DBT_DIR,
    )
    if result.returncode != 0 or not manifest.exists():
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise SitelineError(
            f"dbt parse failed in {DBT_DIR}: {detail[-1] if detail else 'no output'}"
        )
    return manifest
