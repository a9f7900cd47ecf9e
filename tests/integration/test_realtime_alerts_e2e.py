"""Real-time alert rules end to end: payment failures posted to a real collector (the engine
inside it) are judged by the live evaluator over the engine's API, stored in the warehouse's
alerts schema (real PostgreSQL) and delivered by the outbox to a webhook receiver on loopback
(the edge of the world) - once, however often the tick is evaluated."""

import http.server
import json
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.integration.servers import collector
from tests.integration.test_realtime_alerts import ENV, KEY, OTHER_KEY, event, post, sites_yml

pytestmark = pytest.mark.integration


class Webhook:
    """A webhook receiver on loopback (the edge of the world): the JSON bodies posted."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def test_payment_failures_posted_to_the_collector_reach_a_webhook_once(
    tmp_path, warehouse, monkeypatch
):
    from ingestion.core.sites import load_sites
    from ingestion.core.warehouse import connect
    from orchestration.alerts.live import EngineWindows, LiveEvaluator, tick_of

    hook = Webhook()
    sites = sites_yml(tmp_path / "sites.yml")
    sites.write_text(
        sites.read_text()
        + f"""
alerts:
  contact_points:
    - {{name: hook, type: webhook, url: '{hook.url}', format: json}}
  rules:
    - id: payment_failures_live
      metric: payment_failures
      window: 1m
      sites: [demo]
      condition: {{type: above, value: 1}}
      severity: critical
      contact_points: [hook]
"""
    )
    monkeypatch.setenv("RT_DEMO_KEY", KEY)  # the evaluator reads the keys as the engine does
    monkeypatch.setenv("RT_OTHER_KEY", OTHER_KEY)
    config = load_sites(sites)
    with collector(tmp_path / "landing", sites_file=sites, **ENV) as (url, _):
        evaluator = LiveEvaluator(config, EngineWindows(config, url=url))
        with connect(warehouse, autocommit=True) as conn:
            quiet = tick_of(datetime.now(UTC).timestamp(), 1)
            # The engine began within this window: 0 so far says nothing yet.
            assert evaluator.tick(conn, quiet) == {"nodata": 1}
            assert hook.bodies == []
            post(url, event("event", "v1", "/checkout/pay", category="ecommerce",
                            action="payment_failed"),
                 event("event", "v2", "/checkout/pay", category="ecommerce",
                       action="payment_failed"))  # fmt: skip
            at = tick_of(datetime.now(UTC).timestamp(), 1)
            while at <= quiet:  # another tick than the quiet one
                time.sleep(0.05)
                at = tick_of(datetime.now(UTC).timestamp(), 1)
            assert evaluator.tick(conn, at) == {"breach": 1}
            assert evaluator.tick(conn, at) == {"breach": 1}  # a re-run of the tick
            state = conn.execute(
                "select state, last_value from alerts.instances"
                " where rule_id = 'payment_failures_live'"
            ).fetchone()
            runs = conn.execute(
                "select count(*) from alerts.evaluation_runs where kind = 'realtime'"
            ).fetchone()
    hook.close()
    assert state == ("firing", 2.0)
    assert runs == (2,)  # the quiet tick (it created the instance) and the firing one
    assert len(hook.bodies) == 1, hook.bodies  # the re-run sent nothing again
    text = str(hook.bodies[0])
    for expected in ("payment_failures_live", "'site_id': 'demo'", "firing", "2.0"):
        assert expected in text
