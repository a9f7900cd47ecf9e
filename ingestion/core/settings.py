"""Every environment variable Siteline reads, in one typed object with its default and meaning.

``settings()`` reads the environment when called: a command or a service reads it once at
start and passes the values on; hot paths never call it per request. A value that does not
fit raises :class:`SitelineError` naming the variable, the value and what is allowed - when
it is read, so a bad variable stops only what uses it (a collector does not refuse to start
over the UI proxy's login limit). An empty variable counts as unset. Switches take 1/0,
true/false, yes/no or on/off.

Secrets (passwords, tokens, keys, URLs that may carry a password) are only ever read from the
environment, never from a file of the repository, and are left out of ``repr``.
``python -m ingestion.core.settings`` prints the table that ``docs/settings.md`` holds.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingestion.core.errors import SitelineError

PREFIX = "SITELINE_"


def _secret(description: str, **kwargs):
    return Field(None, description=description, repr=False, **kwargs)


class Settings(BaseSettings):
    """Siteline's settings; each field ``name`` is the variable ``SITELINE_NAME`` unless noted."""

    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
    )

    # -- data directory and configuration ------------------------------------------------------
    home: Path | None = Field(
        None, description="The data directory. Default: `.siteline` of the checkout."
    )
    sites_file: Path | None = Field(
        None, description="The site configuration. Default: `sites.yml` of the checkout."
    )
    landing_dir: Path | None = Field(
        None,
        description="Where the local collector lands events. Default: `$SITELINE_HOME/landing`.",
    )
    geoip_mmdb: Path | None = Field(
        None,
        description="A MaxMind/DB-IP country database (.mmdb) used instead of the built-in one.",
    )
    visitor_key: str | None = _secret(
        "Key of the hash of IP + user agent that identifies a device. Default: generated once."
    )

    # -- warehouse -------------------------------------------------------------------------------
    warehouse_url: str | None = _secret(
        "Any PostgreSQL >= 14 as the warehouse (variable `WAREHOUSE_URL`). Default: embedded.",
        validation_alias=AliasChoices("WAREHOUSE_URL"),
    )
    dagster_pg_url: str | None = _secret(
        "Dagster's run storage (variable `DAGSTER_PG_URL`). Default: database `dagster`.",
        validation_alias=AliasChoices("DAGSTER_PG_URL"),
    )
    warehouse_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="The embedded server's port. Default: chosen once and remembered.",
    )
    warehouse_password: str | None = _secret(
        "The embedded server's superuser password. Default: generated once and remembered."
    )
    warehouse_shared_buffers: str | None = Field(
        None,
        description="The embedded server's `shared_buffers`. Default: memory / 4, 256MB-8GB.",
    )
    warehouse_checksums: Literal["on", "off"] = Field(
        "off", description="Data page checksums of the embedded server."
    )
    bi_reader_password: str | None = _secret(
        "Password of the read-only role `bi_reader`. Default: generated once and remembered."
    )
    bi_reader_statement_timeout: str = Field(
        "5min", description="Longest statement `bi_reader` may run (a PostgreSQL duration)."
    )
    bi_reader_connection_limit: int = Field(
        20, ge=1, description="Most sessions `bi_reader` may hold at once."
    )

    # -- loading -------------------------------------------------------------------------------
    remote_landing_url: str | None = Field(
        None,
        description="A remote collector's landing export (`https://host/landing`) to load from.",
    )
    remote_landing_token: str | None = _secret("The bearer token of that export.")
    dlt_dir: str | None = Field(
        None, description="dlt's pipeline folder. Default: `$SITELINE_HOME/dlt`."
    )
    dlt_progress: bool = Field(False, description="Log dlt's progress.")
    logs_load_format: Literal["parquet", "csv", "insert_values"] = Field(
        "parquet", description="How parsed log lines reach PostgreSQL."
    )
    ssh_known_hosts: Path | None = Field(
        None, description="known_hosts file for SFTP pulls. Default: `~/.ssh/known_hosts`."
    )
    pull_retries: int = Field(4, ge=0, description="Retries of a failed logfile pull.")
    pull_backoff_seconds: float = Field(
        1.0, ge=0, description="First wait between pull retries (doubles)."
    )

    # -- models (dbt) --------------------------------------------------------------------------
    dbt_longest_path_first: bool = Field(
        True,
        description="`siteline-dbt` starts the ready node on the longest remaining path first "
        "(0: dbt's own order).",
    )

    # -- collector -----------------------------------------------------------------------------
    collector_port: int = Field(8000, ge=1, le=65535, description="The collector's port.")
    collector_id: str | None = Field(
        None, description="The collector's name in segment names. Default: `collector_<host name>`."
    )
    segment_max_seconds: float = Field(
        60, gt=0, description="A landing segment is closed after this many seconds."
    )
    segment_max_mb: float = Field(64, gt=0, description="... or this many MB.")
    landing_retention_days: float = Field(
        30, ge=0, description="Closed segments older than this are deleted (0 keeps all)."
    )
    rate_limit: float = Field(
        50, ge=0, description="Requests per second and client IP (0 turns the limit off)."
    )
    rate_burst: float = Field(200, gt=0, description="Burst of requests per client IP.")
    durable: bool = Field(True, description="Answer only once the events are on disk (fsync).")
    landing_token: str | None = _secret("Bearer token that opens the collector's landing export.")
    collector_noop: bool = Field(
        False, description="Serve `/noop` (an endpoint that lands nothing, for benchmarks)."
    )
    demo_page: bool = Field(False, description="Serve the demo shop page at `/demo`.")

    # -- real-time engine ----------------------------------------------------------------------
    engine: bool = Field(True, description="Run the real-time engine inside the collector.")
    engine_warehouse_url: str | None = _secret(
        "Where the engine reads customer state (`none`: nowhere). Default: as `bi_reader`."
    )
    engine_snapshot: Path | None = Field(
        None,
        description="The engine snapshot. Default: `$SITELINE_HOME/realtime/sessions-*.json`.",
    )
    engine_snapshot_seconds: float = Field(
        60, gt=0, description="Seconds between engine snapshots."
    )
    engine_backlog_mb: float = Field(
        64, gt=0, description="Most MiB of events queued for the engine."
    )
    engine_store: str = Field(
        "memory", description="Session store: `memory` or `redis://host:port/db`."
    )
    engine_max_sessions: int = Field(1_000_000, ge=1, description="Most live sessions in memory.")
    engine_window_weeks: int = Field(
        8, ge=1, le=53,
        description="Weeks of per-minute counters the engine keeps for real-time alert rules.",
    )  # fmt: skip
    event_bus: str = Field(
        "inprocess", description="Event bus: `inprocess` or `redis://host:port/db`."
    )
    customer_ttl: float = Field(
        300, ge=0, description="Seconds a visitor's customer state is cached."
    )

    # -- alerts ---------------------------------------------------------------------------------
    alerts_live_seconds: float = Field(
        10, ge=1, le=60, description="Seconds between evaluations of the real-time alert rules."
    )
    alerts_engine_url: str | None = Field(
        None,
        description="The real-time engine the live alert evaluator asks. Default: the "
        "collector on 127.0.0.1.",
    )

    # -- services and consoles -----------------------------------------------------------------
    dagster_port: int = Field(3000, ge=1, le=65535, description="The Dagster UI's port.")
    superset_port: int = Field(8088, ge=1, le=65535, description="Superset's port.")
    superset_venv: Path | None = Field(
        None, description="Superset's environment. Default: `.superset-venv`."
    )
    superset_warehouse_url: str | None = _secret(
        "The URL Superset's database connection uses. Default: the warehouse as `bi_reader`."
    )
    public_superset_url: str | None = Field(
        None,
        description="Superset's address in alert messages (their dashboard links). Default: "
        "`http://127.0.0.1:$SITELINE_SUPERSET_PORT`.",
    )
    mail_sink_port: int = Field(
        2525,
        ge=0,
        le=65535,
        description="Loopback port of the demo's mail sink (`siteline mail-sink`; `siteline up` "
        "runs it; mails land in `$SITELINE_HOME/mail`). 0: `siteline up` does not run it.",
    )
    ui_bind: str = Field(
        "127.0.0.1", description="Address the Dagster UI's login proxy listens on."
    )
    ui_hosts: str | None = Field(
        None, description="Extra host names the UI answers to (comma-separated)."
    )
    ui_password: str | None = _secret(
        "The UI login's password. Default: generated at the first `siteline up`."
    )
    ui_login_limit: int = Field(
        10, ge=1, description="Wrong UI logins per client per minute before 429."
    )
    up: bool = Field(
        False,
        description="Set by `siteline up` for its services (they leave the URLs to it).",
        json_schema_extra={"internal": True},
    )

    @field_validator("warehouse_checksums", mode="before")
    @classmethod
    def _on_or_off(cls, value):
        # `ON`, ` off ` were accepted before there was a settings object
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("dlt_progress", mode="before")
    @classmethod
    def _any_value_but_off(cls, value):
        # dlt's own spelling is SITELINE_DLT_PROGRESS=log: any value but a "no" turns it on
        if isinstance(value, str):
            return value.strip().lower() not in ("0", "false", "no", "off")
        return value


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return PREFIX + field.upper()


_ALIASES = ("WAREHOUSE_URL", "DAGSTER_PG_URL")
# What each kind of refusal should tell the operator to write instead.
_HINTS = {
    "bool_parsing": "use 1 or 0 (or true/false, yes/no, on/off)",
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "float_parsing": "use a number",
}


class CheckedSettings:
    """The settings, where a variable with a bad value raises when it is read.

    One bad variable then stops only the code that reads it, with the variable, the value
    and what is allowed; every other value is there as parsed."""

    __slots__ = ("_bad", "_good")

    def __init__(self, good: Settings, bad: dict[str, str]) -> None:
        self._good = good
        self._bad = bad

    def __getattr__(self, name: str):
        if name.startswith("_"):  # the slots themselves, before they are set (copy, pickle)
            raise AttributeError(name)
        problem = self._bad.get(name)
        if problem is not None:
            raise SitelineError(problem)
        return getattr(self._good, name)

    def problems(self) -> list[str]:
        """Every variable whose value does not fit, with what is allowed (``siteline doctor``)."""
        return list(self._bad.values())

    def __repr__(self) -> str:
        return repr(self._good)


_cache: tuple[tuple, CheckedSettings] | None = None


def _problem(field: str, error: dict) -> str:
    hint = _HINTS.get(error["type"])
    message = f"{env_name(field)}={error.get('input')!r}: {error['msg']}"
    return f"{message}; {hint}" if hint else message


def settings() -> Settings:
    """The settings as the environment has them now (a :class:`CheckedSettings`, read like
    :class:`Settings`: by attribute).

    Reading a variable whose value does not fit raises ``SitelineError`` (see
    :class:`CheckedSettings`). Built again only when a variable it reads changed (building
    costs milliseconds, looking at the environment microseconds)."""
    global _cache
    key = tuple(
        sorted(
            (name, value)
            for name, value in os.environ.items()
            if name.startswith(PREFIX) or name in _ALIASES
        )
    )
    if _cache is not None and _cache[0] == key:
        return _cache[1]  # type: ignore[return-value]
    bad: dict[str, str] = {}
    try:
        good = Settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = str(error["loc"][0]) if error["loc"] else ""
            field = _FIELD_OF.get(where, where)
            if field in Settings.model_fields:
                bad.setdefault(field, _problem(field, error))
            else:  # not one variable's fault (a rule over several): nothing to fall back to
                raise SitelineError(f"the settings: {error['msg']}") from None
        # the others as the environment has them, the bad ones at their defaults
        good = Settings(**{_init_key(field): Settings.model_fields[field].default for field in bad})
    checked = CheckedSettings(good, bad)
    _cache = (key, checked)
    return checked  # type: ignore[return-value]


def _init_key(field: str) -> str:
    alias = Settings.model_fields[field].validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else field


# A validation error's location -> the field (a field with an alias is named by the alias).
_FIELD_OF = {_init_key(field): field for field in Settings.model_fields}


def _shown(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f"`{int(value)}`"
    return f"`{value}`"


def markdown_table() -> str:
    """The table of every variable, its default and meaning (``docs/settings.md``)."""
    rows = ["| Variable | Default | Meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if (field.json_schema_extra or {}).get("internal"):
            continue
        rows.append(f"| `{env_name(name)}` | {_shown(field.default)} | {field.description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
