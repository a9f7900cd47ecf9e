"""Period arithmetic in a site's time zone (orchestration/alerts/periods.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestration.alerts.periods import (
    exists,
    local_to_utc,
    next_period,
    period_start,
    periods_between,
    shift,
    utc_to_local,
)

BERLIN = "Europe/Berlin"


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("grain", "expected"),
    [
        ("hour", datetime(2026, 3, 4, 17)),
        ("day", datetime(2026, 3, 4)),
        ("week", datetime(2026, 3, 2)),  # ISO weeks start on Monday
        ("month", datetime(2026, 3, 1)),
    ],
)
def test_period_start(grain, expected):
    assert period_start(datetime(2026, 3, 4, 17, 42, 9), grain) == expected


def test_a_sunday_belongs_to_the_week_that_started_on_monday():
    assert period_start(datetime(2026, 3, 8, 23, 59), "week") == datetime(2026, 3, 2)
    assert period_start(datetime(2026, 3, 9, 0, 0), "week") == datetime(2026, 3, 9)


def test_unknown_grain_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="'fortnight' is not a grain; use hour, day, week, month"):
        period_start(datetime(2026, 3, 4), "fortnight")


@pytest.mark.parametrize(
    ("start", "grain", "expected"),
    [
        (datetime(2026, 3, 4, 23), "hour", datetime(2026, 3, 5, 0)),
        (datetime(2026, 2, 28), "day", datetime(2026, 3, 1)),
        (datetime(2028, 2, 28), "day", datetime(2028, 2, 29)),  # leap year
        (datetime(2026, 12, 28), "week", datetime(2027, 1, 4)),
        (datetime(2026, 12, 1), "month", datetime(2027, 1, 1)),
        (datetime(2026, 1, 1), "month", datetime(2026, 2, 1)),
    ],
)
def test_next_period(start, grain, expected):
    assert next_period(start, grain) == expected


@pytest.mark.parametrize(
    ("start", "grain", "compared_to", "expected"),
    [
        (datetime(2026, 3, 1, 5), "hour", "previous_period", datetime(2026, 3, 1, 4)),
        (datetime(2026, 3, 1), "day", "previous_period", datetime(2026, 2, 28)),
        (datetime(2026, 3, 2), "week", "previous_period", datetime(2026, 2, 23)),
        (datetime(2026, 3, 1), "month", "previous_period", datetime(2026, 2, 1)),
        (datetime(2026, 1, 1), "month", "previous_period", datetime(2025, 12, 1)),
        (datetime(2026, 3, 9, 14), "hour", "same_period_last_week", datetime(2026, 3, 2, 14)),
        (datetime(2026, 3, 9), "day", "same_period_last_week", datetime(2026, 3, 2)),
        (datetime(2026, 3, 9), "week", "same_period_last_week", datetime(2026, 3, 2)),
        (datetime(2026, 3, 1), "day", "same_period_last_year", datetime(2025, 3, 1)),
        (datetime(2026, 3, 1, 9), "hour", "same_period_last_year", datetime(2025, 3, 1, 9)),
        # 29 February compares with 28 February; 1 March with 1 March, 366 days back
        (datetime(2028, 2, 29), "day", "same_period_last_year", datetime(2027, 2, 28)),
        (datetime(2029, 3, 1), "day", "same_period_last_year", datetime(2028, 3, 1)),
        (datetime(2026, 4, 1), "month", "same_period_last_year", datetime(2025, 4, 1)),
        # ISO week 10 of 2026 (Monday 2 March) against week 10 of 2025 (Monday 3 March)
        (datetime(2026, 3, 2), "week", "same_period_last_year", datetime(2025, 3, 3)),
        # week 53 of 2026 (Monday 28 December) against week 52 of 2025: 2025 has no week 53
        (datetime(2026, 12, 28), "week", "same_period_last_year", datetime(2025, 12, 22)),
    ],
)
def test_shift(start, grain, compared_to, expected):
    assert shift(start, grain, compared_to) == expected


def test_shift_refuses_an_unknown_comparison():
    with pytest.raises(ValueError, match="'yesterday' is not a comparison"):
        shift(datetime(2026, 3, 1), "day", "yesterday")


def test_local_to_utc_in_winter_and_summer():
    assert local_to_utc(datetime(2026, 1, 15, 0, 0), BERLIN) == utc(2026, 1, 14, 23)
    assert local_to_utc(datetime(2026, 7, 15, 0, 0), BERLIN) == utc(2026, 7, 14, 22)


def test_the_local_hour_spring_skips_does_not_crash_and_reads_as_winter_time():
    # Sunday 29 March 2026: 02:00 CET becomes 03:00 CEST; 02:30 never happens in Berlin
    assert local_to_utc(datetime(2026, 3, 29, 2, 30), BERLIN) == utc(2026, 3, 29, 1, 30)
    assert local_to_utc(datetime(2026, 3, 29, 3, 0), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert not exists(datetime(2026, 3, 29, 2, 0), BERLIN)
    assert exists(datetime(2026, 3, 29, 3, 0), BERLIN)


def test_the_local_hour_autumn_repeats_is_its_first_occurrence():
    # Sunday 25 October 2026: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice
    assert local_to_utc(datetime(2026, 10, 25, 2, 0), BERLIN) == utc(2026, 10, 25, 0, 0)
    assert local_to_utc(datetime(2026, 10, 25, 3, 0), BERLIN) == utc(2026, 10, 25, 2, 0)
    # both real hours have the local hour 02:00
    assert utc_to_local(utc(2026, 10, 25, 0, 30), BERLIN) == datetime(2026, 10, 25, 2, 30)
    assert utc_to_local(utc(2026, 10, 25, 1, 30), BERLIN) == datetime(2026, 10, 25, 2, 30)


def test_dst_days_have_23_and_24_local_hours_and_their_utc_spans():
    spring = periods_between(datetime(2026, 3, 29), datetime(2026, 3, 30), "hour", BERLIN)
    assert len(spring) == 23 and datetime(2026, 3, 29, 2) not in spring
    assert spring[1:3] == [datetime(2026, 3, 29, 1), datetime(2026, 3, 29, 3)]
    autumn = periods_between(datetime(2026, 10, 25), datetime(2026, 10, 26), "hour", BERLIN)
    assert len(autumn) == 24
    # the day itself is 23 and 25 real hours long
    assert local_to_utc(datetime(2026, 3, 30), BERLIN) - local_to_utc(
        datetime(2026, 3, 29), BERLIN
    ) == (utc(2026, 1, 1, 23) - utc(2026, 1, 1))
    assert (
        local_to_utc(datetime(2026, 10, 26), BERLIN) - local_to_utc(datetime(2026, 10, 25), BERLIN)
    ).total_seconds() == 25 * 3600
    # the repeated hour 02:00 spans both real hours, 00:00 to 02:00 UTC
    start = datetime(2026, 10, 25, 2)
    assert local_to_utc(next_period(start, "hour"), BERLIN) - local_to_utc(start, BERLIN) == (
        utc(2026, 1, 1, 2) - utc(2026, 1, 1)
    )


def test_periods_between_without_a_time_zone_and_for_each_grain():
    assert periods_between(datetime(2026, 3, 29), datetime(2026, 3, 30), "hour")[2] == datetime(
        2026, 3, 29, 2
    )
    assert periods_between(datetime(2026, 2, 27, 13), datetime(2026, 3, 2), "day") == [
        datetime(2026, 2, 27), datetime(2026, 2, 28), datetime(2026, 3, 1),
    ]  # fmt: skip
    assert periods_between(datetime(2026, 1, 15), datetime(2026, 4, 1), "month") == [
        datetime(2026, 1, 1), datetime(2026, 2, 1), datetime(2026, 3, 1),
    ]  # fmt: skip
    assert periods_between(datetime(2026, 3, 4), datetime(2026, 3, 17), "week") == [
        datetime(2026, 3, 2), datetime(2026, 3, 9), datetime(2026, 3, 16),
    ]  # fmt: skip
    assert periods_between(datetime(2026, 3, 4), datetime(2026, 3, 4), "day") == []
