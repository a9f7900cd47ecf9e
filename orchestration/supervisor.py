"""What ``siteline up`` runs: the services as child processes, their logs, their stop.

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
process killed during an fsync ends only when the write does). What used to hold the stop
up for tens of seconds: a code server signalled by nobody, waiting for its RPCs (up to 60 s)
while the webserver waited for it, the daemon finishing its threads' iteration, gunicorn's
graceful timeout. Nothing there needs more time: the collector has synced every event it
acknowledged, and an interrupted run is recorded as failed and can be launched again. The
collector's SIGTERMs go to it alone, not its group, so that it can still close its segments
with its fsync helpers. Its grace is longer than its own graceful timeout (3 s for open
requests; open event streams end at once), so that it always closes its landing segments and
writes the engine's snapshot before anything kills it.
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

STOP_GRACE = 3.0
COLLECTOR_STOP_GRACE = 8.0  # > its uvicorn timeout_graceful_shutdown (3 s) + closing, snapshot
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
