"""Real servers for tests: a collector process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def collector(landing: Path, sites_file: Path | None = None, **env_overrides: str):
    """Run `siteline collector` as its own process; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "SITELINE_LANDING_DIR": str(landing),
        "SITELINE_SEGMENT_MAX_SECONDS": "1",
        "SITELINE_LANDING_TOKEN": "test-landing-token",
        "SITELINE_COLLECTOR_ID": "testcollector",
        **env_overrides,
    }
    if sites_file:
        env["SITELINE_SITES_FILE"] = str(sites_file)
    proc = start_collector(port, env)
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


def start_collector(port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestration.cli", "collector", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"collector exited: {proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("collector did not start within 30 s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
