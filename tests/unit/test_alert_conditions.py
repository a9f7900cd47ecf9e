"""Judging a series against a rule's condition (orchestration/alerts/conditions.py), with
hand-computed medians and MADs."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from ingestion.core.alert_config import AlertCondition
from orchestration.alerts.conditions import (
    Judgement,
    history_needed,
    judge,
    judge_all,
    periods_read,
)
from orchestration.alerts.periods import periods_between
from orchestration.alerts.series import Series

NAN = math.nan


def series(values, start=datetime(2026, 3, 2), grain="day", volumes=None, unit="count",
           label="Visits", tz="Europe/Berlin", currency="EUR") -> Series:  # fmt: skip
    step = {"day": timedelta(days=1), "hour": timedelta(hours=1)}[grain]
    end = start + step * len(values)
    periods = periods_between(start, end, grain, tz)
    assert len(periods) == len(values)
    return Series(
        site_id="shop", dimension_value=None, metric="sessions", label=label, unit=unit,
        grain=grain, timezone=tz, currency=currency, periods=periods,
        values=np.array(values, dtype=float),
        volumes=np.array(volumes if volumes is not None else values, dtype=float),
    )  # fmt: skip


def weekly(history: list[float], value: float, filler: float = 500.0, **kw) -> Series:
    """A daily series ending on the judged day, whose same weekday 1, 2, ... weeks back holds
    ``history[0]``, ``history[1]``, ...; the other days hold ``filler``."""
    days = 7 * len(history) + 1
    values = [filler] * days
    for k, v in enumerate(history, start=1):
        values[days - 1 - 7 * k] = v
    values[-1] = value
    return series(values, **kw)


def anomaly(**kw) -> AlertCondition:
    return AlertCondition(type="anomaly", **kw)


# --- below / above ---------------------------------------------------------------------------


def test_below_and_above_a_value():
    s = series([120, 80, NAN])
    below = AlertCondition(type="below", value=100)
    assert judge(below, s, "day", 0) == Judgement(
        "ok", 120.0, 120.0, 100.0, 100.0, None, "Visits 120 is not below 100"
    )
    assert judge(below, s, "day", 1) == Judgement(
        "breach", 80.0, 80.0, 100.0, 100.0, None, "Visits 80 is below 100"
    )
    j = judge(below, s, "day", 2)
    assert (j.verdict, j.value, j.detail) == (
        "nodata",
        None,
        "Visits: no data for the day 2026-03-04",
    )
    above = judge(AlertCondition(type="above", value=0.5), series(
        [0.62], unit="ratio", label="Bounce rate", volumes=[200]), "day", 0)  # fmt: skip
    assert (above.verdict, above.upper, above.lower, above.volume) == ("breach", 0.5, None, 200.0)
    assert above.detail == "Bounce rate 62.0% is above 50.0%"


# --- decrease / increase ---------------------------------------------------------------------


def test_revenue_decrease_against_the_previous_day_in_the_sites_currency():
    s = series([1377, 812], unit="currency", label="Revenue", volumes=[30, 20])
    condition = AlertCondition(type="decrease", by=20)
    j = judge(condition, s, "day", 1)
    assert j.verdict == "breach"
    assert j.baseline == 1377 and j.value == 812 and j.volume == 20
    assert j.lower == pytest.approx(1377 - 275.4) and j.upper == pytest.approx(1377 + 275.4)
    assert j.detail == "Revenue 812 EUR is 41% below the previous day (1,377 EUR)"
    # a fall of 19%: within the 20% allowed
    ok = judge(condition, series([1000, 810], unit="currency", label="Revenue"), "day", 1)
    assert ok.verdict == "ok"
    assert ok.detail == (
        "Revenue 810 EUR is 19% below the previous day (1,000 EUR); alert when it decreases "
        "by more than 20%"
    )
    # exactly 20% is not "more than 20%"
    assert judge(condition, series([1000, 800]), "day", 1).verdict == "ok"


def test_increase_by_an_absolute_amount_against_the_same_day_last_week():
    values = [40, 0, 0, 0, 0, 0, 0, 95]  # Monday 2 March 40, Monday 9 March 95
    condition = AlertCondition(
        type="increase", by=50, unit="absolute", compared_to="same_period_last_week"
    )
    j = judge(condition, series(values, label="HTTP 5xx responses"), "day", 7)
    assert (j.verdict, j.baseline, j.lower, j.upper) == ("breach", 40.0, -10.0, 90.0)
    assert j.detail == "HTTP 5xx responses 95 is 138% above the same day last week (40)"
    assert judge(condition, series([40, 0, 0, 0, 0, 0, 0, 90]), "day", 7).verdict == "ok"


def test_an_increase_from_nothing_is_a_breach_of_a_percent_increase_not_of_a_decrease():
    s = series([0, 3])
    assert judge(AlertCondition(type="increase", by=50), s, "day", 1).verdict == "breach"
    assert judge(AlertCondition(type="decrease", by=50), s, "day", 1).verdict == "ok"
    assert judge(AlertCondition(type="increase", by=50), series([0, 0]), "day", 1).verdict == "ok"


def test_no_compared_period_or_no_value_is_nodata_and_says_so():
    condition = AlertCondition(type="decrease", by=10)
    first = judge(condition, series([100, 90]), "day", 0)
    assert first.verdict == "nodata"
    assert first.detail == "Visits 100; no data for the previous day to compare with"
    gap = judge(condition, series([NAN, 90], unit="ratio", label="Bounce rate"), "day", 1)
    assert gap.verdict == "nodata" and gap.baseline is None
    last_year = AlertCondition(type="decrease", by=10, compared_to="same_period_last_year")
    assert judge(last_year, series([100, 90]), "day", 1).detail == (
        "Visits 90; no data for the same day last year to compare with"
    )


def test_the_same_day_last_year_across_29_february():
    # daily from 28 February 2027 to 1 March 2028: 2028 is a leap year
    start = datetime(2027, 2, 28)
    days = (datetime(2028, 3, 2) - start).days
    values = [100.0] * days
    values[0] = 200.0  # 28 February 2027
    values[1] = 300.0  # 1 March 2027
    s = series(values, start=start)
    condition = AlertCondition(type="decrease", by=40, compared_to="same_period_last_year")
    feb29 = s.index(datetime(2028, 2, 29))
    j = judge(condition, s, "day", feb29)
    assert (j.verdict, j.baseline) == ("breach", 200.0)  # 29 Feb 2028 against 28 Feb 2027
    assert j.detail == "Visits 100 is 50% below the same day last year (200)"
    march1 = judge(condition, s, "day", s.index(datetime(2028, 3, 1)))
    assert (march1.verdict, march1.baseline) == ("breach", 300.0)
    feb28 = judge(condition, s, "day", s.index(datetime(2028, 2, 28)))
    assert feb28.baseline == 200.0  # 28 Feb 2028 against 28 Feb 2027


# --- anomaly ---------------------------------------------------------------------------------


def test_anomaly_median_and_mad_computed_by_hand():
    # the last four Mondays: 100, 110, 90, 130 -> median 105; |x - 105| = 5, 5, 15, 25 ->
    # MAD 10, scaled 14.826; band 105 -/+ 3.5 * 14.826 = 53.109 .. 156.891
    condition = anomaly(weeks=4)
    j = judge(condition, weekly([100, 110, 90, 130], 50), "day", -1)
    assert j.verdict == "breach"
    assert j.baseline == 105.0
    assert j.lower == pytest.approx(53.109) and j.upper == pytest.approx(156.891)
    assert j.detail == (
        "Visits 50 is 3.7 robust deviations below the usual 105 on Mondays (median of 4 weeks; "
        "band 53.1 to 156.9)"
    )
    # z = (60 - 105) / 14.826 = -3.04: inside the band
    assert judge(condition, weekly([100, 110, 90, 130], 60), "day", -1).verdict == "ok"
    # the direction: a drop is no breach of an 'up' rule
    up = anomaly(weeks=4, direction="up")
    assert judge(up, weekly([100, 110, 90, 130], 50), "day", -1).verdict == "ok"
    assert judge(up, weekly([100, 110, 90, 130], 160), "day", -1).verdict == "breach"


def test_one_past_incident_does_not_move_the_baseline():
    # seven normal Mondays and one outage (0): median 100, MAD 2 -> scaled 2.9652
    history = [100, 98, 102, 0, 101, 99, 100, 103]
    j = judge(anomaly(), weekly(history, 70), "day", -1)
    assert j.baseline == 100.0
    assert j.lower == pytest.approx(100 - 3.5 * 1.4826 * 1.5)
    assert j.verdict == "breach"


def test_a_mad_of_zero_uses_the_mean_deviation_then_a_floor_of_one_percent():
    # 100, 100, 100, 160: MAD 0; mean |x - 100| = 15 -> scale 1.2533 * 15 = 18.80;
    # 160 is (160 - 100) / 18.80 = 3.19 deviations: inside 3.5
    j = judge(anomaly(weeks=4), weekly([100, 100, 100, 160], 160), "day", -1)
    assert j.verdict == "ok"
    assert j.upper == pytest.approx(100 + 3.5 * 1.2533 * 15)
    # four equal weeks: the scale is 1% of the median (1.0), the band 96.5 .. 103.5
    flat = weekly([100, 100, 100, 100], 130)
    j = judge(anomaly(weeks=4), flat, "day", -1)
    assert (j.verdict, j.lower, j.upper) == ("breach", 96.5, 103.5)
    assert j.detail.startswith("Visits 130 is 30.0 robust deviations above the usual 100")
    # 15% off the median is 15 deviations away, but under min_change (20%)
    small = judge(anomaly(weeks=4), weekly([100, 100, 100, 100], 115), "day", -1)
    assert small.verdict == "ok"
    assert small.detail.endswith("; not alerting: a change of 15% is under min_change 20%")
    # a median of 0 (no 5xx usually): the floor keeps it finite
    zero = judge(anomaly(weeks=4, min_change=0), weekly([0, 0, 0, 0], 4), "day", -1)
    assert zero.verdict == "breach" and zero.upper == pytest.approx(3.5e-9)


def test_min_volume_reads_the_median_volume_of_the_baseline():
    values = weekly([0.30, 0.32, 0.28, 0.31], 0.60, unit="ratio", label="Bounce rate")
    volumes = np.full(len(values.values), 500.0)
    for k, v in enumerate([40, 50, 60, 70], start=1):
        volumes[-1 - 7 * k] = v
    values.volumes = volumes
    j = judge(anomaly(weeks=4, min_volume=100), values, "day", -1)
    assert j.verdict == "ok"
    assert j.detail.endswith("not alerting: the baseline's volume 55 is under min_volume 100")
    assert judge(anomaly(weeks=4, min_volume=50), values, "day", -1).verdict == "breach"


def test_too_little_history_is_nodata():
    s = weekly([100, 110, 90], 10)  # three Mondays; eight weeks asked, four needed
    j = judge(anomaly(weeks=8), s, "day", -1)
    assert j.verdict == "nodata"
    assert j.detail == (
        "Visits 10; too little history for a baseline: 3 of the last 8 Mondays have data "
        "(at least 4 needed)"
    )


def test_hourly_anomaly_compares_the_same_hour_of_the_week():
    # three weeks of hours: every hour holds its hour of day; Monday 23 March 14:00 drops
    start = datetime(2026, 3, 2)
    hours = 21 * 24 + 15
    values = [float((start + timedelta(hours=h)).hour * 10 + 5) for h in range(hours)]
    values[-1] = 20.0  # usually 145 at 14:00
    s = series(values, start=start, grain="hour")
    j = judge(anomaly(weeks=3), s, "hour", -1)
    assert (j.verdict, j.baseline) == ("breach", 145.0)
    assert "the usual 145 on Mondays at this hour (median of 3 weeks" in j.detail


def test_judge_all_equals_judge_period_by_period():
    rng = np.random.default_rng(3)
    values = rng.poisson(100, 70).astype(float)
    values[[20, 45]] = [10, 260]
    values[30] = NAN
    s = series(list(values))
    for condition in (
        anomaly(weeks=4),
        AlertCondition(type="decrease", by=20, compared_to="same_period_last_week"),
        AlertCondition(type="increase", by=15, unit="absolute"),
        AlertCondition(type="below", value=90),
    ):
        every = judge_all(condition, s, "day")
        assert len(every) == 70
        assert list(every) == [judge(condition, s, "day", i) for i in range(70)]
    breaches = judge_all(anomaly(weeks=4), s, "day").breaches()
    assert s.periods[20] in breaches and s.periods[45] in breaches


def test_history_needed():
    assert history_needed(AlertCondition(type="below", value=1), "day") == 0
    assert history_needed(AlertCondition(type="decrease", by=1), "hour") == 1
    week = AlertCondition(type="decrease", by=1, compared_to="same_period_last_week")
    assert (history_needed(week, "hour"), history_needed(week, "day")) == (168, 7)
    year = AlertCondition(type="decrease", by=1, compared_to="same_period_last_year")
    assert (history_needed(year, "day"), history_needed(year, "month")) == (366, 12)
    assert history_needed(anomaly(weeks=8), "hour") == 8 * 168
    assert history_needed(anomaly(weeks=6), "day") == 42


def test_hourly_comparisons_across_berlins_dst_days():
    # 22 March 00:00 to 30 March 00:00 local: 8 days, one of 23 hours (29 March, no 02:00)
    start = datetime(2026, 3, 22)
    periods = periods_between(start, datetime(2026, 3, 30), "hour", "Europe/Berlin")
    assert len(periods) == 8 * 24 - 1
    values = np.array([float(p.hour + 1) for p in periods])
    s = Series(
        site_id="shop", dimension_value=None, metric="sessions", label="Visits", unit="count",
        grain="hour", timezone="Europe/Berlin", currency="EUR", periods=periods,
        values=values, volumes=values,
    )  # fmt: skip
    at_three = s.index(datetime(2026, 3, 29, 3))
    # the previous hour of 03:00 summer time is 01:00: 02:00 did not happen
    prev = judge(AlertCondition(type="decrease", by=10), s, "hour", at_three)
    assert (prev.baseline, prev.value, prev.verdict) == (2.0, 4.0, "ok")
    assert prev.detail.startswith("Visits 4 is 100% above the previous hour (2)")
    # the same hour last week is 03:00 on 22 March
    week = judge(
        AlertCondition(type="increase", by=10, compared_to="same_period_last_week"),
        s, "hour", at_three,
    )  # fmt: skip
    assert (week.baseline, week.verdict) == (4.0, "ok")


def subseries(s: Series, periods: list[datetime]) -> Series:
    keep = [i for i, p in enumerate(s.periods) if p in set(periods)]
    return Series(
        site_id=s.site_id, dimension_value=None, metric=s.metric, label=s.label, unit=s.unit,
        grain=s.grain, timezone=s.timezone, currency=s.currency,
        periods=[s.periods[i] for i in keep], values=s.values[keep], volumes=s.volumes[keep],
    )  # fmt: skip


def test_the_periods_a_judgement_reads_judge_it_alone():
    full = weekly([100, 110, 90, 130], 50)
    last = full.periods[-1]
    condition = anomaly(weeks=4)
    read = periods_read(condition, "day", last)
    assert read == [last - timedelta(days=7 * k) for k in (4, 3, 2, 1, 0)]
    assert judge(condition, subseries(full, read), "day", -1) == judge(condition, full, "day", -1)
    # an hourly comparison with the previous hour, across Berlin's spring gap: 03:00 reads
    # 02:00 (no such hour) and 01:00
    start = datetime(2026, 3, 29)
    periods = periods_between(start, datetime(2026, 3, 29, 6), "hour", "Europe/Berlin")
    values = np.array([10.0, 20.0, 5.0, 40.0, 50.0])  # 00, 01, 03, 04, 05
    hourly = Series(
        site_id="shop", dimension_value=None, metric="sessions", label="Visits", unit="count",
        grain="hour", timezone="Europe/Berlin", currency="EUR", periods=periods,
        values=values, volumes=values,
    )  # fmt: skip
    change = AlertCondition(type="decrease", by=50)
    at_three = datetime(2026, 3, 29, 3)
    read = periods_read(change, "hour", at_three)
    assert read == [datetime(2026, 3, 29, 1), datetime(2026, 3, 29, 2), at_three]
    alone = judge(change, subseries(hourly, read), "hour", -1)
    assert alone == judge(change, hourly, "hour", 2)
    assert (alone.verdict, alone.baseline) == ("breach", 20.0)
    # a series of some periods only: a missing previous hour is no data, not an earlier hour
    gap = subseries(hourly, [datetime(2026, 3, 29, 0), datetime(2026, 3, 29, 4)])
    assert judge(change, gap, "hour", -1).verdict == "nodata"
