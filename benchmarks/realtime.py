"""Real-time engine: memory per active session, state lookups, event-to-state latency.

1. Memory: 100k active sessions built in this process by the engine itself (three events
   each: a product page view, an add-to-cart, a cart page view, as the collector hands them
   over), measured as the growth of the process's resident memory and of Python's traced
   allocations, divided by the number of sessions.
2. Lookups: `siteline collector` (engine in-process, memory store) is loaded with the same
   100k sessions through POST /collect; then wrk (Debian package `wrk`) asks
   GET /v1/sessions/{id} for random sessions with the API key, 16 connections.
3. Event-to-state latency: one client sends an event to POST /collect and reads the
   session's state until the event shows, 2,000 times on a quiet server, and 400 times
   while wrk runs the lookup load again.

    .venv/bin/python benchmarks/realtime.py [--sessions 100000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from benchmarks.collector import run_wrk
from tests.integration.servers import free_port, start_collector, stop

KEY = "bench-" + uuid.uuid4().hex
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
LUA = """
local n = tonumber(os.getenv("SESSIONS"))
request = function()
  local path = "/v1/sessions/cs-" .. math.random(0, n - 1)
  return wrk.format("GET", path, {["Authorization"] = "Bearer " .. os.getenv("KEY")})
end
"""


def rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def session_events(i: int, now: str) -> list[dict]:
    """Three events of visit ``i`` as the collector hands them to the engine."""
    common = {
        "site_id": "demo", "visitor_id": f"visitor-{i:07d}-{uuid.uuid4().hex[:12]}",
        "session_id": f"cs-{i}", "occurred_at": now, "sent_at": now, "received_at": now,
        "ip": "192.0.2.0", "user_agent": CHROME, "country": "DE",
        "network_key": uuid.uuid4().hex, "bot_reason": None, "is_bot": False,
        "schema_version": 1,
    }  # fmt: skip
    product = f"https://shop.siteline.test/p/product-{i % 2000}"
    return [
        {**common, "event_id": str(uuid.uuid4()), "type": "page_view", "url": product,
         "referrer": "https://www.google.com/", "title": f"Product {i % 2000}",
         "screen": "1920x1080", "language": "de-DE"},
        {**common, "event_id": str(uuid.uuid4()), "type": "event", "url": product,
         "category": "ecommerce", "action": "add_to_cart", "label": f"SKU-{i % 2000}",
         "value": 49.9, "properties": {"quantity": 1}},
        {**common, "event_id": str(uuid.uuid4()), "type": "page_view",
         "url": "https://shop.siteline.test/cart", "referrer": product, "title": "Cart"},
    ]  # fmt: skip


def memory(sessions: int) -> dict:
    """Resident memory growth for ``sessions`` sessions (no tracing), and Python's traced
    allocations per session on a sample of 10,000 (tracing slows and inflates RSS)."""
    from ingestion.core.sites import load_sites
    from realtime.engine.engine import Engine

    now = datetime.now(UTC).isoformat()

    def build(count: int, offset: int, trace: bool) -> tuple[Engine, float, int]:
        engine = Engine(load_sites())
        for i in range(2000):  # warm the shared caches (URL and user-agent parsing)
            engine.handle(session_events(10**8 + i, now))
        batches = [session_events(offset + i, now) for i in range(count)]
        gc.collect()
        before = rss_kb()
        if trace:
            tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
        started = time.perf_counter()
        for batch in batches:
            engine.handle(batch)
        elapsed = time.perf_counter() - started
        del batches
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - traced_before if trace else rss_kb() - before
        if trace:
            tracemalloc.stop()
        return engine, elapsed, grown

    engine, elapsed, rss_grown_kb = build(sessions, 0, trace=False)
    active = len(engine.store)
    # The engine's own recent-event buffer (dedupe) is a fixed cost of the last 2 minutes'
    # events, not of the sessions; it is counted above (every event here is "recent").
    del engine
    gc.collect()
    sample = 10_000
    _, _, traced = build(sample, 10**7, trace=True)
    return {
        "sessions": active,
        "rss_bytes_per_session": rss_grown_kb * 1024 / sessions,
        "rss_growth_mb": rss_grown_kb / 1024,
        "traced_bytes_per_session": traced / sample,
        "events_per_s": sessions * 3 / elapsed,
    }


def post_sessions(base: str, sessions: int) -> float:
    now = datetime.now(UTC).isoformat()
    client = httpx.Client(headers={"User-Agent": CHROME}, timeout=60)
    started = time.perf_counter()
    batch: list[dict] = []
    sent = 0
    for i in range(sessions):
        for event in session_events(i, now):
            batch.append({k: v for k, v in event.items() if k in WIRE})
        if len(batch) >= 498:
            client.post(f"{base}/collect", json={"site_id": "demo", "events": batch})
            batch = []
            sent += 1
            if sent % 20 == 0:  # a steady load the engine keeps up with (it would shed)
                while client.get(f"{base}/health").json()["engine"]["backlog"] > 10_000:
                    time.sleep(0.05)
    if batch:
        client.post(f"{base}/collect", json={"site_id": "demo", "events": batch})
    while client.get(f"{base}/health").json()["engine"]["backlog"]:
        time.sleep(0.05)
    return sessions * 3 / (time.perf_counter() - started)


WIRE = {
    "event_id", "type", "occurred_at", "visitor_id", "session_id", "url", "referrer", "title",
    "screen", "language", "category", "action", "label", "value", "properties",
}  # fmt: skip


def lookups(base: str, sessions: int, seconds: int, connections: int, script: Path) -> dict:
    return run_wrk(base, seconds, connections, script, {"SESSIONS": str(sessions), "KEY": KEY})


def latency(base: str, rounds: int) -> dict:
    """Send an event for an active session, read the state until it shows; ms per round."""
    client = httpx.Client(headers={"User-Agent": CHROME, "Authorization": f"Bearer {KEY}"})
    samples = []
    for n in range(rounds):
        session = f"cs-{n}"
        url = f"https://shop.siteline.test/p/latency-{n}"
        event = {
            "event_id": str(uuid.uuid4()), "type": "page_view", "url": url,
            "occurred_at": datetime.now(UTC).isoformat(), "session_id": session,
            "visitor_id": f"latency-visitor-{n}",
        }  # fmt: skip
        started = time.perf_counter()
        client.post(f"{base}/collect", json={"site_id": "demo", "events": [event]})
        while True:
            state = client.get(f"{base}/v1/sessions/{session}")
            if state.status_code == 200 and state.json()["current_page"]["url"] == url:
                break
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50": statistics.median(samples),
        "p99": samples[int(len(samples) * 0.99) - 1],
        "rounds": rounds,
    }


def stamped_to_state(base: str, events: int) -> dict:
    """Send ``events`` single events; the collector's own measure (stamped on arrival ->
    state visible, its last 10,000 events) then covers exactly these."""
    client = httpx.Client(headers={"User-Agent": CHROME})
    for n in range(events):
        event = {
            "event_id": str(uuid.uuid4()), "type": "page_view",
            "url": f"https://shop.siteline.test/p/s-{n}",
            "occurred_at": datetime.now(UTC).isoformat(), "session_id": f"cs-{n}",
            "visitor_id": f"stamp-visitor-{n}",
        }  # fmt: skip
        client.post(f"{base}/collect", json={"site_id": "demo", "events": [event]})
    return httpx.get(f"{base}/health").json()["engine"]["event_to_state_ms"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")

    mem = memory(args.sessions)
    print(
        f"memory: {mem['sessions']:,} active sessions: RSS grew {mem['rss_growth_mb']:,.1f} MB "
        f"= {mem['rss_bytes_per_session']:,.0f} B/session (all included); Python allocations "
        f"{mem['traced_bytes_per_session']:,.0f} B/session (traced, 10,000-session sample); "
        f"the engine applied {mem['events_per_s']:,.0f} events/s in-process"
    )

    work = Path(tempfile.mkdtemp(prefix="siteline-bench-realtime-"))
    script = work / "lookup.lua"
    script.write_text(LUA)
    port = free_port()
    env = {
        **os.environ,
        "SITELINE_HOME": str(work),
        "SITELINE_LANDING_DIR": str(work / "landing"),
        "SITELINE_RATE_LIMIT": "0",
        "SITELINE_DEMO_API_KEY": KEY,
        "SITELINE_ENGINE_WAREHOUSE_URL": "none",
        "SITELINE_COLLECTOR_ID": "bench",
    }
    proc = start_collector(port, env)
    base = f"http://127.0.0.1:{port}"
    try:
        loaded = post_sessions(base, args.sessions)
        health = httpx.get(f"{base}/health").json()["engine"]
        print(
            f"loaded {health['active_sessions']:,} active sessions through POST /collect "
            f"at {loaded:,.0f} events/s (500-event batches; {health['shed']} events shed)"
        )
        quiet = latency(base, args.rounds)
        print(
            f"event-to-state latency, quiet server: p50 {quiet['p50']:.2f} ms, "
            f"p99 {quiet['p99']:.2f} ms ({quiet['rounds']} rounds: POST then GET until seen)"
        )
        alone = lookups(base, args.sessions, args.seconds, args.connections, script)
        print(
            f"lookups GET /v1/sessions/{{id}} (random of {args.sessions:,}, "
            f"{args.connections} connections, {args.seconds} s): {alone['rps']:,.0f}/s, "
            f"p50 {alone['p50']:.2f} ms, p99 {alone['p99']:.2f} ms, non-2xx {alone['non2xx']}"
        )
        # The same lookup load again, with one client sending events and reading them back
        # (the three share this machine's two cores).
        result: dict = {}
        runner = threading.Thread(
            target=lambda: result.update(
                lookups(base, args.sessions, args.seconds, args.connections, script)
            )
        )
        runner.start()
        time.sleep(1)
        busy = latency(base, max(200, args.rounds // 5))
        runner.join()
        print(
            f"event-to-state latency during a lookup load of {result['rps']:,.0f}/s: "
            f"p50 {busy['p50']:.2f} ms, p99 {busy['p99']:.2f} ms ({busy['rounds']} rounds)"
        )
        server = stamped_to_state(base, 10_000)
        print(
            f"event-to-state inside the collector (stamped on arrival -> state visible), "
            f"10,000 single-event requests, quiet: p50 {server['p50']:.2f} ms, "
            f"p99 {server['p99']:.2f} ms"
        )
        result = {}
        runner = threading.Thread(
            target=lambda: result.update(
                lookups(base, args.sessions, args.seconds * 2, args.connections, script)
            )
        )
        runner.start()
        time.sleep(1)
        server = stamped_to_state(base, 10_000)
        runner.join()
        print(
            f"  the same during a lookup load of {result['rps']:,.0f}/s: "
            f"p50 {server['p50']:.2f} ms, p99 {server['p99']:.2f} ms"
        )
        rss = int(
            re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{proc.pid}/status").read_text()).group(1)
        )
        print(f"collector process RSS with {args.sessions:,} sessions: {rss / 1024:,.0f} MB")
    finally:
        stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
