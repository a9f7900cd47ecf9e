"""The warehouse client: which PostgreSQL every component talks to, how to connect, its roles.

``WAREHOUSE_URL`` names any server (PostgreSQL >= 14); unset, it is the embedded server, whose
port and superuser password are chosen once and remembered under ``$SITELINE_HOME/warehouse``
(:class:`EmbeddedAddress`). Running that server is ``orchestration.warehouse``'s job; this
module only resolves, connects and manages the read-only ``bi_reader`` role, so the collector,
the engine and the loaders use it without the server's lifecycle.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ingestion.core.errors import SitelineError
from ingestion.core.home import remembered_secret, siteline_home
from ingestion.core.settings import settings

WAREHOUSE_DB = "siteline"
DAGSTER_DB = "dagster"
SUPERUSER = "postgres"


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    userinfo = netloc[0].split(":", 1)[0] + ":***"
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{netloc[1]}"))


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedAddress:
    """Where the embedded server listens and with which password: remembered, not running."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or siteline_home()) / "warehouse"
        self.pgdata = self.home / "pgdata"
        self.state_file = self.home / "state.json"
        self.logfile = self.pgdata / "server.log"

    # -- remembered settings ---------------------------------------------------------
    @property
    def password(self) -> str:
        return settings().warehouse_password or remembered_secret("warehouse-superuser")

    def _state(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    @property
    def port(self) -> int:
        if settings().warehouse_port:
            return settings().warehouse_port
        state = self._state()
        if "port" not in state:
            state["port"] = _free_port()
            self.home.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(state))
        return int(state["port"])

    def url(self, database: str = WAREHOUSE_DB, user: str = SUPERUSER, password: str = "") -> str:
        password = password or self.password
        return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"


# -- resolution used by every component ----------------------------------------------


def is_external() -> bool:
    return bool(settings().warehouse_url)


def warehouse_url(database: str | None = None) -> str:
    """The DSN of the warehouse database every component uses.

    ``WAREHOUSE_URL`` when set (any PostgreSQL >= 14), otherwise the embedded server.
    """
    external = settings().warehouse_url
    if external:
        return with_database(external, database) if database else external
    return EmbeddedAddress().url(database or WAREHOUSE_DB)


def dagster_storage_url() -> str:
    """Dagster's run/event/schedule storage: ``DAGSTER_PG_URL`` or a ``dagster`` database."""
    return settings().dagster_pg_url or warehouse_url(DAGSTER_DB)


def connect(url: str, **kwargs):
    """A psycopg connection, with a one-line error naming the problem and the fix."""
    import psycopg

    try:
        return psycopg.connect(url, connect_timeout=5, **kwargs)
    except psycopg.OperationalError as exc:
        raise SitelineError(explain_connection_error(url, exc)) from exc


def explain_connection_error(url: str, exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    masked = mask_url(url)
    low = str(exc).lower()
    if "password authentication failed" in low:
        hint = "wrong user or password; check WAREHOUSE_URL (or SITELINE_WAREHOUSE_PASSWORD)"
    elif "connection refused" in low or "could not connect" in low or "timeout" in low:
        hint = (
            "is the server running? For the embedded warehouse run `siteline warehouse start`; "
            "otherwise check WAREHOUSE_URL"
        )
    elif "does not exist" in low:
        hint = "create the database, or point WAREHOUSE_URL at an existing one"
    else:
        hint = "check WAREHOUSE_URL and that the server accepts connections"
    return f"cannot connect to the warehouse at {masked}: {text} — {hint}"


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist (needs CREATEDB).

    It is created with code-point collation (PostgreSQL's builtin C.UTF-8 provider from 17,
    else ``LC_COLLATE C``): text is compared byte by byte, so the models' sorts by device,
    visit and event id and their indexes on them run much faster than under a libc locale
    (PostgreSQL compares those with strcoll, without abbreviated keys). Text sorts
    in code-point order, as in most warehouses. A database that exists is used as it is.
    """
    dbname = urlsplit(url).path.lstrip("/") or "postgres"
    admin = with_database(url, "postgres")
    with connect(admin, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (dbname,)).fetchone()
        if not exists:
            from psycopg import sql

            name = sql.Identifier(dbname)
            if conn.info.server_version >= 170000:
                collated = "create database {} template template0 encoding 'UTF8' "
                collated += "locale_provider builtin builtin_locale 'C.UTF-8'"
            else:
                collated = "create database {} template template0 encoding 'UTF8' lc_collate 'C'"
            for statement in (collated, "create database {}"):
                try:
                    conn.execute(sql.SQL(statement).format(name))  # type: ignore[arg-type]
                    break
                except Exception:  # raced with another creator, or options not allowed
                    if conn.execute(
                        "select 1 from pg_database where datname = %s", (dbname,)
                    ).fetchone():
                        break


def server_version(url: str) -> str:
    with connect(url) as conn:
        return conn.execute("show server_version").fetchone()[0]


BI_ROLE = "bi_reader"
BI_SCHEMAS = ("web", "crm")
# The alerts schema holds the evaluator's and the outbox's tables (messages with their
# recipients, delivery errors quoting endpoints) and, beside them, the alerts marts: the
# views dbt builds over those tables. bi_reader reads the views and no table there.
ALERTS_SCHEMA = "alerts"
# Functions that create a large object. Large objects live outside every schema and need no
# privilege to create (lo_compat_privileges only relaxes reading and writing them), so the
# one way to stop a role creating them is the EXECUTE privilege on these functions (the
# client-side lo_creat / lo_import call them too, through the fast-path interface, which
# checks it). The server-side lo_import is superuser-only already.
LARGE_OBJECT_CREATORS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)")


def bi_reader_password() -> str:
    """``SITELINE_BI_READER_PASSWORD``, else generated once and remembered (mode 0600)."""
    return settings().bi_reader_password or remembered_secret("bi-reader-password")


def bi_reader_statement_timeout() -> str:
    """``SITELINE_BI_READER_STATEMENT_TIMEOUT`` (a PostgreSQL duration), default ``5min``."""
    return settings().bi_reader_statement_timeout.strip() or "5min"


def bi_reader_connection_limit() -> int:
    """``SITELINE_BI_READER_CONNECTION_LIMIT``, default 20: the most sessions bi_reader may
    hold at once, so BI tools cannot use up the server's ``max_connections``."""
    return settings().bi_reader_connection_limit


def bi_reader_url(url: str | None = None) -> str:
    """The DSN a BI tool uses: the warehouse database as the read-only ``bi_reader``."""
    parts = urlsplit(url or warehouse_url())
    host = parts.hostname or "127.0.0.1"
    netloc = f"{BI_ROLE}:{quote(bi_reader_password(), safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def _other_siteline_databases(url: str) -> list[str]:
    """The databases on the warehouse's server that bi_reader must not connect to: the
    server's ``postgres`` database, Dagster's storage and Superset's metadata database (when
    they are on the same server)."""
    parts = urlsplit(url)
    dbname = parts.path.lstrip("/") or "postgres"
    names = ["postgres", f"{dbname}_superset"]
    dagster = urlsplit(dagster_storage_url())
    if (dagster.hostname, dagster.port) == (parts.hostname, parts.port):
        names.append(dagster.path.lstrip("/"))
    return [name for name in dict.fromkeys(names) if name and name != dbname]


def _grant_alerts_marts(conn, role) -> None:
    """bi_reader may read the views of the alerts schema (the alerts marts) and none of its
    tables: no default privileges there (they would cover the evaluator's tables too); each
    view dbt creates later is granted by its post-hook (macros/grant_to_bi_reader.sql). In
    one transaction, so a grant given by hand to a table is taken back without a moment
    where the views are unreadable."""
    from psycopg import sql

    schema = sql.Identifier(ALERTS_SCHEMA)
    with conn.transaction():
        conn.execute(sql.SQL("create schema if not exists {}").format(schema))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(schema, role))
        conn.execute(sql.SQL("revoke all on all tables in schema {} from {}").format(schema, role))
        views = conn.execute(
            "select c.relname from pg_class as c "
            "join pg_namespace as n on n.oid = c.relnamespace "
            "where n.nspname = %s and c.relkind = 'v' order by c.relname",
            (ALERTS_SCHEMA,),
        ).fetchall()
        for (view,) in views:
            conn.execute(
                sql.SQL("grant select on {}.{} to {}").format(schema, sql.Identifier(view), role)
            )


def ensure_bi_reader(url: str | None = None) -> str:
    """Create (or update) the read-only role BI tools, Superset and the engine use.

    It may connect to the warehouse database and read the marts (``web``, ``crm``), tables
    rebuilt later included (default privileges), and the alerts marts (the views of the
    ``alerts`` schema, not its tables), and nothing else: no raw, staging or
    intermediate schema, no other database of Siteline's (nor ``postgres``), no temporary
    tables and no large objects in the warehouse database. Its statements stop after
    ``SITELINE_BI_READER_STATEMENT_TIMEOUT`` and it holds at most
    ``SITELINE_BI_READER_CONNECTION_LIMIT`` connections. What the connecting user may not
    change (it owns neither the database nor the functions) is printed as a warning with
    the statement a superuser can run. Returns its DSN.
    """
    import psycopg
    from psycopg import errors, sql

    url = url or warehouse_url()
    dbname = urlsplit(url).path.lstrip("/") or "postgres"
    role = sql.Identifier(BI_ROLE)
    limit = bi_reader_connection_limit()
    timeout = bi_reader_statement_timeout()
    not_done: list[str] = []

    def restrict(conn, statement: sql.Composable, still_allowed: str, *args: str) -> None:
        # PUBLIC's privileges can only be revoked by the object's owner (or a superuser); a
        # REVOKE by anyone else may pass with a mere notice, so the outcome is checked.
        with contextlib.suppress(errors.InsufficientPrivilege):
            conn.execute(statement)
        if conn.execute(still_allowed, (BI_ROLE, *args)).fetchone()[0]:
            not_done.append(statement.as_string(conn))

    try:
        with connect(url, autocommit=True) as conn:
            # one at a time: concurrent GRANTs on one object fail ("tuple concurrently updated")
            conn.execute("select pg_advisory_lock(hashtext('siteline.ensure_bi_reader'))")
            found = conn.execute(
                "select rolsuper or rolcreatedb or rolcreaterole from pg_roles where rolname = %s",
                (BI_ROLE,),
            ).fetchone()
            settings = sql.SQL("login noinherit connection limit {} password {}").format(
                sql.Literal(limit), sql.Literal(bi_reader_password())
            )
            if found is None:
                conn.execute(
                    sql.SQL("create role {} with nosuperuser nocreatedb nocreaterole {}").format(
                        role, settings
                    )
                )
            else:
                # Only a superuser may even restate NOSUPERUSER (PostgreSQL 16+): the
                # attributes are named only when the role has one of them.
                conn.execute(sql.SQL("alter role {} with {}").format(role, settings))
                if found[0]:
                    conn.execute(
                        sql.SQL("alter role {} with nosuperuser nocreatedb nocreaterole").format(
                            role
                        )
                    )
            try:
                conn.execute(
                    sql.SQL("alter role {} set statement_timeout = {}").format(
                        role, sql.Literal(timeout)
                    )
                )
            except psycopg.errors.InvalidParameterValue as exc:
                raise SitelineError(
                    f"SITELINE_BI_READER_STATEMENT_TIMEOUT={timeout}: {exc}; use a PostgreSQL "
                    "duration such as 5min or 300s"
                ) from None
            database = sql.Identifier(dbname)
            conn.execute(sql.SQL("grant connect on database {} to {}").format(database, role))
            # Siteline's own user keeps TEMP (dbt's incremental models use temporary tables).
            with contextlib.suppress(errors.InsufficientPrivilege):
                conn.execute(
                    sql.SQL("grant temporary on database {} to current_user").format(database)
                )
            restrict(
                conn,
                sql.SQL("revoke temporary on database {} from public").format(database),
                "select has_database_privilege(%s, %s, 'TEMP')",
                dbname,
            )
            for function in LARGE_OBJECT_CREATORS:
                restrict(
                    conn,
                    sql.SQL(f"revoke execute on function {function} from public"),
                    "select has_function_privilege(%s, %s, 'EXECUTE')",
                    function,
                )
            for schema in BI_SCHEMAS:
                name = sql.Identifier(schema)
                conn.execute(sql.SQL("create schema if not exists {}").format(name))
                conn.execute(sql.SQL("grant usage on schema {} to {}").format(name, role))
                conn.execute(
                    sql.SQL("grant select on all tables in schema {} to {}").format(name, role)
                )
                conn.execute(
                    sql.SQL(
                        "alter default privileges in schema {} grant select on tables to {}"
                    ).format(name, role)
                )
            _grant_alerts_marts(conn, role)
            existing = {
                row[0]
                for row in conn.execute(
                    "select datname from pg_database where datname = any(%s)",
                    (_other_siteline_databases(url),),
                )
            }
            for other in sorted(existing):
                name = sql.Identifier(other)
                with contextlib.suppress(errors.InsufficientPrivilege):
                    conn.execute(sql.SQL("revoke all on database {} from {}").format(name, role))
                # the owner keeps CONNECT (owners hold every privilege unless revoked)
                restrict(
                    conn,
                    sql.SQL("revoke connect on database {} from public").format(name),
                    "select has_database_privilege(%s, %s, 'CONNECT')",
                    other,
                )
    except errors.InsufficientPrivilege as exc:
        raise SitelineError(
            f"cannot create the read-only role {BI_ROLE} at {mask_url(url)}: {exc}; "
            "run Siteline as a user with CREATEROLE, or create the role yourself (docs/bi.md)"
        ) from None
    for statement in not_done:
        print(
            f"warning: {BI_ROLE} at {mask_url(url)}: not permitted to run `{statement}`; "
            "ask the owner of the database (or a superuser) to run it",
            file=sys.stderr,
        )
    return bi_reader_url(url)
