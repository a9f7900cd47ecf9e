"""`siteline up`: the Dagster UI serves the graph and the runs `siteline run` recorded; the
collector and Superset answer."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

QUERY = """{ assetNodes { assetKey { path } dependencyKeys { path }
             assetMaterializations(limit: 1) { runId } } }"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
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


def test_up_serves_the_graph_with_recorded_runs(warehouse, tmp_path):
    import dagster as dg

    from ingestion.demo_traffic.simulator import SimulationConfig
    from ingestion.demo_traffic.writer import write_simulation
    from orchestration.cli import run_pipeline

    assert run_pipeline(["config/sites"]) is True
    with dg.DagsterInstance.get() as instance:
        run_id = instance.get_latest_materialization_event(dg.AssetKey(["config", "sites"])).run_id
    # New landing segments: the sensor must start a load once the daemon runs.
    landing = Path(os.environ["SITELINE_LANDING_DIR"])
    write_simulation(SimulationConfig(days=1, visits_per_day=20, seed=99), landing.parent / "svc",
                     progress=False, landing_root=landing)  # fmt: skip

    port, collector_port, superset_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "SITELINE_DAGSTER_PORT": str(port),
        "SITELINE_COLLECTOR_PORT": str(collector_port),
        "SITELINE_SUPERSET_PORT": str(superset_port),
    }
    # Output goes to a file, not a pipe: a pipe nobody reads until the end fills up (dbt
    # and Dagster log a lot) and blocks the services writing to it.
    log_path = tmp_path / "up.log"
    log = open(log_path, "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "up"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        data = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                data = graphql(port, QUERY)
                if data and data.get("assetNodes"):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert data and data["assetNodes"], "the Dagster UI did not come up"
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
        assert nodes["config/sites"]["assetMaterializations"][0]["runId"] == run_id
        health = urllib.request.urlopen(f"http://127.0.0.1:{collector_port}/health", timeout=10)
        assert json.loads(health.read())["status"] == "ok"
        # The sensor's run loads the segment and builds every model and check downstream.
        run = wait_for_sensor_run(deadline=time.monotonic() + 300)
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        assert run.tags.get("dagster/sensor_name") == "new_landing_segments"
        # Superset provisions and serves next to them (its own tests are in test_superset).
        superset_health = None
        while superset_health is None and time.monotonic() < deadline + 300:
            try:
                url = f"http://127.0.0.1:{superset_port}/health"
                superset_health = urllib.request.urlopen(url, timeout=10).read()
            except OSError:
                time.sleep(1)
        assert superset_health == b"OK", "Superset did not come up"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)  # a hang guard: up must stop its services
        log.close()
        output = log_path.read_text()
        print(output[-20000:])  # shown by pytest when the test fails
    assert proc.returncode == 0, output
    assert f"dagster    http://127.0.0.1:{port}" in output
    assert f"superset   http://127.0.0.1:{superset_port}" in output
