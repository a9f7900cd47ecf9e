"""Hostile requests against a collector on loopback: status codes, memory, and whether it
still works afterwards.

Sends ``--requests`` malformed, oversized and hostile requests (for at most ``--seconds``)
from ``--threads`` threads: bodies the landing's readers cannot parse (1e400, 310-digit
numbers, invalid UTF-8 in known and unknown fields, lone surrogates, nesting up to 100,000
deep), times out of range, wrong types, random bytes, bodies over 1 MB, request heads over
32 KB (up to 1 MB), distinct 20 KB user agents. Then sends valid events and checks the
real-time engine applied them. Prints the status-code counts and the collector's RSS before
and after. Starts its own collector (rate limit off) unless ``--url`` names one (then pass
``--pid`` for its RSS).

    .venv/bin/python benchmarks/hostile.py [--requests 20000] [--seconds 300] [--threads 8]
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import socket
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from tests.integration.servers import free_port, start_collector, stop


def event(**fields) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "page_view",
        "occurred_at": datetime.now(UTC).isoformat(),
        "visitor_id": "hostile",
        "url": "https://shop.siteline.test/",
        **fields,
    }


def spliced(tail: bytes) -> bytes:
    """A valid one-event body with ``tail`` spliced in as the event's last field(s)."""
    return orjson.dumps({"site_id": "demo", "events": [event()]})[:-3] + b"," + tail + b"}]}"


def hostile_body(rng: random.Random) -> bytes:
    kind = rng.randrange(14)
    if kind == 0:
        return spliced(b'"x": 1e' + str(rng.randint(309, 99999)).encode())
    if kind == 1:
        return spliced(b'"x": ' + b"9" * rng.randint(310, 5000))
    if kind == 2:
        return spliced(b'"x": "' + bytes([rng.randint(0x80, 0xFF)]) + b'"')
    if kind == 3:
        field = rng.choice([b"title", b"url", b"visitor_id", b"referrer"])
        return spliced(b'"' + field + b'": "\xc3\x28"')
    if kind == 4:
        return spliced(b'"x": "\\ud' + rng.choice([b"800", b"bff", b"c00"]) + b'"')
    if kind == 5:
        depth = rng.choice([65, 100, 1000, 1100, 100_000])
        return spliced(b'"properties": {"a":' + b"[" * depth + b"]" * depth + b"}")
    if kind == 6:
        times = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1970-01-01T00:00:00Z",
                 "1999-12-31T23:59:59-00:30", "2200-01-01T00:00:00Z"]  # fmt: skip
        body = {"site_id": "demo", "sent_at": rng.choice(times), "events": [event()]}
        if rng.random() < 0.5:
            body = {"site_id": "demo", "events": [event(occurred_at=rng.choice(times))]}
        return orjson.dumps(body)
    if kind == 7:
        value = rng.choice([True, [], {}, -1, "x" * 9000, 1e308, None, 3])
        field = rng.choice(["revenue", "url", "items", "engaged_seconds", "event_id", "type"])
        return orjson.dumps({"site_id": "demo", "events": [event(**{field: value})]})
    if kind == 8:
        return rng.randbytes(rng.randint(0, 4000))
    if kind == 9:
        return b'{"site_id": "demo", "events": [' + b"1," * rng.randint(1, 100_000) + b"1]}"
    if kind == 10:
        return b"{" * rng.randint(1, 200_000)
    if kind == 11:
        return b'{"site_id":"demo","events":[' + b'{"a":' * 3000  # truncated
    if kind == 12:
        return orjson.dumps({"site_id": "x" * rng.randint(1, 100_000), "events": [event()]})
    return orjson.dumps({"site_id": "demo", "events": [event()] * rng.randint(501, 2000)})


def raw(port: int, data: bytes) -> int | str:
    """Send bytes over a plain socket; the status code answered, or "closed" when the server
    closed the connection without one reaching us (it stopped reading a head over the limit:
    the kernel then resets the connection, which can drop the answer)."""
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        try:
            sock.sendall(data)
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n" in answer:
                    break
        except OSError:
            pass
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else "closed"


def hostile_request(rng: random.Random, client: httpx.Client, port: int) -> int | str:
    kind = rng.random()
    if kind < 0.06:  # a head over the limit: a huge header or URL
        size = rng.choice([40_000, 200_000, 1_000_000])
        name = rng.choice([b"user-agent", b"cookie", b"x-junk"])
        head = b"POST /collect HTTP/1.1\r\nhost: x\r\n" + name + b": " + b"a" * size + b"\r\n"
        if rng.random() < 0.3:
            head = b"GET /collect?" + b"q" * size + b" HTTP/1.1\r\nhost: x\r\n"
        return raw(port, head + b"content-length: 2\r\n\r\n{}")
    if kind < 0.12:  # a distinct long user agent within the head limit
        agent = f"Mozilla/5.0 {uuid.uuid4()} " + "x" * 20_000
        body = orjson.dumps({"site_id": "demo", "events": [event()]})
        return client.post("/collect", content=body, headers={"user-agent": agent}).status_code
    if kind < 0.14:  # over the body limit
        return client.post("/collect", content=b" " * 1_100_000).status_code
    if kind < 0.18:  # the pixel with garbage parameters
        params = {"site_id": "demo", "url": "x" * rng.randint(1, 9000), "value": "1e400"}
        return client.get("/collect", params=params).status_code
    return client.post("/collect", content=hostile_body(rng)).status_code


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--url", help="a running collector (default: start one)")
    parser.add_argument("--pid", type=int, help="its process id, for its RSS")
    parser.add_argument("--seed", type=int, default=26)
    args = parser.parse_args()

    proc = None
    if args.url:
        base, pid = args.url.rstrip("/"), args.pid
    else:
        home = Path(tempfile.mkdtemp(prefix="hostile-"))
        port = free_port()
        env = {
            **os.environ,
            "SITELINE_LANDING_DIR": str(home / "landing"),
            "SITELINE_RATE_LIMIT": "0",
            "SITELINE_COLLECTOR_ID": "hostile",
            "SITELINE_ENGINE_WAREHOUSE_URL": "none",
        }
        proc = start_collector(port, env)
        base, pid = f"http://127.0.0.1:{port}", proc.pid
    port = int(base.rsplit(":", 1)[1])
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            client.post("/collect", json={"site_id": "demo", "events": [event()]})  # warm up
            before = rss_mb(pid) if pid else None
        counts: collections.Counter = collections.Counter()
        sent = iter(range(args.requests))
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds
        started = time.monotonic()

        def work(seed: int) -> None:
            rng = random.Random(seed)
            with httpx.Client(base_url=base, timeout=60) as client:
                while time.monotonic() < deadline:
                    with lock:
                        if next(sent, None) is None:
                            return
                    try:
                        status = hostile_request(rng, client, port)
                    except httpx.HTTPError as exc:
                        status = type(exc).__name__
                    with lock:
                        counts[status] += 1

        threads = [
            threading.Thread(target=work, args=(args.seed * 1000 + i,)) for i in range(args.threads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        # Afterwards: does the collector still take valid events, and the engine apply them?
        final, accepted, applied = "no answer", None, None
        with httpx.Client(base_url=base, timeout=60) as client:
            try:
                valid = [event() for _ in range(10)]
                final = client.post("/collect", json={"site_id": "demo", "events": valid})
                final = final.status_code
                wait = time.monotonic() + 30
                while time.monotonic() < wait:
                    health = client.get("/health").json()
                    accepted = health["counters"]["accepted"]
                    applied = health["engine"]["events"]
                    if applied >= accepted:
                        break
                    time.sleep(0.1)
            except httpx.HTTPError as exc:
                final = f"{final} ({type(exc).__name__})"
        after = rss_mb(pid) if pid else None
    finally:
        if proc is not None:
            stop(proc)

    total = sum(counts.values())
    print(f"{total:,} hostile requests in {elapsed:.1f} s ({total / elapsed:,.0f} req/s)")
    for status, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        print(f"  {status}: {n:,}")
    fivexx = sum(n for s, n in counts.items() if isinstance(s, int) and s >= 500)
    print(f"5xx: {fivexx:,}")
    if before is not None:
        print(f"collector RSS: {before:.0f} MB before, {after:.0f} MB after")
    print(f"10 valid events afterwards: HTTP {final}; the engine applied {applied} of the "
          f"{accepted} events accepted in all")  # fmt: skip


if __name__ == "__main__":
    main()
