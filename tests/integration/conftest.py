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


# `make test` runs two workers with --dist loadgroup: each group runs on one worker, in file
# order. The groups balance the slow files (measured: the truth test ~7 min, Superset,
# services and pipeline 2-4 min each), and the Superset tests follow the pipeline test on
# the same worker, whose marts they read.
WORKER_GROUPS = {
    "a": ["test_models_truth", "test_services", "test_warehouse", "test_collector",
          "test_collector_robustness", "test_event_bus", "test_tracker_browser",
          "test_tracker_delivery"],
    "b": ["test_pipeline", "test_quality_checks", "test_superset", "test_logfile_pulls"],
}  # fmt: skip
GROUP_OF = {module: group for group, modules in WORKER_GROUPS.items() for module in modules}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        group = GROUP_OF.get(item.module.__name__.rsplit(".", 1)[-1])
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


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
