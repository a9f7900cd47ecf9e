"""The instance state machine: Grafana's states, a pending period, notifications on firing,
on resolve and at the repeat interval."""

from datetime import UTC, datetime, timedelta

from orchestration.alerts.states import InstanceState, step

T0 = datetime(2026, 12, 7, 9, tzinfo=UTC)


def run(verdicts, *, for_periods=1, repeat=3600, no_data="nodata", every=timedelta(hours=1)):
    state, seen = InstanceState(), []
    for i, verdict in enumerate(verdicts):
        moved = step(state, verdict, for_periods=for_periods, repeat_seconds=repeat,
                     no_data=no_data, now=T0 + i * every)  # fmt: skip
        state = moved.after
        seen.append((state.state, moved.notify))
    return seen


def test_pending_then_firing_then_resolved_then_normal():
    # a breach an hour after the firing one: the repeat interval (1 h) has passed
    assert run(["ok", "breach", "breach", "breach", "ok", "ok"], for_periods=2) == [
        ("normal", None),
        ("pending", None),
        ("firing", "firing"),
        ("firing", "repeat"),
        ("resolved", "resolved"),
        ("normal", None),
    ]


def test_a_single_breach_below_the_pending_period_notifies_nobody():
    assert run(["breach", "ok", "breach", "ok"], for_periods=2) == [
        ("pending", None), ("normal", None), ("pending", None), ("normal", None),
    ]  # fmt: skip


def test_repeat_only_after_the_interval():
    seen = run(["breach"] * 5, repeat=2 * 3600)
    assert [n for _, n in seen] == ["firing", None, "repeat", None, "repeat"]


def test_no_data_handling_follows_the_rule():
    # leaving Firing for NoData tells whoever was paged that it is over
    assert run(["breach", "nodata"]) == [("firing", "firing"), ("nodata", "resolved")]
    assert run(["ok", "nodata", "ok"]) == [("normal", None), ("nodata", None), ("normal", None)]
    assert run(["breach", "nodata"], no_data="ok") == [
        ("firing", "firing"),
        ("resolved", "resolved"),
    ]
    assert run(["nodata", "nodata"], no_data="alerting") == [
        ("firing", "firing"),
        ("firing", "repeat"),
    ]


def test_error_notifies_once_and_its_end_is_told():
    assert run(["error", "error", "ok", "ok"]) == [
        ("error", "firing"), ("error", None), ("resolved", "resolved"), ("normal", None),
    ]  # fmt: skip


def test_transitions_name_from_and_to():
    moved = step(InstanceState("firing", 3, T0), "ok", for_periods=1, repeat_seconds=60,
                 no_data="nodata", now=T0)  # fmt: skip
    assert moved.transition == ("firing", "resolved")
    assert moved.after == InstanceState("resolved", 0, T0)
    same = step(InstanceState("normal"), "ok", for_periods=1, repeat_seconds=60,
                no_data="nodata", now=T0)  # fmt: skip
    assert same.transition is None
