"""`siteline up`: the Dagster UI (behind its login proxy) serves the graph and the runs
`siteline run` recorded; the collector and Superset answer; the terminal shows a short
status while the services log to files; SIGTERM stops every process it started."""

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

pytestmark = pytest.mark.integration

API_KEY = "test-key-for-the-demo-site-stream"
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
QUERY = """{ assetNodes { assetKey { path } dependencyKeys { path }
             assetMaterializations(limit: 10) { runId } } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, password: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", **basic(password)},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


def wait_for_sensor_run(deadline: float):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            runs = instance.get_runs(dg.RunsFilter(job_name="load_collector_events"), limit=1)
            if runs and runs[0].is_finished:
                return runs[0]
            time.sleep(2)
    raise AssertionError("the sensor did not start and finish a load_collector_events run")


def basic(password: str) -> dict:
    return {"authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


def status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30):
            return 200
    except urllib.error.HTTPError as exc:
        return exc.code


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc: children, their children, ...)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, todo = set(), [pid]
    while todo:
        parent = todo.pop()
        children = {child for child, ppid in parents.items() if ppid == parent}
        todo += children - found
        found |= children
    return found


def survivors(pids: set[int]) -> dict[int, str]:
    """The running ones of ``pids``, each with its state and command line (for the report)."""
    found = {}
    for pid in sorted(pids):
        if alive(pid):
            try:
                state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
                command = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found[pid] = f"{state} {command.decode(errors='replace')[:300]}"
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not ours counts as gone)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tcp_listeners(pids: set[int]) -> dict[int, set[int]]:
    """The TCP ports (IPv4 and IPv6) these processes listen on, with the pids holding each:
    /proc/net/tcp{,6} give the listening sockets' inodes, /proc/<pid>/fd who holds them."""
    ports = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports[fields[9]] = int(fields[1].rsplit(":", 1)[1], 16)
    found: dict[int, set[int]] = {}
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in ports:
                found.setdefault(ports[link[8:-1]], set()).add(pid)
    return found


def read_stream(url: str, key: str, seen: list, ended: threading.Event) -> None:
    """Reads the collector's event stream (/v1/stream) until the server ends it."""
    try:
        headers = {"authorization": f"Bearer {key}"}
        with httpx.stream("GET", f"{url}/v1/stream", headers=headers, timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("event: "):
                    seen.append(line[7:])
    except httpx.TransportError:
        pass
    ended.set()


class Lines:
    """Collects what a process prints, line by line, while it runs."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match | None:
        return next((m for line in list(self.lines) if (m := re.search(pattern, line))), None)

    def text(self) -> str:
        return "\n".join(self.lines)


def _start_up(env: dict) -> tuple[subprocess.Popen, Lines]:
    """`siteline up` as a real process, its output read as it comes (a pipe that nobody read
    would fill up and block the writer)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "up"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    return proc, Lines(proc.stdout)


def _wait_for_services(proc: subprocess.Popen, out: Lines) -> float:
    """Wait (at most 300 s) for the status line; returns that deadline, for later waits."""
    deadline = time.monotonic() + 300
    while not out.find("services running") and proc.poll() is None:
        assert time.monotonic() < deadline, "siteline up did not report its services"
        time.sleep(0.5)
    return deadline


def test_up_serves_the_graph_with_recorded_runs(warehouse):
    import dagster as dg

    from ingestion.demo_traffic.simulator import SimulationConfig
    from ingestion.demo_traffic.writer import write_simulation
    from orchestration.cli import run_pipeline
    from orchestration.ui_proxy import password_file

    assert run_pipeline(["config/sites"]) is True
    with dg.DagsterInstance.get() as instance:
        run_id = instance.get_latest_materialization_event(dg.AssetKey(["config", "sites"])).run_id
    # New landing segments: the sensor must start a load once the daemon runs.
    landing = Path(os.environ["SITELINE_LANDING_DIR"])
    write_simulation(SimulationConfig(days=1, visits_per_day=20, seed=99), landing.parent / "svc",
                     progress=False, landing_root=landing)  # fmt: skip

    port, collector_port, superset_port = free_port(), free_port(), free_port()
    mail_port = free_port()  # not 2525: tests may run side by side
    env = {
        **os.environ,
        "SITELINE_DAGSTER_PORT": str(port),
        "SITELINE_COLLECTOR_PORT": str(collector_port),
        "SITELINE_SUPERSET_PORT": str(superset_port),
        "SITELINE_MAIL_SINK_PORT": str(mail_port),
        "SITELINE_DEMO_API_KEY": API_KEY,
        "SITELINE_SEGMENT_MAX_SECONDS": "3600",  # the collector's segment is open at the stop
    }
    env.pop("SITELINE_UI_PASSWORD", None)
    password_file().unlink(missing_ok=True)  # a first start: the password is generated
    log_dir = Path(os.environ["SITELINE_HOME"]) / "logs"
    proc, out = _start_up(env)
    children: set[int] = set()
    try:
        deadline = _wait_for_services(proc, out)
        login = out.find(rf"^dagster    http://127\.0\.0\.1:{port}  \(admin / (\S+)  \(generated")
        assert login, out.text()
        password = login.group(1)
        # Generated at the first start, printed once, stored only as a hash, owner-only.
        stored = password_file()
        assert stored.stat().st_mode & 0o777 == 0o600
        assert password not in stored.read_text()
        # The UI port is the proxy: nothing without the login, nothing for another Host.
        assert status(f"http://127.0.0.1:{port}/") == 401
        assert status(f"http://127.0.0.1:{port}/", {"host": "evil.test", **basic(password)}) == 421
        assert status(f"http://127.0.0.1:{port}/", basic(password)) == 200

        data = None
        while time.monotonic() < deadline:  # the code location may still be loading
            try:
                data = graphql(port, QUERY, password)
                if data and data.get("assetNodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data and data["assetNodes"], "the Dagster UI did not answer"
        nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
        assert {
            "raw_collector/events",
            "staging/stg_collector__events",
            "web/fct_page_views",
        } <= set(nodes)
        deps = {
            "/".join(d["path"]) for d in nodes["staging/stg_collector__events"]["dependencyKeys"]
        }
        assert deps == {"raw_collector/events"}
        # (the sensor's run may have materialised it again since)
        assert run_id in {m["runId"] for m in nodes["config/sites"]["assetMaterializations"]}

        # One GET with a mutation (a link or an image on any page) must not launch a run.
        # (Other tests of this worker may have run the asset job before: count new runs.)
        with dg.DagsterInstance.get() as instance:
            earlier = {r.run_id for r in instance.get_runs(dg.RunsFilter(job_name="__ASSET_JOB"))}
        mutation = ('mutation { launchRun(executionParams: {selector: {repositoryLocationName: '
                    '"orchestration.definitions", repositoryName: "__repository__", '
                    'jobName: "__ASSET_JOB", assetSelection: [{path: ["config", "sites"]}]}}) '
                    "{ __typename } }")  # fmt: skip
        query = urllib.parse.urlencode({"query": mutation})
        assert status(f"http://127.0.0.1:{port}/graphql?{query}", basic(password)) == 403
        cross_site = urllib.request.Request(
            f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": mutation}).encode(),
            headers={"content-type": "application/json", "origin": "https://evil.test",
                     **basic(password)},
        )  # fmt: skip
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(cross_site, timeout=30)
        assert refused.value.code == 403

        # GraphQL subscriptions: the websocket reaches the webserver through the proxy.
        with connect(f"ws://127.0.0.1:{port}/graphql", subprotocols=["graphql-ws"],
                     additional_headers=basic(password), origin=f"http://127.0.0.1:{port}",
                     open_timeout=30) as ws:  # fmt: skip
            assert ws.subprotocol == "graphql-ws"
            ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(ws.recv(timeout=30))["type"] == "connection_ack"

        health = urllib.request.urlopen(f"http://127.0.0.1:{collector_port}/health", timeout=10)
        assert json.loads(health.read())["status"] == "ok"
        # The sensor's run loads the segment and builds every model and check downstream.
        run = wait_for_sensor_run(deadline=time.monotonic() + 300)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert run.tags.get("dagster/sensor_name") == "new_landing_segments"
        with dg.DagsterInstance.get() as instance:
            launched = instance.get_runs(dg.RunsFilter(job_name="__ASSET_JOB"))
            assert [r.run_id for r in launched if r.run_id not in earlier] == []
        # Its line on the terminal (the reporter polls every 2 s).
        line = rf"^run {run.run_id[:8]} load_collector_events: success in \d+ s, (\d+) assets$"
        while not out.find(line) and proc.poll() is None:
            assert time.monotonic() < deadline + 300, out.text()
            time.sleep(0.5)
        assert int(out.find(line).group(1)) > 10
        # Superset provisions and serves next to them (its own tests are in test_superset).
        superset_health = None
        while superset_health is None and time.monotonic() < deadline + 300:
            try:
                url = f"http://127.0.0.1:{superset_port}/health"
                superset_health = urllib.request.urlopen(url, timeout=10).read()
            except OSError:
                time.sleep(1)
        assert superset_health == b"OK", "Superset did not come up"
        children = descendants(proc.pid)

        # No TCP port without the login: the webserver is on a Unix socket in an owner-only
        # directory, and no process of `siteline up` listens anywhere but the public ports.
        warehouse_port = urllib.parse.urlsplit(os.environ["WAREHOUSE_URL"]).port
        # ... and the demo's mail sink (SMTP on 127.0.0.1, SITELINE_MAIL_SINK_PORT; 0 = off)
        public = {port, collector_port, superset_port, warehouse_port, mail_port}
        listening = tcp_listeners(children | {proc.pid})
        assert {p: pids for p, pids in listening.items() if p not in public} == {}, listening
        assert {port, collector_port, superset_port} <= set(listening)
        run_dir = Path(os.environ["SITELINE_HOME"]) / "run"
        assert run_dir.stat().st_mode & 0o777 == 0o700
        assert (run_dir / "dagster-webserver.sock").is_socket()

        # A live panel's event stream is open when the stop comes, and the collector holds
        # an event in its open segment.
        collector_url = f"http://127.0.0.1:{collector_port}"
        seen, stream_ended = [], threading.Event()
        reader = threading.Thread(target=read_stream, daemon=True,
                                  args=(collector_url, API_KEY, seen, stream_ended))  # fmt: skip
        reader.start()
        page_view = {"site_id": "demo", "events": [{
            "event_id": "0c1f6f4e-6b7a-4d0e-9a51-3f2b8c0d7e11", "type": "page_view",
            "occurred_at": datetime.now(UTC).isoformat(), "visitor_id": "v-stop",
            "url": "https://shop.siteline.test/p/stop",
        }]}  # fmt: skip
        while "active" not in seen and time.monotonic() < deadline + 300:
            time.sleep(0.2)
        accepted = httpx.post(f"{collector_url}/collect", json=page_view,
                              headers={"user-agent": BROWSER}, timeout=30)  # fmt: skip
        assert accepted.json() == {"accepted": 1, "rejected": 0}, accepted.text
        while "session" not in seen and time.monotonic() < deadline + 300:
            time.sleep(0.2)
        assert seen[:2] == ["active", "session"]
        stopped_at = time.time()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)  # a hang guard: up must stop its services
        out.thread.join(timeout=30)
        print(out.text()[-20000:])  # shown by pytest when the test fails
    output = out.text()
    assert proc.returncode == 0, output
    # Every process it started (services, code servers, run workers, helpers) is gone.
    assert len(children) >= 5
    assert survivors(children) == {}

    # The terminal: the URLs, the login, the run line; none of the services' own lines.
    assert f"collector  http://127.0.0.1:{collector_port}/collect" in output
    assert f"superset   http://127.0.0.1:{superset_port}" in output
    assert "DEBUG" not in output and "START sql" not in output, output
    assert "Started execution of step" not in output
    assert len(out.lines) < 30, output
    # The full logs are in files, one per service, and one per pipeline run.
    for name in ("dagster-webserver", "dagster-daemon", "dagster-ui-proxy", "collector",
                 "superset", "alerts-live"):  # fmt: skip
        assert (log_dir / f"{name}.log").read_text().startswith(f"---- siteline up: {name}")
    # The collector was stopped alone, its fsync helpers by itself: no helper died under it.
    collector_log = (log_dir / "collector.log").read_text()
    assert "Traceback" not in collector_log
    # It stopped cleanly with the stream open: the stream ended when the stop began (not
    # cancelled at the graceful timeout), the open segment was closed with its event, the
    # engine's snapshot was written on the way out.
    assert stream_ended.is_set()
    assert "timeout graceful shutdown exceeded" not in collector_log, collector_log
    assert [p for p in landing.rglob("*.open") if p.stat().st_size > 0] == []
    closed = [p for p in landing.rglob("*") if p.is_file() and b"v-stop" in p.read_bytes()]
    assert len(closed) == 1, closed
    snapshots = list((landing.parent / "realtime").glob("sessions-*.json"))
    assert len(snapshots) == 1 and snapshots[0].stat().st_mtime > stopped_at, snapshots
    assert b"v-stop" in snapshots[0].read_bytes()
    daemon_log = (log_dir / "dagster-daemon.log").read_text()
    assert " - DEBUG - load_collector_events - " in daemon_log  # the run's own output
    run_log = (log_dir / "runs" / f"{run.run_id}.log").read_text()
    assert 'Finished execution of run for "load_collector_events"' in run_log
    assert run.run_id in (log_dir / "pipeline-runs.log").read_text()


def test_up_stops_every_service_when_its_terminal_closes(warehouse):
    """The services run in sessions of their own, so the terminal's SIGHUP reaches only
    `siteline up`: it must stop them, or they would keep running without it."""
    port, collector_port, superset_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SITELINE_DAGSTER_PORT": str(port),
        "SITELINE_COLLECTOR_PORT": str(collector_port),
        "SITELINE_SUPERSET_PORT": str(superset_port),
        "SITELINE_MAIL_SINK_PORT": str(free_port()),  # not 2525: tests may run side by side
        "SITELINE_UI_PASSWORD": "a password for this test",
    }
    proc, out = _start_up(env)
    children: set[int] = set()
    try:
        _wait_for_services(proc, out)
        assert out.find(
            rf"^dagster    http://127\.0\.0\.1:{port}  \(admin / \$SITELINE_UI_PASSWORD\)"
        )
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGHUP)
        proc.wait(timeout=120)  # a hang guard
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
        out.thread.join(timeout=30)
        print(out.text())
    assert proc.returncode == 0, out.text()
    assert len(children) >= 5
    assert survivors(children) == {}


SLOW_STOPPER = """
import signal, sys, time
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))  # a second one changes nothing
print("ready", flush=True)
while not stopping:
    time.sleep(0.05)
time.sleep(5)  # closing its files, as the collector closes segments and writes its snapshot
open(sys.argv[1], "w").write("stopped cleanly")
"""


def test_a_service_gets_its_own_stop_grace(tmp_path):
    """The collector's graceful stop outlasts the default 3 s: `siteline up` gives it its own
    grace (8 s) before the second signal and the SIGKILL after it."""
    from orchestration.supervisor import COLLECTOR_STOP_GRACE, Service, stop_services

    done = tmp_path / "done"
    service = Service("slow", [sys.executable, "-c", SLOW_STOPPER, str(done)],
                      signal_group=False, stop_grace=COLLECTOR_STOP_GRACE)  # fmt: skip
    service.start(tmp_path, dict(os.environ), tmp_path, verbose=False)
    log = tmp_path / "slow.log"
    while "ready" not in log.read_text() and service.proc.poll() is None:
        time.sleep(0.05)
    stop_services([service])
    assert service.proc.returncode == 0, log.read_text()
    assert done.read_text() == "stopped cleanly"
