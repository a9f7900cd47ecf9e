"""The real-time evaluator's pure parts: the verdict on a window, the weeks a condition
reads, the tick and the evaluated period in the site's time zone."""

from datetime import UTC, datetime

from ingestion.core.alert_config import AlertCondition
from ingestion.core.metrics import METRICS
from ingestion.core.sites import SitesConfig
from orchestration.alerts.live import judge_window, period_of, tick_of, weeks_needed

FAILURES = METRICS["payment_failures"]
ORDERS = METRICS["orders"]


def answer(value, previous=None, weeks=(), window=300) -> dict:
    return {
        "window_seconds": window,
        "value": value,
        "previous_window": {"value": previous},
        "previous_weeks": [{"weeks_ago": k + 1, "value": v} for k, v in enumerate(weeks)],
    }


def condition(**fields) -> AlertCondition:
    return AlertCondition.model_validate(fields)


def test_a_threshold_breaches_beyond_its_value():
    above = condition(type="above", value=5)
    j = judge_window(above, FAILURES, answer(7.0))
    assert (j.verdict, j.value, j.upper, j.lower) == ("breach", 7.0, 5.0, None)
    assert j.detail == "Payment failures 7 in the last 5 min is above 5"
    assert judge_window(above, FAILURES, answer(5.0)).verdict == "ok"
    below = condition(type="below", value=2)
    j = judge_window(below, ORDERS, answer(1.5))
    assert (j.verdict, j.lower) == ("breach", 2.0)
    assert j.detail == "Orders (live) 1.5 in the last 5 min is below 2"


def test_no_value_is_no_data():
    j = judge_window(condition(type="above", value=5), FAILURES, answer(None))
    assert (j.verdict, j.detail) == ("nodata", "Payment failures: no data")


def test_a_decrease_against_the_window_before_or_last_week():
    previous = condition(type="decrease", by=50)
    j = judge_window(previous, ORDERS, answer(4.0, previous=10.0, weeks=[4.0]))
    assert (j.verdict, j.baseline, j.lower) == ("breach", 10.0, 5.0)
    assert j.detail == "Orders (live) 4 in the last 5 min (-60%), 10 in the window before"
    assert judge_window(previous, ORDERS, answer(6.0, previous=10.0)).verdict == "ok"
    week = condition(type="decrease", by=50, compared_to="same_period_last_week")
    j = judge_window(week, ORDERS, answer(4.0, previous=10.0, weeks=[4.0]))
    assert (j.verdict, j.baseline) == ("ok", 4.0)
    j = judge_window(week, ORDERS, answer(4.0, previous=10.0, weeks=[None]))
    assert j.verdict == "nodata"
    assert j.detail.endswith("nothing to compare with (the same minutes last week: no data)")


def test_an_increase_in_absolute_terms_and_from_zero():
    absolute = condition(type="increase", by=3, unit="absolute")
    j = judge_window(absolute, FAILURES, answer(4.0, previous=0.0))
    assert (j.verdict, j.upper) == ("breach", 3.0)
    percent = condition(type="increase", by=100)
    assert judge_window(percent, FAILURES, answer(1.0, previous=0.0)).verdict == "breach"
    assert judge_window(percent, FAILURES, answer(0.0, previous=0.0)).verdict == "ok"
    assert judge_window(percent, FAILURES, answer(3.0, previous=2.0)).verdict == "ok"


def test_an_anomaly_against_the_same_window_of_previous_weeks():
    anomaly = condition(type="anomaly", weeks=4, threshold=3, min_change=20)
    # Median 20.5, MAD 1.0: the scale is max(1.4826 * 1.0, 10% of 20.5, 1) = 2.05.
    usual = [20.0, 22.0, 18.0, 21.0]
    j = judge_window(anomaly, ORDERS, answer(5.0, weeks=usual))
    assert j.verdict == "breach"
    assert j.baseline == 20.5
    assert (round(j.lower, 3), round(j.upper, 3)) == (14.35, 26.65)
    assert j.detail == (
        "Orders (live) 5 in the last 5 min, usually 20.5 (the same minutes of the last 4 "
        "weeks: 14.3 to 26.6)"
    )
    assert judge_window(anomaly, ORDERS, answer(19.0, weeks=usual)).verdict == "ok"
    down_only = condition(type="anomaly", weeks=4, threshold=3, direction="down")
    assert judge_window(down_only, ORDERS, answer(60.0, weeks=usual)).verdict == "ok"


def test_an_anomaly_needs_a_history_and_small_numbers_page_nobody():
    anomaly = condition(type="anomaly", weeks=4, threshold=3)
    j = judge_window(anomaly, FAILURES, answer(9.0, weeks=[1.0, None, None, None]))
    assert j.verdict == "nodata"
    # A flat history of zeros: one failure is within the band (the scale is at least 1) ...
    quiet = [0.0, 0.0, 0.0, 0.0]
    assert judge_window(anomaly, FAILURES, answer(1.0, weeks=quiet)).verdict == "ok"
    # ... eight are not.
    assert judge_window(anomaly, FAILURES, answer(8.0, weeks=quiet)).verdict == "breach"
    # min_volume: 8 failures where the rule wants at least 10 to speak.
    volume = condition(type="anomaly", weeks=4, threshold=3, min_volume=10)
    assert judge_window(volume, FAILURES, answer(8.0, weeks=quiet)).verdict == "ok"


def test_the_weeks_a_condition_reads():
    assert weeks_needed(condition(type="above", value=1)) == 0
    assert weeks_needed(condition(type="decrease", by=10)) == 0
    assert weeks_needed(condition(type="decrease", by=10,
                                  compared_to="same_period_last_week")) == 1  # fmt: skip
    assert weeks_needed(condition(type="anomaly", weeks=6)) == 6


def test_the_tick_and_its_period_in_the_site_time_zone():
    at = datetime(2026, 3, 10, 12, 4, 37, 500000, tzinfo=UTC).timestamp()
    tick = tick_of(at, 10)
    assert datetime.fromtimestamp(tick, UTC) == datetime(2026, 3, 10, 12, 4, 30, tzinfo=UTC)
    assert tick_of(at + 1.9, 10) == tick  # a re-run in the same tick: the same period
    site = SitesConfig.model_validate(
        {"sites": [{"id": "shop", "domains": ["shop.example"], "timezone": "Europe/Berlin"}]}
    ).sites[0]
    assert period_of(tick, 300, site) == (
        datetime(2026, 3, 10, 12, 59, 30),
        datetime(2026, 3, 10, 13, 4, 30),
    )


def test_a_window_kept_only_in_part_can_only_be_too_high():
    partial = {**answer(7.0), "complete": False}
    above = condition(type="above", value=5)
    assert judge_window(above, FAILURES, partial).verdict == "breach"  # 7 or more: too high
    j = judge_window(condition(type="above", value=9), FAILURES, partial)
    assert j.verdict == "nodata"  # 7 so far: maybe more
    assert j.detail.endswith("; the engine began keeping payment failures within it")
    below = condition(type="below", value=9)
    assert judge_window(below, FAILURES, partial).verdict == "nodata"
    # A baseline window kept in part is no baseline.
    week = condition(type="decrease", by=50, compared_to="same_period_last_week")
    half = answer(1.0)
    half["previous_weeks"] = [{"weeks_ago": 1, "value": 10.0, "complete": False}]
    assert judge_window(week, ORDERS, half).verdict == "nodata"


def test_a_tick_that_changes_nothing_is_not_stored():
    from ingestion.core.alert_config import AlertRule
    from orchestration.alerts.live import steady

    rule = AlertRule.model_validate({"id": "r", "metric": "orders", "window": "5m",
                                     "condition": {"type": "above", "value": 1}})  # fmt: skip
    assert steady("ok", "normal", rule)
    assert steady("nodata", "nodata", rule)
    assert not steady("ok", None, rule)  # a new instance: created by its first evaluation
    assert not steady("ok", "firing", rule)  # resolves
    assert not steady("ok", "resolved", rule)  # back to normal
    assert not steady("ok", "pending", rule)
    assert not steady("breach", "normal", rule)
    assert not steady("breach", "firing", rule)  # repeat notifications are due in time
    alerting = rule.model_copy(update={"no_data": "alerting"})
    assert not steady("nodata", "nodata", alerting)
