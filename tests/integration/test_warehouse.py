"""The embedded warehouse as a user and a BI tool see it: TCP, password, restarts, errors."""

import os
import subprocess
import sys

import psycopg
import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.warehouse import (
    connect,
    ensure_bi_reader,
    ensure_database,
    mask_url,
    with_database,
)
from orchestration.warehouse import EmbeddedWarehouse, ensure_warehouse
from tests.integration.test_models_truth import INHERITED

pytestmark = pytest.mark.integration


@pytest.fixture()
def own_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.delenv("SITELINE_WAREHOUSE_PASSWORD", raising=False)
    # what an earlier in-process run set for dlt, dbt and Dagster names the session's
    # warehouse: a command this test runs must find its own
    for name in INHERITED:
        monkeypatch.delenv(name, raising=False)
    wh = EmbeddedWarehouse()
    yield wh
    wh.stop()


def test_tcp_password_auth_and_data_survives_restart(own_home):
    wh = own_home
    wh.start()
    url = wh.url("postgres")
    assert "@127.0.0.1:" in url
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("show listen_addresses").fetchone()[0] == "127.0.0.1"
        assert conn.execute("show password_encryption").fetchone()[0] == "scram-sha-256"
        conn.execute("create table kept (n int)")
        conn.execute("insert into kept values (42)")
    port = wh.port
    assert wh.stop() is True
    assert not wh.is_running()
    wh.start()
    assert wh.port == port  # chosen once, remembered
    with psycopg.connect(url) as conn:
        assert conn.execute("select n from kept").fetchone()[0] == 42


def test_data_checksums_follow_the_setting_at_start(own_home, monkeypatch):
    """Off by default (hint bits then write no WAL); SITELINE_WAREHOUSE_CHECKSUMS switches
    an existing cluster either way at its next start, keeping its data."""
    wh = own_home
    monkeypatch.delenv("SITELINE_WAREHOUSE_CHECKSUMS", raising=False)

    def checksums() -> str:
        with psycopg.connect(wh.url("postgres")) as conn:
            return conn.execute("show data_checksums").fetchone()[0]

    wh.start()
    assert checksums() == "off"
    with psycopg.connect(wh.url("postgres"), autocommit=True) as conn:
        conn.execute("create table kept as select generate_series(1, 1000) as n")
    for setting in ("on", "off"):
        wh.stop()
        monkeypatch.setenv("SITELINE_WAREHOUSE_CHECKSUMS", setting)
        wh.start()
        assert checksums() == setting
        assert wh.checksums_enabled() is (setting == "on")
        with psycopg.connect(wh.url("postgres")) as conn:
            assert conn.execute("select sum(n) from kept").fetchone()[0] == 500500
    wh.stop()
    monkeypatch.setenv("SITELINE_WAREHOUSE_CHECKSUMS", "yes")
    with pytest.raises(
        SitelineError, match="SITELINE_WAREHOUSE_CHECKSUMS='yes': Input should be 'on' or 'off'"
    ):
        wh.start()


def test_databases_compare_text_in_code_point_order(own_home):
    """The cluster and each database Siteline creates sort text by code point, compared
    byte by byte (builtin provider), not with a libc locale's strcoll."""
    wh = own_home
    wh.start()
    url = with_database(wh.url("postgres"), "coded")
    ensure_database(url)
    ensure_database(url)  # exists: used as it is
    for database in ("postgres", "coded"):
        with psycopg.connect(with_database(url, database)) as conn:
            provider, locale = conn.execute(
                "select datlocprovider, datlocale from pg_database "
                "where datname = current_database()"
            ).fetchone()
            assert (provider, locale) == ("b", "C.UTF-8")
            ordered = conn.execute(
                "select array_agg(w order by w) from unnest(array['b', 'B', 'a', 'é', 'Z']) as w"
            ).fetchone()[0]
            assert ordered == ["B", "Z", "a", "b", "é"]
            assert conn.execute("select upper('é'), lower('ÄSTRASSE')").fetchone() == (
                "É",
                "ästrasse",
            )


def test_wrong_password_is_one_clear_masked_line(own_home):
    wh = own_home
    wh.start()
    bad = wh.url("postgres", password="not-the-password")
    with pytest.raises(SitelineError) as exc:
        connect(bad)
    message = str(exc.value)
    assert "password authentication failed" in message
    assert "not-the-password" not in message and ":***@127.0.0.1" in message
    assert "check WAREHOUSE_URL" in message


def test_port_in_use_is_reported_with_the_fix(own_home, monkeypatch):
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        monkeypatch.setenv("SITELINE_WAREHOUSE_PORT", str(blocker.getsockname()[1]))
        with pytest.raises(
            SitelineError,
            match="is in use by another program; stop it, or set SITELINE_WAREHOUSE_PORT",
        ):
            own_home.start()


def test_cli_status_and_doctor_tell_the_truth_when_stopped(own_home):
    env = {**os.environ}
    siteline = [sys.executable, "-m", "orchestration.cli"]
    started = subprocess.run(
        [*siteline, "warehouse", "start"], env=env, capture_output=True, text=True
    )
    assert (
        started.returncode == 0
        and "warehouse running: postgresql://postgres:***@127.0.0.1:" in started.stdout
    )
    ok = subprocess.run([*siteline, "warehouse", "status"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "embedded warehouse up: PostgreSQL 18" in ok.stdout
    url = subprocess.run([*siteline, "warehouse", "url"], env=env, capture_output=True, text=True)
    with psycopg.connect(url.stdout.strip()) as conn:  # the printed DSN works from outside
        assert conn.execute("select current_database()").fetchone()[0] == "siteline"
    own_home.stop()
    down = subprocess.run(
        [*siteline, "warehouse", "status"], env=env, capture_output=True, text=True
    )
    assert down.returncode == 1
    assert (
        "embedded warehouse is not running — start it with `siteline warehouse start`"
        in down.stderr
    )
    doctor = subprocess.run([*siteline, "doctor"], env=env, capture_output=True, text=True)
    assert doctor.returncode == 1
    assert "FAIL warehouse (embedded): stopped — run `siteline warehouse start`" in doctor.stdout
    assert "Traceback" not in doctor.stderr


def test_invalid_sites_file_is_one_line_without_traceback(own_home, tmp_path):
    bad = tmp_path / "sites.yml"
    bad.write_text("sites:\n  - id: Shop\n    domains: [x.example]\n")
    env = {**os.environ, "SITELINE_SITES_FILE": str(bad)}
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert (
        "FAIL sites.yml: sites.yml: site 'Shop': id: must start with a lower-case letter"
        in result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_bi_reader_reads_the_marts_within_its_limits_and_nothing_more(own_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    url = ensure_warehouse()  # the embedded server, databases siteline and dagster
    ensure_database(with_database(url, "siteline_superset"))  # SUPERSET_METADATA_URL=warehouse
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema web")
        conn.execute("create table web.kpis (visits int)")
        conn.execute("insert into web.kpis values (7)")
    monkeypatch.setenv("SITELINE_BI_READER_STATEMENT_TIMEOUT", "300ms")
    monkeypatch.setenv("SITELINE_BI_READER_CONNECTION_LIMIT", "2")
    bi = ensure_bi_reader(url)
    with psycopg.connect(bi, autocommit=True) as conn:
        assert conn.execute("select visits from web.kpis").fetchone()[0] == 7
        assert conn.execute("show statement_timeout").fetchone()[0] == "300ms"
        with pytest.raises(psycopg.errors.QueryCanceled, match="statement timeout"):
            conn.execute("select pg_sleep(60)")
        with pytest.raises(
            psycopg.errors.InsufficientPrivilege,
            match="permission denied to create temporary tables in database",
        ):
            conn.execute("create temporary table scratch (n int)")
        for creates in (
            "select lo_create(0)",
            "select lo_creat(-1)",
            "select lo_from_bytea(0, 'x')",
        ):
            with pytest.raises(
                psycopg.errors.InsufficientPrivilege, match="permission denied for function lo_"
            ):
                conn.execute(creates)
        with (
            psycopg.connect(bi, autocommit=True),  # the second of two allowed connections
            pytest.raises(
                psycopg.OperationalError, match='too many connections for role "bi_reader"'
            ),
        ):
            psycopg.connect(bi)
    for other in ("postgres", "dagster", "siteline_superset"):
        with pytest.raises(
            psycopg.OperationalError, match=f'permission denied for database "{other}"'
        ):
            psycopg.connect(with_database(bi, other))
    # the defaults, set again at the next start; Siteline's own user keeps what it needs
    monkeypatch.delenv("SITELINE_BI_READER_STATEMENT_TIMEOUT")
    monkeypatch.delenv("SITELINE_BI_READER_CONNECTION_LIMIT")
    ensure_bi_reader(url)
    with psycopg.connect(url, autocommit=True) as conn:
        limit, config = conn.execute(
            "select rolconnlimit, rolconfig from pg_roles where rolname = 'bi_reader'"
        ).fetchone()
        assert (limit, config) == (20, ["statement_timeout=5min"])
        conn.execute("create temporary table scratch (n int)")
    with psycopg.connect(bi, autocommit=True) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "5min"


def test_bi_reader_reads_the_alerts_marts_and_none_of_the_alerts_tables(own_home, monkeypatch):
    """The alerts schema holds the evaluator's tables (the outbox's messages with their
    recipients, delivery errors quoting webhook URLs) and the dbt views over them: bi_reader
    reads the views, built before the role existed or rebuilt after, and no table; a grant
    given by hand to a table is taken back at the next run."""
    from tests.integration.alert_rows import (
        RECIPIENT,
        SERIES,
        WEBHOOK_TOKEN,
        build_alerts_marts,
        insert_alert_rows,
    )

    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    url = ensure_warehouse()
    with psycopg.connect(url, autocommit=True) as conn:
        insert_alert_rows(conn)
    build_alerts_marts()  # before the role exists
    with psycopg.connect(url) as conn:  # the data dictionary: every column described
        columns = conn.execute(
            "select table_name, column_name, col_description("
            "('alerts.' || table_name)::regclass, ordinal_position) "
            "from information_schema.columns where table_schema = 'alerts' "
            "and table_name in (select table_name from information_schema.views "
            "where table_schema = 'alerts')"
        ).fetchall()
    assert {table for table, _, _ in columns} == {
        "fct_alert_evaluations", "dim_alert_instances", "fct_alert_notifications",
    }  # fmt: skip
    assert [(t, c) for t, c, comment in columns if not comment] == []
    bi = ensure_bi_reader(url)
    tables = ("rule_versions", "instances", "evaluations", "transitions", "evaluation_runs",
              "notifications", "notification_items", "delivery_attempts", "silences")  # fmt: skip

    def bi_reader_sees() -> tuple[list, list, str]:
        with psycopg.connect(bi, autocommit=True) as conn:
            fired = conn.execute(
                "select site_id, period_start::date::text, value from alerts.fct_alert_evaluations "
                "where is_fired order by period_start"
            ).fetchall()
            firing = conn.execute(
                "select alert_series, times_fired from alerts.dim_alert_instances where is_firing"
            ).fetchall()
            notifications = str(
                conn.execute("select * from alerts.fct_alert_notifications").fetchall()
            )
            for table in tables:
                with pytest.raises(
                    psycopg.errors.InsufficientPrivilege,
                    match=f"permission denied for table {table}",
                ):
                    conn.execute(f"select * from alerts.{table}")
        return fired, firing, notifications

    fired, firing, notifications = bi_reader_sees()
    assert fired == [("demo", "2026-11-26", 500.0), ("demo", "2026-11-29", 500.0)]
    assert firing == [(SERIES, 2)]
    assert "'failed'" in notifications and "'sent'" in notifications
    assert RECIPIENT not in notifications and WEBHOOK_TOKEN not in notifications

    # dbt replaces the views (new objects): their post-hook grants them again
    build_alerts_marts("--full-refresh")
    assert bi_reader_sees() == (fired, firing, notifications)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("grant select on alerts.notification_items to bi_reader")  # by hand
    ensure_bi_reader(url)  # the next pipeline run
    assert bi_reader_sees() == (fired, firing, notifications)


def test_the_first_run_builds_the_alerts_marts_over_the_evaluators_tables(own_home, monkeypatch):
    """A fresh warehouse's first run builds the marts before any evaluation (which needs
    them): the alerts marts built then read the evaluator's tables, so what the evaluation
    writes next shows without another build."""
    from tests.integration.alert_rows import DAYS, insert_alert_rows

    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    url = ensure_warehouse()
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "run", "staging/stg_alerts__evaluations",
         "staging/stg_alerts__instances", "staging/stg_alerts__rule_versions",
         "staging/stg_alerts__transitions", "alerts/dim_alert_instances",
         "alerts/fct_alert_evaluations"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with psycopg.connect(url, autocommit=True) as conn:
        insert_alert_rows(conn)  # what the first evaluation writes
        assert conn.execute("select count(*) from alerts.fct_alert_evaluations").fetchone() == (
            2 * DAYS,
        )


def test_bi_reader_restrictions_siteline_may_not_apply_are_named(own_home, monkeypatch, capsys):
    """Your own server, where Siteline's user may create roles but owns nothing else: the
    role is made, and every restriction only an owner can apply is printed with its SQL."""
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    url = ensure_warehouse()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create role tenant login createrole password 'tenant-password'")
        conn.execute("grant create on database siteline to tenant")
    tenant = own_home.url("siteline", user="tenant", password="tenant-password")
    bi = ensure_bi_reader(tenant)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line]
    prefix = "warning: bi_reader at postgresql://tenant:***@127.0.0.1:"
    assert all(line.startswith(prefix) for line in warnings)
    assert [line.split(": ", 2)[2] for line in warnings] == [
        f"not permitted to run `{statement}`; ask the owner of the database (or a superuser) "
        "to run it"
        for statement in (
            'revoke temporary on database "siteline" from public',
            "revoke execute on function lo_creat(integer) from public",
            "revoke execute on function lo_create(oid) from public",
            "revoke execute on function lo_from_bytea(oid, bytea) from public",
            'revoke connect on database "dagster" from public',
            'revoke connect on database "postgres" from public',
        )
    ]
    with psycopg.connect(bi) as conn:
        assert conn.execute("show statement_timeout").fetchone()[0] == "5min"
    assert ensure_bi_reader(tenant) == bi  # and at every later run (an ALTER, not a CREATE)


def test_bi_reader_limits_from_the_environment_are_checked(own_home, monkeypatch):
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    url = ensure_warehouse()
    monkeypatch.setenv("SITELINE_BI_READER_CONNECTION_LIMIT", "many")
    with pytest.raises(
        SitelineError, match="SITELINE_BI_READER_CONNECTION_LIMIT='many': Input should be a valid"
    ):
        ensure_bi_reader(url)
    monkeypatch.delenv("SITELINE_BI_READER_CONNECTION_LIMIT")
    monkeypatch.setenv("SITELINE_BI_READER_STATEMENT_TIMEOUT", "soon")
    with pytest.raises(
        SitelineError,
        match=r"SITELINE_BI_READER_STATEMENT_TIMEOUT=soon: .*; use a PostgreSQL duration such as 5min",
    ):
        ensure_bi_reader(url)


def test_mask_url_hides_only_the_password():
    assert (
        mask_url("postgresql://bi:s3cr%40t@db:5432/siteline")
        == "postgresql://bi:***@db:5432/siteline"
    )
    assert mask_url("postgresql://db/siteline") == "postgresql://db/siteline"
