"""``python -m realtime.collector``: the collection server in the foreground (``siteline
collector`` hands its process over to this, so that orchestration never imports realtime).

A broken ``sites.yml`` or geo database, or a port in use, is one line on stderr and status 1,
before any worker starts.
"""

from __future__ import annotations

import argparse
import socket
import sys

from ingestion.core.enrich import country_of
from ingestion.core.errors import SitelineError
from ingestion.core.settings import settings
from ingestion.core.sites import load_sites


def serve(host: str, port: int, workers: int) -> None:
    import uvicorn

    load_sites()  # a broken sites.yml is a one-line error here, not a traceback per worker
    country_of("127.0.0.1")  # so is a configured geo database that cannot be read
    with socket.socket() as sock:
        if sock.connect_ex(("127.0.0.1", port)) == 0:
            raise SitelineError(
                f"port {port} on {host} is in use; stop what uses it or pass --port"
            )
    uvicorn.run(
        "realtime.collector.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        # httptools with a request head limit (431 past 32 KB; httptools itself has none).
        http="realtime.collector.headlimit:HeadLimitedHttpToolsProtocol",
        # Only the site's trusted_proxies may set the client address (enrich.client_ip);
        # uvicorn would otherwise trust X-Forwarded-For from any loopback peer.
        proxy_headers=False,
        # Open event streams (/v1/stream) end when the stop begins (server_stopping); other
        # requests get this long. `siteline up` waits longer (COLLECTOR_STOP_GRACE).
        timeout_graceful_shutdown=3,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m realtime.collector")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        serve(args.host, args.port or settings().collector_port, args.workers)
    except SitelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
