"""Period arithmetic in a site's time zone: hours, days, ISO weeks (from Monday) and months.

A period is named by its start, a *naive local* datetime in the site's time zone - what
``date_trunc(grain, ts at time zone site.timezone)`` gives in PostgreSQL, so the periods of
``orchestration/alerts/series.py`` and of this module are the same ones.

Daylight saving time (the one place where local time is not a clock):

- A local time that does not exist (Europe/Berlin's 02:00-02:59 on the last Sunday of
  March) is read as if the clock had not been put forward yet: ``local_to_utc(02:30)`` is
  01:30 UTC, the same instant as 03:30 summer time. No row ever has such a local hour, so
  :func:`periods_between` given the time zone leaves the hour out (the day has 23 hours)
  rather than report an hour that cannot hold data as an hour with none.
- A local time that happens twice (02:00-02:59 on the last Sunday of October) is the first
  time it happens (summer time). Its hour, as ``date_trunc`` groups it, holds both real
  hours: from the first 02:00 (00:00 UTC) to 03:00 winter time (02:00 UTC) - the day still
  has 24 local hours and the hour 02:00 holds two hours of traffic (a ``decrease`` rule sees
  the next day's 02:00 halve; the anomaly baseline's MAD absorbs one such week in eight).

Nothing here raises on a DST edge: every local time has one UTC instant.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Grain = Literal["hour", "day", "week", "month"]
CompareTo = Literal["previous_period", "same_period_last_week", "same_period_last_year"]
GRAINS: tuple[str, ...] = ("hour", "day", "week", "month")


def _check(grain: str) -> None:
    if grain not in GRAINS:
        raise ValueError(f"'{grain}' is not a grain; use {', '.join(GRAINS)}")


def period_start(local: datetime, grain: Grain) -> datetime:
    """The start of the ``grain`` period holding the naive local time ``local``."""
    _check(grain)
    local = local.replace(tzinfo=None, fold=0)
    if grain == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if grain == "day":
        return day
    if grain == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def next_period(start: datetime, grain: Grain) -> datetime:
    """The start of the period after the one starting at ``start`` (local wall-clock
    arithmetic: the day after a DST change is a day, not 24 hours)."""
    _check(grain)
    if grain == "hour":
        return start + timedelta(hours=1)
    if grain == "day":
        return start + timedelta(days=1)
    if grain == "week":
        return start + timedelta(days=7)
    return _add_months(start, 1)


def previous_period(start: datetime, grain: Grain) -> datetime:
    """The start of the period before the one starting at ``start``."""
    _check(grain)
    if grain == "month":
        return _add_months(start, -1)
    return start - (next_period(start, grain) - start)


def shift(start: datetime, grain: Grain, compared_to: CompareTo) -> datetime:
    """The period a ``decrease``/``increase`` condition compares the one at ``start`` with.

    - ``previous_period``: the period before.
    - ``same_period_last_week``: 7 days earlier, same wall-clock time (hour and day
      grains); for a week the week before, for a month the month before.
    - ``same_period_last_year``: the same calendar date (and hour) last year, as Matomo
      compares - 29 February compares with 28 February; for a week the same ISO week number
      last year (week 53 compares with week 52 when last year had none), for a month the
      same month. The weekday differs (2026-03-02, a Monday, compares with a Sunday): use
      ``same_period_last_week`` or the ``anomaly`` condition for weekday-aligned baselines.
    """
    _check(grain)
    if compared_to == "previous_period":
        return previous_period(start, grain)
    if compared_to == "same_period_last_week":
        if grain in ("hour", "day"):
            return start - timedelta(days=7)
        return previous_period(start, grain)
    if compared_to == "same_period_last_year":
        if grain in ("hour", "day"):
            return _add_months(start, -12)
        if grain == "week":
            year, week, _ = start.isocalendar()
            weeks_last_year = date(year - 1, 12, 28).isocalendar()[1]
            monday = date.fromisocalendar(year - 1, min(week, weeks_last_year), 1)
            return datetime.combine(monday, start.time())
        return _add_months(start, -12)
    raise ValueError(
        f"'{compared_to}' is not a comparison; use previous_period, same_period_last_week "
        "or same_period_last_year"
    )


def local_to_utc(local: datetime, tz: str | ZoneInfo) -> datetime:
    """The UTC instant (aware) of the naive local time ``local`` in ``tz``: a time the DST
    change skips is read with the offset before the change (02:30 in Berlin's spring gap ->
    01:30 UTC), a time that happens twice is its first occurrence (``fold=0``)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def utc_to_local(instant: datetime, tz: str | ZoneInfo) -> datetime:
    """The naive local time in ``tz`` of an aware instant (a naive one is taken as UTC)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(zone).replace(tzinfo=None)


def exists(local: datetime, tz: str | ZoneInfo) -> bool:
    """False for a local time a DST change skips (it does not survive a round trip)."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    return utc_to_local(local_to_utc(local, zone), zone) == local.replace(tzinfo=None)


def periods_between(
    start: datetime, end: datetime, grain: Grain, tz: str | ZoneInfo | None = None
) -> list[datetime]:
    """Every period start of [``start``, ``end``): from the period holding ``start`` up to
    the last one starting before ``end``. Given ``tz``, hours a DST change skips are left
    out (they hold no time); days, weeks and months always exist."""
    return list(iter_periods(start, end, grain, tz))


def iter_periods(
    start: datetime, end: datetime, grain: Grain, tz: str | ZoneInfo | None = None
) -> Iterator[datetime]:
    """:func:`periods_between`, lazily."""
    current = period_start(start, grain)
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    while current < end:
        if grain != "hour" or zone is None or exists(current, zone):
            yield current
        current = next_period(current, grain)


def _add_months(start: datetime, months: int) -> datetime:
    index = start.year * 12 + start.month - 1 + months
    year, month = divmod(index, 12)
    # a period start is the 1st; any other day is clamped to the month's last day
    last = (date(year + (month + 1) // 12, (month + 1) % 12 + 1, 1) - timedelta(days=1)).day
    return start.replace(year=year, month=month + 1, day=min(start.day, last))
