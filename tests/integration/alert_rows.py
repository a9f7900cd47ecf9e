"""A small alerts history written straight into the ``alerts`` tables, as the evaluator and
the outbox would have written it: test data for the alerts marts, their grants and the
Alerts dashboard (the evaluator itself is tested on its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from orchestration.alerts.store import ensure_schema

# What the message payload and the channel's error hold, which bi_reader must never read.
RECIPIENT = "oncall@shop.example"
WEBHOOK_TOKEN = "T000-B000-secret-token"

# Names no other test's alerts use: the test session's warehouse is shared between modules.
RULE_ID = "sample_revenue_drop"
RULE_NAME = "Revenue drop (sample)"
CONTACT_POINT = "sample_ops"
SERIES = f"{RULE_NAME} · demo"  # alert_series of the instance on site demo
RULE = {
    "id": RULE_ID, "name": RULE_NAME, "metric": "revenue", "grain": "day",
    "severity": "critical", "condition": {"type": "decrease", "by": 30, "unit": "percent"},
}  # fmt: skip
DAYS = 14
FIRST_DAY = datetime(2026, 11, 16)
FIRED_DAY = 10  # revenue halves that day and on the last day: the instance fires both times


def revenue(site: str, day: int) -> float:
    base = 1000.0 if site == "demo" else 600.0
    return base / 2 if site == "demo" and day in (FIRED_DAY, DAYS - 1) else base + 10 * day


def alert_rows_present(conn) -> bool:
    """Whether :func:`insert_alert_rows` ran in this database already."""
    if conn.execute("select to_regclass('alerts.rule_versions')").fetchone()[0] is None:
        return False
    found = conn.execute("select 1 from alerts.rule_versions where rule_id = %s", (RULE_ID,))
    return found.fetchone() is not None


def insert_alert_rows(conn) -> None:
    """Rule ``sample_revenue_drop`` on sites ``demo`` and ``shop``, 14 days each; ``demo`` fired
    on day 10, resolved on day 11 and fired again on day 13 (firing now); two notifications
    (one sent, one failed with an error quoting a webhook URL)."""
    ensure_schema(conn)
    with conn.transaction():
        conn.execute(
            "insert into alerts.rule_versions (rule_id, rule_version, definition) "
            "values (%s, 'v1', %s)",
            (RULE_ID, json.dumps(RULE)),
        )
        for site in ("demo", "shop"):
            instance = f"{RULE_ID}/{site}"
            state = "firing" if site == "demo" else "normal"
            conn.execute(
                "insert into alerts.instances (instance_id, rule_id, site_id, state, "
                "rule_version, last_period_start, last_value) values (%s, %s, %s, "
                "%s, 'v1', %s, %s)",
                (instance, RULE_ID, site, state, FIRST_DAY + timedelta(days=DAYS - 1),
                 revenue(site, DAYS - 1)),
            )  # fmt: skip
            for day in range(DAYS):
                start = FIRST_DAY + timedelta(days=day)
                value, baseline = revenue(site, day), revenue(site, day - 1)
                breach = site == "demo" and day in (FIRED_DAY, DAYS - 1)
                if breach:
                    state = "firing"
                elif site == "demo" and day == FIRED_DAY + 1:
                    state = "resolved"
                else:
                    state = "normal"
                conn.execute(
                    "insert into alerts.evaluations (instance_id, period_start, period_end, "
                    "period_start_utc, value, volume, baseline, lower_bound, upper_bound, "
                    "verdict, detail, state, evaluation_id, rule_version) values "
                    "(%s, %s, %s, %s, %s, 100, %s, %s, null, %s, %s, %s, %s, 'v1')",
                    (instance, start, start + timedelta(days=1),
                     start.replace(tzinfo=UTC) - timedelta(hours=1), value, baseline,
                     baseline * 0.7, "breach" if breach else "ok", f"Revenue {value:.0f} EUR",
                     state, f"run-{day}"),
                )  # fmt: skip
        for day, from_state, to_state in ((FIRED_DAY, "normal", "firing"),
                                          (FIRED_DAY + 1, "firing", "resolved"),
                                          (DAYS - 1, "resolved", "firing")):  # fmt: skip
            conn.execute(
                "insert into alerts.transitions (instance_id, rule_id, site_id, from_state, "
                "to_state, period_start, value, evaluation_id) values (%s, %s, 'demo', %s, %s, "
                "%s, %s, %s)",
                (f"{RULE_ID}/demo", RULE_ID, from_state, to_state, FIRST_DAY + timedelta(days=day),
                 revenue("demo", day), f"run-{day}"),
            )  # fmt: skip
        sent_at = datetime(2026, 11, 27, 6, 0, 12, tzinfo=UTC)
        for day, status, error in ((FIRED_DAY, "sent", None),
                                   (FIRED_DAY + 1, "failed",
                                    f"500 from https://hooks.slack.example/{WEBHOOK_TOKEN}")):  # fmt: skip
            (notification,) = conn.execute(
                "insert into alerts.notifications (contact_point, evaluation_id, subject, "
                "status, attempts, created_at, sent_at, last_error) values (%s, %s, %s, %s, "
                "%s, %s, %s, %s) returning notification_id",
                (CONTACT_POINT, f"run-{day}", f"[{status}] {RULE_NAME} on demo", status,
                 1 if status == "sent" else 5, sent_at - timedelta(seconds=12),
                 sent_at if status == "sent" else None, error),
            ).fetchone()  # fmt: skip
            conn.execute(
                "insert into alerts.notification_items (contact_point, dedupe_key, "
                "notification_id, instance_id, kind, payload) values (%s, %s, %s, %s, %s, %s)",
                (CONTACT_POINT, f"{RULE_ID}/demo/{day}", notification, f"{RULE_ID}/demo",
                 "firing" if day == FIRED_DAY else "resolved",
                 json.dumps({"to": [RECIPIENT], "text": "Revenue 500 EUR is 50% below"})),
            )  # fmt: skip


def build_alerts_marts(*args: str) -> None:
    """dbt builds the alerts marts and their staging views alone, as `siteline dbt` does."""
    result = subprocess.run(
        [sys.executable, "-m", "orchestration.cli", "dbt", "build", "--select",
         "path:models/staging/alerts", "path:models/marts/alerts",
         "--exclude", "tag:incremental_scope", *args],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
