"""The engine's per-minute counters of the real-time alert metrics and their windows: what
counts, the window's sum with its edges in proportion, the same window in previous weeks,
active visitors exactly now and from the minute ends before."""

import uuid
from datetime import UTC, datetime

from ingestion.core.sites import SitesConfig
from realtime.engine.engine import Engine
from realtime.engine.windows import (
    ACTIVE_MINUTES,
    WEEK,
    MemoryWindows,
    counted,
    interpolate_active,
)

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC).timestamp()  # a minute's start
ORDERS, ERRORS, FAILURES = (0,), (1,), (2,)
SITE = {
    "id": "shop",
    "domains": ["shop.example"],
    "page_labels": [{"label": "Checkout", "path": "^/(cart|checkout/)"}],
}


def label(path: str | None) -> str:
    return "Checkout" if path and path.startswith("/checkout/") else "Other"


def test_what_each_alert_metric_counts():
    url = "https://shop.example/checkout/pay"
    assert counted({"type": "transaction", "order_id": "1", "revenue": 5}, label) == (0,)
    error = {"type": "event", "category": "error", "action": "javascript_error", "url": url}
    assert counted(error, label) == (1,)
    http = {**error, "action": "http_error", "value": 502}
    assert counted(http, label) == (1,)
    elsewhere = {**error, "url": "https://shop.example/p/1"}
    assert counted(elsewhere, label) == ()  # an error off the checkout pages
    failed = {"type": "event", "category": "ecommerce", "action": "payment_failed", "url": url}
    assert counted(failed, label) == (2,)
    assert counted({"type": "page_view", "url": url}, label) == ()
    assert counted({"type": "event", "category": "ecommerce", "action": "add_to_cart"}, label) == ()


def windows_with_history() -> MemoryWindows:
    """Orders a week ago (3 in the minute at T0 - 1 week) and now (2 at T0, 1 at T0+1m)."""
    w = MemoryWindows(weeks=2)
    w.record("shop", "early", T0 - WEEK - 3600, ())  # kept since an hour before last week
    for second in (5, 20, 40):
        w.record("shop", f"old{second}", T0 - WEEK + second, ORDERS)
    w.record("shop", "a", T0 + 10, ORDERS)
    w.record("shop", "b", T0 + 20, ORDERS)
    w.record("shop", "c", T0 + 70, ORDERS)
    return w


def test_a_window_sums_its_minutes_and_the_same_window_of_last_week():
    w = windows_with_history()
    answer = w.answer("shop", "orders", T0 + 120, 120, weeks=2, now=T0 + 120)
    assert answer["value"] == 3.0
    assert answer["start"] == "2026-03-10T12:00:00.000Z"
    assert answer["end"] == "2026-03-10T12:02:00.000Z"
    assert answer["previous_window"]["value"] == 0.0
    assert [(p["weeks_ago"], p["start"], p["value"]) for p in answer["previous_weeks"]] == [
        (1, "2026-03-03T12:00:00.000Z", 3.0),
        (2, "2026-02-24T12:00:00.000Z", None),  # before the engine kept anything
    ]
    assert answer["kept_since"] == "2026-03-03T11:00:00.000Z"


def test_recent_minutes_count_by_the_second_older_ones_in_proportion():
    w = windows_with_history()
    # The last three minutes are also kept by the second: (T0+30, T0+90] holds the order of
    # T0+70 only, and a window ending a little before now counts exactly what came by then.
    assert w.value("shop", "orders", T0 + 30, T0 + 90, now=T0 + 90) == 1.0
    assert w.value("shop", "orders", T0 - 225, T0 + 75, now=T0 + 78) == 3.0
    assert w.value("shop", "orders", T0 - 225, T0 + 65, now=T0 + 78) == 2.0
    # Later, by minutes: half of minute T0 (2 orders) and half of minute T0+1m (1 order).
    assert w.value("shop", "orders", T0 + 30, T0 + 90, now=T0 + 600) == 1.5
    # The same 60 s a week ago: half of the minute of 3 orders.
    assert w.value("shop", "orders", T0 + 30 - WEEK, T0 + 90 - WEEK, now=T0 + 90) == 1.5


def test_windows_outside_what_is_kept_have_no_value():
    w = windows_with_history()
    assert w.value("shop", "orders", T0 - WEEK - 7200, T0 - WEEK - 7000, T0) is None
    assert w.value("shop", "orders", T0 - 3 * WEEK, T0 - 3 * WEEK + 60, T0) is None
    assert w.value("shop", "orders", T0, T0 + 60, now=T0 + 30) is None  # ends in the future
    assert w.value("nowhere", "orders", T0, T0 + 60, now=T0 + 60) is None
    assert w.answer("nowhere", "orders", T0 + 60, 60, 1, T0 + 60)["value"] is None


def test_each_counter_keeps_its_own_figures():
    w = MemoryWindows(weeks=1)
    w.record("shop", "a", T0 + 1, ERRORS)
    w.record("shop", "a", T0 + 2, ERRORS)
    w.record("shop", "b", T0 + 3, FAILURES)
    w.record("other", "c", T0 + 4, FAILURES)
    at = T0 + 60
    assert w.value("shop", "checkout_errors", T0, at, at) == 2.0
    assert w.value("shop", "payment_failures", T0, at, at) == 1.0
    assert w.value("shop", "orders", T0, at, at) == 0.0
    assert w.value("other", "payment_failures", T0, at, at) == 1.0


def test_active_visitors_now_are_counted_exactly_and_before_from_the_minute_ends():
    w = MemoryWindows(weeks=1)
    w.record("shop", "x", T0 - WEEK + 5, ())
    w.record("shop", "y", T0 - WEEK + 50, ())
    w.record("shop", "a", T0 + 5, ())
    w.record("shop", "b", T0 + 30, ())
    w.record("shop", "a", T0 + 40, ())  # the same visitor again
    w.record("shop", "c", T0 + 65, ())
    now = T0 + 100
    w.close_until(now)
    assert w.value("shop", "active_visitors", now - 60, now, now) == 1.0  # c
    assert w.value("shop", "active_visitors", now - 120, now, now) == 3.0  # a, b, c
    later = T0 + 600
    w.close_until(later)
    # At the end of minute T0+1m: the last 1 minute held c, the last 2 minutes a, b, c.
    assert w.value("shop", "active_visitors", T0 + 60, T0 + 120, later) == 1.0
    assert w.value("shop", "active_visitors", T0, T0 + 120, later) == 3.0
    # Between two minute ends: interpolated (2 at T0+1m, 1 at T0+2m).
    assert w.value("shop", "active_visitors", T0 + 30, T0 + 90, later) == 1.5
    # A week ago: x and y in the same two minutes.
    assert w.value("shop", "active_visitors", T0 - WEEK, T0 - WEEK + 120, later) == 2.0
    # Nobody for the last 5 minutes.
    assert w.value("shop", "active_visitors", later - 300, later - 120, later) == 0.0


def test_a_window_between_two_kept_sizes_is_interpolated():
    figures = [1, 2, 3, 4, 5, 10, 10, 20, 20, 20, 40]
    assert len(figures) == len(ACTIVE_MINUTES)
    assert interpolate_active(figures, 300) == 5.0
    assert interpolate_active(figures, 450) == 7.5  # 7.5 minutes: halfway from 5 to 10
    assert interpolate_active(figures, 3600) == 40.0
    assert interpolate_active(figures, 30) == 0.5


def event(kind: str, at: float, visitor: str, **fields) -> dict:
    moment = datetime.fromtimestamp(at, UTC).isoformat()
    return {
        "event_id": str(uuid.uuid4()), "type": kind, "site_id": "shop", "visitor_id": visitor,
        "occurred_at": moment, "sent_at": moment, "received_at": moment, "is_bot": False,
        "url": "https://shop.example/checkout/pay", **fields,
    }  # fmt: skip


def test_the_engine_counts_the_events_it_applies_but_not_bots_or_repeats():
    engine = Engine(SitesConfig.model_validate({"sites": [SITE]}))
    failed = event("event", T0 + 1, "v1", category="ecommerce", action="payment_failed")
    engine.handle([
        event("page_view", T0, "v1"),
        failed,
        failed,  # a retried delivery: applied once
        event("event", T0 + 2, "v2", category="error", action="javascript_error"),
        event("event", T0 + 3, "bot", category="ecommerce", action="payment_failed", is_bot=True),
        event("transaction", T0 + 4, "v1", order_id="o1", revenue=10),
    ])  # fmt: skip
    answer = engine.windows.answer
    now = T0 + 60
    assert answer("shop", "payment_failures", now, 60, 0, now)["value"] == 1.0
    assert answer("shop", "checkout_errors", now, 60, 0, now)["value"] == 1.0
    assert answer("shop", "orders", now, 60, 0, now)["value"] == 1.0
    assert answer("shop", "active_visitors", now, 60, 0, now)["value"] == 2.0  # not the bot


def test_from_its_start_the_engine_counts_zeros_and_a_window_begun_before_is_incomplete():
    w = MemoryWindows(weeks=1)
    w.begin(["shop"], T0 + 30)
    answer = w.answer("shop", "orders", T0 + 600, 300, weeks=1, now=T0 + 600)
    assert (answer["value"], answer["complete"]) == (0.0, True)  # nothing happened: 0
    assert (answer["previous_window"]["value"], answer["previous_window"]["complete"]) == (
        0.0,
        False,  # (T0, T0+300]: the engine began at T0+30
    )
    assert answer["previous_weeks"] == [
        {"weeks_ago": 1, "start": "2026-03-03T12:05:00.000Z", "end": "2026-03-03T12:10:00.000Z",
         "value": None, "complete": False}
    ]  # fmt: skip
    w.begin(["shop"], T0 + 900)  # a later start keeps the first
    assert w.kept_since("shop") == T0 + 30
