"""``siteline doctor``'s checks: each returns a :class:`Check` saying what it found and, when
something is wrong, how to fix it. The CLI prints them; nothing here prints.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ingestion.core.errors import SitelineError

TABLES = ("raw_collector.events", "web.fct_page_views")


@dataclass(frozen=True)
class Check:
    """One finding. ``ok`` None: not a problem, only not there (a service that is not up)."""

    name: str
    ok: bool | None
    detail: str

    @property
    def problem(self) -> bool:
        return self.ok is False


def check_python(version: str | None = None) -> Check:
    """Siteline runs on Python 3.11 (``version``: this interpreter's, e.g. ``3.11.9``)."""
    version = version or sys.version.split()[0]
    return Check("python", version.split(".")[:2] == ["3", "11"], version)


def check_settings() -> Check:
    """Every ``SITELINE_*`` variable whose value does not fit (each stops what reads it)."""
    from ingestion.core.settings import settings

    problems = settings().problems()  # type: ignore[attr-defined]
    if problems:
        return Check("settings", False, "; ".join(problems))
    return Check("settings", True, "every SITELINE_* variable fits (docs/settings.md)")


def check_data_directory() -> Check:
    from ingestion.core.home import siteline_home

    return Check("data directory", True, str(siteline_home()))


def check_sites(path: Path | None = None) -> Check:
    """``sites.yml`` (or ``path``) loads: how many sites, else every problem it has."""
    from ingestion.core.sites import default_config_path, load_sites

    try:
        config = load_sites(path)
    except SitelineError as exc:
        return Check("sites.yml", False, str(exc))
    return Check("sites.yml", True, f"{path or default_config_path()}: {len(config.sites)} site(s)")


@dataclass(frozen=True)
class WarehouseStatus:
    """Whether the warehouse accepts connections (``siteline warehouse status`` prints it)."""

    external: bool  # the server of WAREHOUSE_URL, not the embedded one
    state: str  # "up", "not initialised", "stopped" (embedded only) or "unreachable"
    detail: str = ""  # up: "PostgreSQL <version> at <masked DSN>"; unreachable: why

    @property
    def up(self) -> bool:
        return self.state == "up"


def warehouse_status() -> WarehouseStatus:
    """The external warehouse (``WAREHOUSE_URL``) or the embedded one, which must be
    initialised and running, and whether it answers."""
    from ingestion.core.warehouse import is_external, mask_url, server_version, warehouse_url
    from orchestration.warehouse import EmbeddedWarehouse

    external = is_external()
    if not external:
        embedded = EmbeddedWarehouse()
        if not embedded.is_initialised():
            return WarehouseStatus(external, "not initialised")
        if not embedded.is_running():
            return WarehouseStatus(external, "stopped")
    try:
        url = warehouse_url()
        return WarehouseStatus(
            external, "up", f"PostgreSQL {server_version(url)} at {mask_url(url)}"
        )
    except SitelineError as exc:
        return WarehouseStatus(external, "unreachable", str(exc))


def check_warehouse(status: WarehouseStatus | None = None) -> Check:
    """The warehouse accepts connections (``status``: :func:`warehouse_status`'s finding)."""
    status = status or warehouse_status()
    name = "warehouse (WAREHOUSE_URL)" if status.external else "warehouse (embedded)"
    if status.state in ("not initialised", "stopped"):
        return Check(name, False, f"{status.state} — run `siteline warehouse start`")
    return Check(name, status.up, status.detail)


def check_dbt_project() -> Check:
    """The dbt project parses into a manifest (with the warehouse's settings)."""
    try:
        from orchestration.defs.models.project import ensure_manifest
        from orchestration.runtime import prepare

        prepare()  # dbt's profile reads the connection from the environment
        return Check("dbt project", True, f"manifest {ensure_manifest()}")
    except SitelineError as exc:
        return Check("dbt project", False, str(exc))


def check_dagster_storage() -> Check:
    """Dagster's run storage (``DAGSTER_PG_URL`` or the warehouse's ``dagster`` database)."""
    from ingestion.core.warehouse import connect, dagster_storage_url, mask_url

    try:
        with connect(dagster_storage_url()) as conn:
            conn.execute("select 1")
        return Check("dagster storage", True, mask_url(dagster_storage_url()))
    except SitelineError as exc:
        return Check("dagster storage", False, str(exc))


def table_rows(tables: tuple[str, ...], url: str | None = None) -> dict[str, int | None]:
    """How many rows each table has in the warehouse database (``url``); None: no such table."""
    from ingestion.core.warehouse import connect, warehouse_url

    rows: dict[str, int | None] = {}
    with connect(url or warehouse_url()) as conn:
        for table in tables:
            rows[table] = None
            if conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]:
                rows[table] = conn.execute(f"select count(*) from {table}").fetchone()[0]
    return rows


def check_tables(tables: tuple[str, ...] = TABLES) -> list[Check]:
    """Each table exists (with how many rows) in the warehouse database."""
    return [
        Check(table, True, f"{rows:,} rows")
        if rows is not None
        else Check(table, False, "missing — run `siteline run` (or `siteline demo`)")
        for table, rows in table_rows(tables).items()
    ]


def check_service(name: str, port: int) -> Check:
    """Whether a service answers on its loopback port (not running is not a problem)."""
    from orchestration.supervisor import listening

    if listening(port):
        return Check(name, True, f"http://127.0.0.1:{port}")
    return Check(name, None, "not running (`siteline up`)")


def run_checks() -> Iterator[Check]:
    """Every check, in the order ``siteline doctor`` prints them (as each finishes)."""
    from ingestion.core.settings import settings

    yield check_python()
    yield check_settings()
    yield check_data_directory()
    yield check_sites()
    warehouse = check_warehouse()
    yield warehouse
    yield check_dbt_project()
    if warehouse.ok:
        yield check_dagster_storage()
        yield from check_tables()
    config = settings()
    for name, port in (("dagster UI", "dagster_port"), ("collector", "collector_port"),
                       ("superset", "superset_port")):  # fmt: skip
        try:
            yield check_service(name, getattr(config, port))
        except SitelineError as exc:  # named by the settings check already
            yield Check(name, False, str(exc))
