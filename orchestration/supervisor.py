"""What ``siteline up`` runs: the services as child processes, their logs, their stop, and
the line per finished pipeline run (:func:`up` is the command).

Each service writes to its own file under ``$SITELINE_HOME/logs`` (``--verbose`` also copies
every line to the terminal, prefixed with the service's name), so the terminal keeps a short
status: the URLs, the passwords and one line per finished pipeline run.

Each service runs in its own process group (Dagster's code servers and run workers, the
collector's fsync helpers are in it). Stopping sends each group its stop signal (SIGTERM;
SIGINT for gunicorn, whose SIGTERM waits 30 s for requests), waits each service's
``stop_grace`` (:data:`STOP_GRACE` seconds; the collector :data:`COLLECTOR_STOP_GRACE`) at most
for them (they stop in parallel), then sends SIGTERM and, after :data:`KILL_GRACE` seconds,
SIGKILL to whatever is left in each group, and to what had left its group (a process in a
session of its own), then waits up to :data:`KILLED_WAIT` seconds for them to be gone (a
process killed during an fsync ends only when the write does). Signalling every group, not
only its leader, is what keeps the stop short: a code server signalled by nobody waits for
its RPCs while the webserver waits for it. Nothing there needs more time: the collector has
synced every event it acknowledged, and an interrupted run is recorded as failed and can be
launched again. The collector's SIGTERMs go to it alone, not its group, so that it can still
close its segments with its fsync helpers. Its grace is longer than its own graceful timeout
(open event streams end at once), so that it always closes its landing segments and writes
the engine's snapshot before anything kills it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingestion.core.errors import SitelineError

STOP_GRACE = 3.0
COLLECTOR_STOP_GRACE = 8.0  # > its uvicorn timeout_graceful_shutdown + closing, snapshot
KILL_GRACE = 1.0
KILLED_WAIT = 10.0  # at most, for killed processes to be gone


@dataclass
class Service:
    """One child process of ``siteline up``."""

    name: str  # also its log file's name: logs/<name>.log
    command: list[str]
    stop_signal: int = signal.SIGTERM
    signal_group: bool = True  # False: only the service; it stops its helpers itself
    stop_grace: float = STOP_GRACE  # seconds from its stop signal to the second signal
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    _tee: threading.Thread | None = field(default=None, repr=False)

    def start(self, log_dir: Path, env: dict[str, str], cwd: Path, verbose: bool) -> None:
        self.log_path = log_dir / f"{self.name}.log"
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 (the tee or the child owns it)
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        log.write(f"---- siteline up: {self.name} started {stamp}\n".encode())
        # A file, not a pipe, unless the lines are copied to the terminal: the service keeps
        # writing its log even if this process dies.
        self.proc = subprocess.Popen(
            self.command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if verbose else log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if verbose:
            self._tee = threading.Thread(target=self._copy, args=(log,), daemon=True)
            self._tee.start()
        else:
            log.close()

    def _copy(self, log) -> None:
        prefix = f"{self.name} | ".encode()
        with log:
            for line in iter(self.proc.stdout.readline, b""):
                log.write(line)
                with contextlib.suppress(OSError):
                    sys.stdout.buffer.write(prefix + line)
                    sys.stdout.buffer.flush()

    def tail(self, lines: int = 15) -> list[str]:
        """The last lines of the service's log (to show why it stopped)."""
        if self.log_path is None or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 16384))
            text = fh.read().decode("utf-8", "replace")
        return text.splitlines()[-lines:]


def _signal_group(service: Service, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(service.proc.pid, sig)


def _group_alive(service: Service) -> bool:
    try:
        os.killpg(service.proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _descendants(pids: set[int]) -> set[int]:
    """Every process below ``pids`` (from /proc), also those in sessions of their own."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), list(pids)
    while todo:
        parent = todo.pop()
        children = {child for child, ppid in parents.items() if ppid == parent}
        todo += children - found
        found |= children
    return found


def _running(pid: int) -> bool:
    """Not yet gone (a zombie is gone: only its parent's wait is missing)."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_services(services: list[Service]) -> None:
    """Stop every started service and everything it started, within a few seconds."""
    started = [s for s in services if s.proc is not None]
    # What they run now, also what left their process groups (a new session of its own).
    tree = _descendants({s.proc.pid for s in started}) if Path("/proc/self").exists() else set()
    for service in started:
        if service.signal_group:
            _signal_group(service, service.stop_signal)
        elif service.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(service.stop_signal)
    signalled = time.monotonic()  # they stop in parallel, each within its own grace
    for service in sorted(started, key=lambda s: s.stop_grace):
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(max(0.01, signalled + service.stop_grace - time.monotonic()))
        # What is left: the service if it did not stop in time, and what it started. The
        # collector gets its second SIGTERM alone; its fsync helpers end when it does, or
        # with the SIGKILL below.
        if service.signal_group:
            _signal_group(service, signal.SIGTERM)
        elif service.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                service.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + KILL_GRACE
    while any(_group_alive(s) for s in started) and time.monotonic() < deadline:
        time.sleep(0.05)
    for service in started:
        _signal_group(service, signal.SIGKILL)
    for pid in tree:
        if _running(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for service in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            service.proc.wait(5)
    # A process killed in the middle of a disk write (an fsync) ends only when the write does.
    deadline = time.monotonic() + KILLED_WAIT
    while any(_running(pid) for pid in tree) and time.monotonic() < deadline:
        time.sleep(0.05)
        if service._tee is not None:
            service._tee.join(2)


def port_free(port: int) -> bool:
    """Nothing accepts connections on this loopback port."""
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def listening(where: int | Path) -> bool:
    """Whether a server accepts connections on a loopback port or a Unix socket."""
    import socket

    if isinstance(where, int):
        return not port_free(where)
    with socket.socket(socket.AF_UNIX) as sock:
        return sock.connect_ex(str(where)) == 0


def exec_collector(host: str, port: int | None = None, workers: int = 1) -> None:
    """Become the collector (``siteline collector``): this process runs ``python -m
    realtime.collector`` in its place (same pid, same signals). The collector is the real-time
    part's; orchestration starts it as a program and never imports it."""
    from ingestion.core.settings import settings

    port = port or settings().collector_port
    command = [sys.executable, "-m", "realtime.collector", "--host", host, "--port", str(port),
               "--workers", str(workers)]  # fmt: skip
    os.execv(command[0], command)


# -- siteline up ---------------------------------------------------------------------------------

READY_TIMEOUT = 240  # seconds; Superset provisions (migrations, bundle import) before it listens


def services(webserver_socket: Path) -> list[Service]:
    """The services ``siteline up`` runs, each a command of ``siteline`` (or Dagster's)."""
    from ingestion.core.home import PROJECT_ROOT
    from ingestion.core.settings import settings

    config = settings()
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    cli = [sys.executable, "-m", "orchestration.cli"]
    return [
        Service("dagster-webserver", [*cli, "dagster-webserver", "--socket",
                                      str(webserver_socket), "-w", workspace]),
        Service("dagster-ui-proxy", [*cli, "dagster-ui-proxy", "--port", str(config.dagster_port),
                                     "--upstream-socket", str(webserver_socket)]),
        Service("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]),
        # Its graceful stop waits for open requests (timeout_graceful_shutdown), then closes
        # its segments and writes the engine's snapshot: it gets more time than that.
        Service("collector", [*cli, "collector", "--port", str(config.collector_port)],
                signal_group=False, stop_grace=COLLECTOR_STOP_GRACE),  # its fsync helpers
        # Real-time alert rules, every few seconds (orchestration/alerts/live.py)
        Service("alerts-live", [sys.executable, "-m", "orchestration.alerts.live"]),
        # gunicorn (exec'd by `siteline superset`): SIGINT is its quick shutdown
        Service("superset", [*cli, "superset", "--port", str(config.superset_port)],
                signal.SIGINT),
        # the demo's SMTP sink: alert mails land as .eml files in $SITELINE_HOME/mail
        *([Service("mail-sink", [sys.executable, "-m", "orchestration.alerts.mail_sink",
                                 "--port", str(config.mail_sink_port)])]
          if config.mail_sink_port else []),
    ]  # fmt: skip


def up(
    verbose: bool,
    say: Callable[[str], None],
    failed: Callable[[str, list[str]], None],
    ready: Callable[[str | None], None],
) -> None:
    """``siteline up``: start every service, wait until each listens, then supervise them
    until Ctrl-C, SIGTERM, a closed terminal or a service that exits; then stop them all and
    end the process (status 1 when a service exited on its own).

    ``say`` prints a status line, ``failed(message, log_tail)`` a service that exited,
    ``ready(ui_password)`` the URLs once everything listens (the UI password only when it was
    generated by this start). The process must be prepared (``runtime.prepare("ready")``).
    """
    from ingestion.core.home import PROJECT_ROOT, data_dir
    from ingestion.core.settings import settings
    from orchestration import dagster_webserver, ui_proxy

    config = settings()
    for port, variable in ((config.dagster_port, "SITELINE_DAGSTER_PORT"),
                           (config.collector_port, "SITELINE_COLLECTOR_PORT"),
                           (config.superset_port, "SITELINE_SUPERSET_PORT"),
                           (config.mail_sink_port, "SITELINE_MAIL_SINK_PORT")):  # fmt: skip
        if not port:  # 0: that service is off
            continue
        if not port_free(port):
            raise SitelineError(
                f"port {port} on 127.0.0.1 is in use; stop what uses it or set {variable}"
            )
    ui_password = ui_proxy.ensure_password()
    # The webserver itself answers only on a Unix socket in an owner-only directory, no TCP
    # port; the proxy checks Host, Origin and the login in front of it (ui_proxy.py).
    webserver_socket = dagster_webserver.socket_path()
    webserver_socket.unlink(missing_ok=True)  # left by a killed start: not ready until renewed
    running = services(webserver_socket)
    log_dir = data_dir("logs")
    # The collector also serves the demo shop page (/demo/) next to the real-time API.
    env = {**os.environ, "SITELINE_UP": "1", "SITELINE_DEMO_PAGE": "1"}
    stopping = False

    def stop(*_, status: int = 0):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            say("stopping the services ...")
        reporter.stopping.set()
        stop_services(running)
        # Tearing down the interpreter (Dagster's modules) is slow and has nothing to save:
        # every child is gone and the output is flushed.
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)

    reporter = RunReporter(log_dir, say, f"http://127.0.0.1:{config.dagster_port}")
    signal.signal(signal.SIGTERM, stop)
    # A closed terminal hangs up only on us (the services have sessions of their own).
    signal.signal(signal.SIGHUP, stop)
    try:
        for service in running:
            service.start(log_dir, env, PROJECT_ROOT, verbose)
        say(f"starting the services; their logs: {log_dir}")
        deadline = time.monotonic() + READY_TIMEOUT
        waiting = [webserver_socket, config.dagster_port, config.collector_port,
                   config.superset_port, *([config.mail_sink_port] if config.mail_sink_port
                                           else [])]  # fmt: skip
        while waiting and time.monotonic() < deadline:
            if any(s.proc.poll() is not None for s in running):
                break
            waiting = [where for where in waiting if not listening(where)]
            time.sleep(0.5)
        if all(s.proc.poll() is None for s in running):
            ready(ui_password)
            say("services running; one line per pipeline run below; Ctrl-C stops them")
            reporter.start()
        while all(s.proc.poll() is None for s in running):
            time.sleep(1)
    except KeyboardInterrupt:
        stop()
    for service in running:
        if service.proc is not None and service.proc.poll() is not None:
            failed(
                f"{service.name} exited with status {service.proc.returncode}; stopping the "
                f"other services. The end of {service.log_path}:",
                service.tail(),
            )
    stop(status=1)


# -- pipeline runs -------------------------------------------------------------------------------


def run_line(run_id: str, job: str, status: str, seconds: float | None, assets: int) -> str:
    """The terminal's line for one finished run (``siteline up``, ``run`` and ``demo``)."""
    took = f" in {seconds:,.0f} s" if seconds is not None else ""
    job = "pipeline" if job == "__ASSET_JOB" else job  # Dagster's name for "these assets"
    return f"run {run_id[:8]} {job}: {status}{took}, {assets} assets"


class RunReporter(threading.Thread):
    """Prints one line per pipeline run that finishes while ``siteline up`` runs, and writes
    the run's event log to ``logs/runs/<run id>.log``."""

    POLL_SECONDS = 2.0

    def __init__(self, log_dir: Path, say: Callable[[str], None], ui_url: str) -> None:
        super().__init__(name="run-reporter", daemon=True)
        self.log_dir = log_dir
        self.say = say
        self.ui_url = ui_url
        self.since = datetime.now(UTC)
        self.seen: set[str] = set()
        self.stopping = threading.Event()

    def run(self) -> None:
        import dagster as dg

        finished = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                    dg.DagsterRunStatus.CANCELED]  # fmt: skip
        try:
            instance = dg.DagsterInstance.get()
        except Exception as exc:  # a status line is not worth stopping the services
            self.say(f"run lines are off: the Dagster instance cannot be opened ({exc})")
            return
        with instance:
            while not self.stopping.wait(self.POLL_SECONDS):
                try:
                    records = instance.get_run_records(
                        dg.RunsFilter(statuses=finished, updated_after=self.since),
                        limit=100, ascending=True,
                    )  # fmt: skip
                    for record in records:
                        if record.dagster_run.run_id not in self.seen:
                            self.seen.add(record.dagster_run.run_id)
                            self._report(instance, record.dagster_run)
                except Exception as exc:  # storage briefly unreachable: the next poll
                    logging.getLogger(__name__).debug("run poll failed: %s", exc)

    def _report(self, instance, run) -> None:
        stats = instance.get_run_stats(run.run_id)
        seconds = None
        if stats.start_time and stats.end_time:
            seconds = stats.end_time - stats.start_time
        line = run_line(run.run_id, run.job_name, run.status.value.lower(), seconds,
                        stats.materializations)  # fmt: skip
        runs_dir = self.log_dir / "runs"
        runs_dir.mkdir(exist_ok=True)
        log_path = runs_dir / f"{run.run_id}.log"
        with open(log_path, "w") as fh:
            for entry in instance.all_logs(run.run_id):
                stamp = datetime.fromtimestamp(entry.timestamp, UTC).strftime("%H:%M:%S")
                level = logging.getLevelName(entry.level)
                fh.write(f"{stamp} {level} {entry.step_key or '-'} {entry.message}\n")
        with open(self.log_dir / "pipeline-runs.log", "a") as fh:
            fh.write(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} {line} {run.run_id}\n")
        if run.status.value != "SUCCESS":
            line += f" — {self.ui_url}/runs/{run.run_id} (log: {log_path})"
        self.say(line)
