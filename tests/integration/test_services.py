"""`siteline up`: the Dagster UI serves the graph and the runs `siteline run` recorded; the
collector answers."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

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


def test_up_serves_the_graph_with_recorded_runs(warehouse):
    from orchestration.cli import run_pipeline

    assert run_pipeline(["config/sites"]) is True
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        run_id = instance.get_latest_materialization_event(dg.AssetKey(["config", "sites"])).run_id

    port, collector_port = free_port(), free_port()
    env = {
        **os.environ,
        "SITELINE_DAGSTER_PORT": str(port),
        "SITELINE_COLLECTOR_PORT": str(collector_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
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
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=60)
        print(output)  # shown by pytest when the test fails
    assert proc.returncode == 0, output
    assert f"dagster    http://127.0.0.1:{port}" in output
