"""What Siteline writes is for its own user only: files 0600, folders 0700. The data holds
visitor and user ids (landing, engine snapshot), password hashes and secrets. (Superset's
metadata database: tests/integration/test_superset.py.)"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import free_port, start_collector, stop

pytestmark = pytest.mark.integration
ROOT = os.geteuid() == 0


def modes(root: Path) -> dict[str, str]:
    """Every folder and file under ``root`` (itself included) with its permission bits."""
    found = {".": oct(stat.S_IMODE(root.stat().st_mode))}
    for path in sorted(root.rglob("*")):
        found[str(path.relative_to(root))] = oct(stat.S_IMODE(path.lstat().st_mode))
    return found


def expected_modes(home: Path, found: dict[str, str]) -> dict[str, str]:
    """0700 and 0600; under root the embedded server runs as its own user, which must pass
    through the folders above its cluster (execute only)."""
    passed = {".", "warehouse"} if ROOT else set()
    return {
        path: ("0o701" if path in passed else "0o700") if (home / path).is_dir() else "0o600"
        for path in found
    }


def siteline(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestration.cli", *args],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture()
def home_env(tmp_path):
    """A data directory of its own, with the embedded warehouse and a local landing."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "SITELINE_HOME": str(home),
        "SITELINE_LANDING_DIR": str(home / "landing"),
        "SITELINE_SEGMENT_MAX_SECONDS": "1",
        "SITELINE_COLLECTOR_ID": "modes",
        "SITELINE_ENGINE_WAREHOUSE_URL": "none",
        "SITELINE_RATE_LIMIT": "0",
    }
    for name in ("WAREHOUSE_URL", "DAGSTER_PG_URL", "SITELINE_WAREHOUSE_PORT"):
        env.pop(name, None)
    yield home, env
    siteline(env, "warehouse", "stop")


def test_the_warehouse_and_the_collector_write_private_files(home_env):
    home, env = home_env
    started = siteline(env, "warehouse", "start")
    assert started.returncode == 0, started.stderr
    port = free_port()
    proc = start_collector(port, env)
    try:
        now = datetime.now(UTC).isoformat()
        event = {"event_id": str(uuid.uuid4()), "type": "page_view", "occurred_at": now,
                 "visitor_id": "visitor-1", "session_id": "session-1",
                 "url": "https://shop.siteline.test/p/1"}  # fmt: skip
        response = httpx.post(
            f"http://127.0.0.1:{port}/collect",
            json={"site_id": "demo", "sent_at": now, "events": [event]},
            headers={"user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0"},
        )
        assert response.json() == {"accepted": 1, "rejected": 0}
    finally:
        stop(proc)  # SIGTERM: the open segments are closed and listed, the snapshot written
    found = modes(home)
    for path in ("landing/events/manifest.json", "realtime/sessions-modes.json",
                 "warehouse/state.json", "warehouse/pgdata/PG_VERSION"):  # fmt: skip
        assert path in found
    assert any(p.startswith("landing/events/segments/") and p.endswith(".jsonl") for p in found)
    assert found == expected_modes(home, found)


def test_data_written_before_is_tightened_once(home_env):
    home, env = home_env
    old = {
        "landing/events/segments/20250101T000000-a.jsonl": "{}\n",
        "landing/events/manifest.json": "{}",
        "realtime/sessions-old.json": "{}",
        "superset/superset.db": "",
    }
    for name, text in old.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert siteline(env, "--help").returncode == 0  # any command
    found = modes(home)
    assert found == expected_modes(home, found)
    assert ".private" in found
    # Once: a file made readable afterwards on purpose stays as it is.
    (home / "realtime/sessions-old.json").chmod(0o644)
    assert siteline(env, "--help").returncode == 0
    assert modes(home)["realtime/sessions-old.json"] == "0o644"
