"""What the contact points say, without sending anything: subjects, values, SMS lines, the
chart's spec, masked URLs, the retry waits."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from orchestration.alerts.chart import chart_spec
from orchestration.alerts.contacts import Message, mask_url
from orchestration.alerts.contacts import render as r
from orchestration.alerts.contacts.sms import body
from orchestration.alerts.outbox import RetryPolicy, _jsonable, _masked


def item(kind="firing", severity="critical", rule="Revenue drop", site="demo", **kw):
    return {"kind": kind, "severity": severity, "rule_name": rule, "rule_id": "r",
            "site_name": site, "site_id": site, "reason": "Revenue 812 EUR is 41% below the "
            "previous day (1,377 EUR)", "unit": "currency", "currency": "EUR", "value": 812.0,
            "grain": "day", **kw}  # fmt: skip


@pytest.mark.parametrize(
    ("items", "subject"),
    [
        ([item()], "[FIRING:1] critical - Revenue drop (demo)"),
        ([item(), item(site="shop")], "[FIRING:2] critical - Revenue drop (2 sites)"),
        ([item(kind="resolved")], "[RESOLVED] critical - Revenue drop (demo)"),
        ([item(kind="repeat", severity="warning"), item(kind="resolved", rule="Bot flood")],
         "[FIRING:1, RESOLVED:1] warning - 2 rules (demo)"),
        ([item(severity="info"), item(severity="critical", rule="Errors")],
         "[FIRING:2] critical - 2 rules (demo)"),
        ([item(kind="test", rule="Test notification")], "[TEST] Siteline alerts - Test notification"),
    ],
)  # fmt: skip
def test_subjects(items, subject):
    assert r.subject(items) == subject


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(1377.0, "count", "1,377"), (812.4, "currency", "812 EUR"), (12.5, "currency", "12.50 EUR"),
     (0.4123, "ratio", "41.2%"), (850.0, "milliseconds", "850 ms"), (63.25, "seconds", "63.2 s"),
     (None, "count", "no data"), (math.nan, "count", "no data"), (2.5, "count", "2.50")],
)  # fmt: skip
def test_values_read_as_people_write_them(value, unit, text):
    assert r.value_text(value, unit, "EUR") == text


def test_an_sms_line_is_at_most_160_characters_and_a_body_at_most_1600():
    long = item(reason="x" * 400, dimension="channel", dimension_value="paid")
    assert len(r.one_line(long)) == 160 and r.one_line(long).endswith("…")
    many = Message(1, "sms", "s", [long] * 30, datetime(2026, 1, 1, tzinfo=UTC))
    text = body(many)
    assert len(text) <= 1600 and text.endswith("more")


def test_urls_in_errors_keep_only_their_host():
    assert (
        mask_url("https://hooks.slack.com/services/T1/B2/secret") == "https://hooks.slack.com/***"
    )
    assert mask_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    assert _masked("webhook https://user:pw@x.test:8443/a?token=s: ConnectError") == (
        "webhook https://x.test:8443/***: ConnectError"
    )


def test_the_chart_marks_the_period_of_the_message_and_skips_missing_values():
    series = [["2026-12-05T00:00:00", 1300, 1100, 1500], ["2026-12-06 00:00:00", None, None, 1500],
              ["2026-12-07T00:00:00", float("nan"), None, None]]  # fmt: skip
    spec = chart_spec(item(series=series, period_start="2026-12-06"))
    rows = spec["data"]["values"]
    assert [row["marked"] for row in rows] == [False, True, False]
    assert [row["value"] for row in rows] == [1300.0, None, None]
    assert chart_spec(item(series=[["2026-12-05", None, 1, 2]])) is None
    assert chart_spec(item(series=[])) is None


def test_payloads_hold_what_jsonb_takes():
    import numpy as np

    payload = {"value": float("nan"), "baseline": np.float64(3.5), "n": np.int64(2),
               "series": [(datetime(2026, 12, 6), np.nan, None, np.inf)]}  # fmt: skip
    assert _jsonable(payload) == {"value": None, "baseline": 3.5, "n": 2,
                                  "series": [["2026-12-06T00:00:00", None, None, None]]}  # fmt: skip


def test_retries_wait_longer_each_time_up_to_a_cap():
    policy = RetryPolicy(first_wait=30, factor=2, max_wait=300)
    assert [policy.wait(n) for n in range(1, 7)] == [30, 60, 120, 240, 300, 300]
