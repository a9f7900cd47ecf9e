"""Test session: its own data directory, its own databases, a real PostgreSQL.

Uses ``TEST_WAREHOUSE_URL`` (any PostgreSQL >= 14 where the user may create databases) when
set, else starts an embedded warehouse under a temporary ``SITELINE_HOME``. Every test run
gets fresh databases (dropped at the end), and every component is pointed at them through
``WAREHOUSE_URL`` / ``DAGSTER_PG_URL`` before anything is imported that reads them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="siteline-test-"))
os.environ["SITELINE_HOME"] = str(_HOME)
os.environ["SITELINE_LANDING_DIR"] = str(_HOME / "landing")
os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # as the product sets it (runtime.py)
for var in (
    "WAREHOUSE_URL",
    "DAGSTER_PG_URL",
    "DAGSTER_HOME",
    "DESTINATION__POSTGRES__CREDENTIALS",
):
    os.environ.pop(var, None)


@pytest.fixture(scope="session")
def warehouse():
    """The DSN of this test run's own warehouse database (components use it too)."""
    from ingestion.core.warehouse import connect, ensure_database, with_database
    from orchestration.warehouse import EmbeddedWarehouse

    embedded = None
    base = os.environ.get("TEST_WAREHOUSE_URL")
    if not base:
        embedded = EmbeddedWarehouse()
        embedded.start()
        base = embedded.url("postgres")
    run = f"siteline_test_{secrets.token_hex(4)}"
    url, dagster_url = with_database(base, run), with_database(base, run + "_dagster")
    ensure_database(url)
    ensure_database(dagster_url)
    os.environ["WAREHOUSE_URL"] = url
    os.environ["DAGSTER_PG_URL"] = dagster_url
    yield url
    with connect(with_database(base, "postgres"), autocommit=True) as conn:
        for db in (run, run + "_dagster", run + "_superset"):
            conn.execute(f'drop database if exists "{db}" with (force)')
    if embedded is not None:
        embedded.stop()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) a skipped test is a failure: nothing may be silently left out."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which is not allowed: {report.longrepr}"
