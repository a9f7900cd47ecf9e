"""Shared fixtures of the integration tests: a shop page on its own loopback origin."""

import functools
import http.server
import threading

import pytest

from tests.integration.servers import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture()
def shop(tmp_path):
    """A shop page on its own loopback origin, and a sites.yml that allows that origin."""
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: demo\n    domains: [127.0.0.1]\n"
        f"    allowed_origins: ['{origin}']\n    timezone: Europe/Berlin\n"
    )
    docroot = tmp_path / "www"
    docroot.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(docroot))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield origin, docroot, sites
    httpd.shutdown()
