"""The process environment every Siteline component runs in.

Connection details reach dlt, dbt and Dagster through environment variables, never files:
``DESTINATION__POSTGRES__CREDENTIALS`` for dlt, ``SITELINE_PG_*`` and
``DBT_ENV_SECRET_PG_PASSWORD`` for dbt's ``profiles.yml`` (dbt masks ``DBT_ENV_SECRET_*`` in
its logs), ``SITELINE_DAGSTER_PG_URL`` for the ``dagster.yaml`` written under
``$SITELINE_HOME/dagster``. Values already set by the operator win.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from ingestion.core.home import PROJECT_ROOT, ensure_home, landing_dir
from ingestion.core.settings import settings
from ingestion.core.warehouse import dagster_storage_url, warehouse_url

DAGSTER_YAML = """\
# Written by Siteline. Run, event-log and schedule storage live in the warehouse server;
# the URL (with its password) comes from the environment, never from this file.
storage:
  postgres:
    postgres_url:
      env: SITELINE_DAGSTER_PG_URL
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    max_concurrent_runs: 2
telemetry:
  enabled: false
"""


def configure_environment() -> dict[str, str]:
    """Set the variables dlt, dbt and Dagster read; returns the ones it set."""
    config = settings()
    home = ensure_home()
    url = warehouse_url()
    parts = urlsplit(url)
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster")
    dagster_home.mkdir(parents=True, exist_ok=True)
    yaml_path = dagster_home / "dagster.yaml"
    if not yaml_path.exists() or yaml_path.read_text() != DAGSTER_YAML:
        yaml_path.write_text(DAGSTER_YAML)
    wanted = {
        "SITELINE_HOME": str(home),  # sites.yml URLs may refer to ${SITELINE_HOME}
        "DAGSTER_HOME": str(dagster_home),
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; dagster-postgres needs psycopg2.
        "SITELINE_DAGSTER_PG_URL": dagster_storage_url().replace(
            "postgresql://", "postgresql+psycopg2://", 1
        ),
        "DESTINATION__POSTGRES__CREDENTIALS": url,
        "SITELINE_PG_HOST": parts.hostname or "127.0.0.1",
        "SITELINE_PG_PORT": str(parts.port or 5432),
        "SITELINE_PG_USER": unquote(parts.username or "postgres"),
        "SITELINE_PG_DBNAME": parts.path.lstrip("/") or "postgres",
        "DBT_ENV_SECRET_PG_PASSWORD": unquote(parts.password or ""),
        "DBT_PROFILES_DIR": str(PROJECT_ROOT / "dbt_project"),
        "SITELINE_DLT_DIR": str(home / "dlt"),
        # A remote collector's export (https://host/landing) instead of the local landing.
        "SOURCES__COLLECTOR_EVENTS__LANDING_DIR": config.remote_landing_url or str(landing_dir()),
        "RUNTIME__LOG_LEVEL": os.environ.get("RUNTIME__LOG_LEVEL", "WARNING"),
        # Load packages live seconds on local disk: gzip would cost more than it saves.
        "DATA_WRITER__DISABLE_COMPRESSION": "true",
        # Nothing of a finished load stays behind: its package files and the merge's copy in
        # the *_staging schemas (both several GB at millions of events) are deleted.
        "LOAD__DELETE_COMPLETED_JOBS": "true",
        "LOAD__TRUNCATE_STAGING_DATASET": "true",
        "DO_NOT_TRACK": "1",  # no usage telemetry from dbt/dlt/Dagster
        # dlt 1.31 ignores DO_NOT_TRACK: without this every pipeline run calls
        # telemetry.scalevector.ai (seen in the tests' logs on 2026-11-28)
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        # dbt's file log (dbt_project/logs/dbt.log) at info, not debug: debug writes every
        # statement's SQL, and the threads queue on its lock. The SQL each node ran is in
        # target/run; set it to debug to trace a run statement by statement.
        "DBT_LOG_LEVEL_FILE": os.environ.get("DBT_LOG_LEVEL_FILE", "info"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    if config.remote_landing_token:
        wanted["SOURCES__COLLECTOR_EVENTS__LANDING_TOKEN"] = config.remote_landing_token
    applied = {}
    for key, value in wanted.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied


_LEVELS = {"no": 0, "started": 1, "ready": 2}
_prepared: dict[tuple[str, str], int] = {}  # (warehouse DSN, data directory) -> level


def prepare(warehouse: Literal["no", "started", "ready"] = "no") -> str:
    """Make this process ready for a command; returns the warehouse DSN.

    ``warehouse``: ``"ready"`` - started if embedded and its databases created, also on an
    external server (:func:`ensure_warehouse`); ``"started"`` - the same for the embedded
    warehouse, an external one is used as it is (``siteline dbt``, ``psql``); ``"no"`` - not
    touched. Then :func:`configure_environment`. Done once per process, warehouse and data
    directory: a command that runs another (``demo`` runs the pipeline, then ``up``)
    prepares once.
    """
    from ingestion.core.warehouse import is_external
    from orchestration.warehouse import ensure_warehouse

    url = warehouse_url()
    where = (url, str(ensure_home()))
    if _prepared.get(where, -1) >= _LEVELS[warehouse]:
        return url
    if warehouse == "ready" or (warehouse == "started" and not is_external()):
        ensure_warehouse()
    configure_environment()
    _prepared[where] = _LEVELS[warehouse]
    return url
