"""Judging a rule's series: is a period's value a breach of its condition?

:func:`judge` answers for one period, :func:`judge_all` for every period of a series at
once (a backtest); both run the same vectorised numpy code (:func:`_evaluate`), so a backtest
says exactly what the evaluator said. A :class:`Judgement` carries the verdict (``ok``,
``breach`` or ``nodata``), the value and its volume, what it was compared with (``baseline``)
and the band it had to stay in (``lower``/``upper``), and ``detail``, one sentence a person
reads in the notification.

The conditions (``ingestion.core.alert_config.AlertCondition``):

- ``below``/``above`` ``value``: the threshold is the band's edge.
- ``decrease``/``increase`` by more than ``by`` (percent of the compared value, or
  absolute) against ``compared_to``: the previous period, the same period last week or last
  year (``periods.shift``). The band is the compared value -/+ ``by``. A percent change from 0
  is a breach of ``increase`` when the value is above 0 (from nothing to something), never of
  ``decrease``.
- ``anomaly``: a seasonal robust baseline. The same period of each of the last ``weeks``
  weeks (same weekday for days, same hour of the week for hours) gives the median ``m`` and
  the scaled MAD ``s = 1.4826 * median(|x - m|)`` (an estimate of the standard deviation
  that one outlier week - a past incident - does not move). The value breaches when its robust
  z-score ``(value - m) / s`` reaches ``threshold`` in ``direction``, AND the baseline's
  median volume is at least ``min_volume``, AND the value differs from ``m`` by at least
  ``min_change`` percent. The band is ``m -/+ threshold * s``.

  MAD floor: a baseline of identical weeks has a MAD of 0, and any change would be infinitely
  many deviations away. When the MAD is 0 the scale is ``1.2533 * mean(|x - m|)`` instead (the
  mean absolute deviation, scaled alike: it is 0 only when every week is equal - the IBM/SPSS
  modified z-score's fallback), and in any case at least 1% of ``|m|`` (a perfectly steady
  series: a 4% change is 4 deviations, and ``min_change`` decides) and 1e-9 (a median of 0).
  A baseline needs at least
  ``max(2, weeks // 2)`` weeks with data; fewer is ``nodata``.

Missing data: a value that is ``nan`` (no rows behind a rate, a mean or a percentile) is
``nodata``; so is a missing compared period or too thin a baseline - the detail says which.

Why not statsmodels: its seasonal tools (STL, Holt-Winters, SARIMAX) fit a model per series:
better for a forecast with a trend, but the fit costs milliseconds to a second per series
(1,000 instances x 90 days of hours would not fit in the 10 s budget), it needs a gap-free
series (missing periods interpolated: inventing data), it is not robust to the incidents in
its own history unless it is asked to be (robust STL is slower still), and its band is hard to
explain in one sentence. A median and MAD of the same weekday is what the peers use (Grafana's
and PostHog's MAD detectors), needs no fitting, takes microseconds in numpy for all periods
at once, ignores past incidents by construction and reads as "usually 520 on Mondays".
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal, overload

import numpy as np

from orchestration.alerts.periods import shift

if TYPE_CHECKING:
    from ingestion.core.alert_config import AlertCondition
    from orchestration.alerts.series import Series

Verdict = Literal["ok", "breach", "nodata"]

MAD_SCALE = 1.4826  # MAD -> standard deviation of a normal distribution
MEAN_AD_SCALE = 1.2533  # mean absolute deviation -> standard deviation (sqrt(pi / 2))
RELATIVE_FLOOR = 0.01  # the scale is at least 1% of the median
ABSOLUTE_FLOOR = 1e-9
_WEEK = np.timedelta64(7 * 24 * 60, "m")


@dataclass(frozen=True)
class Judgement:
    """A period judged: ``value``/``volume`` of the period (None: no data), ``baseline``
    what it was compared with (the threshold, the compared period's value, the median),
    ``lower``/``upper`` the band it had to stay in (None: unbounded that side)."""

    verdict: Verdict
    value: float | None
    volume: float | None
    baseline: float | None
    lower: float | None
    upper: float | None
    detail: str


def history_needed(condition: AlertCondition, grain: str) -> int:
    """How many periods before the judged one the condition reads (fetch that many more)."""
    per_week = {"hour": 168, "day": 7, "week": 1, "month": 1}[grain]
    if condition.type in ("below", "above"):
        return 0
    if condition.type == "anomaly":
        return condition.weeks * per_week
    if condition.compared_to == "previous_period":
        return 1
    if condition.compared_to == "same_period_last_week":
        return per_week
    # last year: up to 366 days back (1 March 2029 -> 1 March 2028 across 29 February)
    return {"hour": 366 * 24, "day": 366, "week": 53, "month": 12}[grain]


def periods_read(condition: AlertCondition, grain: str, period: datetime) -> list[datetime]:
    """The periods a judgement of ``period`` reads: itself, and the period it is compared
    with or the baseline's weeks - what ``fetch_series(..., periods=...)`` needs to fetch for
    an evaluation of the latest period (not every period of ``history_needed``). For an
    hourly ``previous_period`` both hours before are read (across a DST gap the previous
    hour that exists is two hours back)."""
    wanted = [period]
    if condition.type == "anomaly":
        wanted += [period - timedelta(days=7 * k) for k in range(1, condition.weeks + 1)]
    elif condition.type in ("decrease", "increase"):
        wanted.append(shift(period, grain, condition.compared_to))
        if grain == "hour" and condition.compared_to == "previous_period":
            wanted.append(period - timedelta(hours=2))
    return sorted(set(wanted))


def judge(condition: AlertCondition, series: Series, grain: str, index: int) -> Judgement:
    """The verdict on the period ``series.periods[index]``."""
    if not -len(series.periods) <= index < len(series.periods):
        raise IndexError(f"period {index} is not in a series of {len(series.periods)}")
    index %= len(series.periods)
    return Judgements(condition, series, grain, np.array([index]))[0]


def judge_all(condition: AlertCondition, series: Series, grain: str) -> Judgements:
    """The verdicts on every period of the series, computed at once (numpy). The result is
    a sequence of :class:`Judgement` built when read (a backtest of 1,000 instances x 2,160
    hours need not format 2 million sentences); its arrays (``verdicts``, ``values``,
    ``baselines``, ``lowers``, ``uppers``) serve counting and charting."""
    return Judgements(condition, series, grain, np.arange(len(series.periods)))


class Judgements(Sequence[Judgement]):
    """Judgements of some periods of a series (:func:`judge_all`)."""

    def __init__(self, condition: AlertCondition, series: Series, grain: str, idx: np.ndarray):
        self.condition, self.series, self.grain, self.idx = condition, series, grain, idx
        r = _evaluate(condition, series, grain, idx)
        r["_idx"] = idx  # the sentence names the judged period
        self.verdicts: np.ndarray = r["verdict"]  # 'ok' | 'breach' | 'nodata'
        self.values: np.ndarray = r["value"]
        self.volumes: np.ndarray = r["volume"]
        self.baselines: np.ndarray = r["baseline"]
        self.lowers: np.ndarray = r["lower"]
        self.uppers: np.ndarray = r["upper"]
        self._r = r

    def __len__(self) -> int:
        return len(self.idx)

    @overload
    def __getitem__(self, i: int) -> Judgement: ...
    @overload
    def __getitem__(self, i: slice) -> list[Judgement]: ...
    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        r = self._r
        return Judgement(
            verdict=str(r["verdict"][i]),
            value=_opt(r["value"][i]),
            volume=_opt(r["volume"][i]),
            baseline=_opt(r["baseline"][i]),
            lower=_opt(r["lower"][i]),
            upper=_opt(r["upper"][i]),
            detail=_detail(self.condition, self.series, self.grain, r, i),
        )

    def __iter__(self) -> Iterator[Judgement]:
        for i in range(len(self)):
            yield self[i]

    def breaches(self) -> list[datetime]:
        """The periods judged a breach."""
        return [self.series.periods[int(p)] for p in self.idx[self.verdicts == "breach"]]


# --- the computation -----------------------------------------------------------------------


def _evaluate(condition: AlertCondition, series: Series, grain: str, idx: np.ndarray) -> dict:
    values = np.asarray(series.values, dtype=float)
    volumes = np.asarray(series.volumes, dtype=float)
    n = len(idx)
    value = values[idx]
    out = {
        "value": value,
        "volume": volumes[idx],
        "baseline": np.full(n, np.nan),
        "lower": np.full(n, np.nan),
        "upper": np.full(n, np.nan),
        "breach": np.zeros(n, dtype=bool),
        # why a period has no verdict: 0 has data, 1 no value, 2 nothing to compare with,
        # 3 too few baseline weeks
        "missing": np.where(np.isnan(value), 1, 0),
    }
    kind = condition.type
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        if kind in ("below", "above"):
            limit = float(condition.value)
            out["baseline"][:] = limit
            out["lower" if kind == "below" else "upper"][:] = limit
            out["breach"] = value < limit if kind == "below" else value > limit
        elif kind in ("decrease", "increase"):
            _change(condition, series, grain, idx, values, out)
        else:
            _anomaly(condition, series, grain, idx, values, volumes, out)
    out["verdict"] = np.where(out["missing"] > 0, "nodata", np.where(out["breach"], "breach", "ok"))
    return out


def _change(condition, series, grain, idx, values, out) -> None:
    pos = _shifted_positions(series, grain, condition.compared_to, idx)
    compared = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    value = out["value"]
    out["missing"] = np.where(
        out["missing"] > 0, out["missing"], np.where(np.isnan(compared), 2, 0)
    )
    by = float(condition.by)
    allowed = (
        np.abs(compared) * by / 100 if condition.unit == "percent" else np.full_like(compared, by)
    )
    out["baseline"] = compared
    out["lower"] = compared - allowed
    out["upper"] = compared + allowed
    if condition.type == "decrease":
        out["breach"] = (compared - value) > allowed
    else:
        out["breach"] = (value - compared) > allowed
        if condition.unit == "percent":
            # from nothing to something: an increase of any percent
            out["breach"] |= (compared == 0) & (value > 0)
    out["compared_pos"] = pos


def _anomaly(condition, series, grain, idx, values, volumes, out) -> None:
    weeks = condition.weeks
    p64 = _periods64(series)
    if grain not in ("hour", "day"):
        raise ValueError("condition 'anomaly' needs grain hour or day (a seasonal baseline)")
    # the same period of each of the last `weeks` weeks: n x weeks positions (-1: absent)
    pos = _weeks_back(p64, idx, weeks)
    history = np.where(pos >= 0, values[np.maximum(pos, 0)], np.nan)
    weeks_with_data = np.sum(~np.isnan(history), axis=1)
    median = _row_median(history)
    deviation = np.abs(history - median[:, None])
    mad = MAD_SCALE * _row_median(deviation)
    mean_ad = MEAN_AD_SCALE * np.nanmean(deviation, axis=1)
    scale = np.fmax(
        np.where(mad > 0, mad, mean_ad),
        np.fmax(RELATIVE_FLOOR * np.abs(median), ABSOLUTE_FLOOR),
    )
    value = out["value"]
    z = (value - median) / scale
    change = np.where(
        median == 0,
        np.where(value == median, 0.0, np.inf),
        np.abs(value - median) / np.abs(median) * 100,
    )
    if condition.min_volume > 0:
        base_volume = _row_median(np.where(pos >= 0, volumes[np.maximum(pos, 0)], np.nan))
    else:  # every volume is enough; not computed
        base_volume = np.full(len(idx), np.nan)
    direction = condition.direction
    outside = {"up": z >= condition.threshold, "down": z <= -condition.threshold}.get(
        direction, np.abs(z) >= condition.threshold
    )
    enough_volume = (np.nan_to_num(base_volume, nan=0.0) >= condition.min_volume) | (
        condition.min_volume <= 0
    )
    big_enough = change >= condition.min_change
    needed = max(2, weeks // 2)
    out["missing"] = np.where(
        out["missing"] > 0, out["missing"], np.where(weeks_with_data < needed, 3, 0)
    )
    out["baseline"] = median
    out["lower"] = median - condition.threshold * scale
    out["upper"] = median + condition.threshold * scale
    out["breach"] = outside & enough_volume & big_enough
    out.update(
        z=z, change=change, base_volume=base_volume, weeks_with_data=weeks_with_data,
        outside=outside, enough_volume=enough_volume, big_enough=big_enough, needed=needed,
    )  # fmt: skip


def _row_median(matrix: np.ndarray) -> np.ndarray:
    """The median of each row, nan left out (nan for a row of nan): np.nanmedian along an
    axis loops in Python over the rows; sorting puts the nans last, and the median is read
    from the sorted rows at once."""
    ordered = np.sort(matrix, axis=1)
    count = np.sum(~np.isnan(matrix), axis=1)
    rows = np.arange(len(matrix))
    low = ordered[rows, np.maximum((count - 1) // 2, 0)]
    high = ordered[rows, np.maximum(count // 2, 0)]
    high = np.where(count % 2 == 1, low, high)
    return np.where(count > 0, (low + high) / 2, np.nan)


def _periods64(series: Series) -> np.ndarray:
    cached = getattr(series, "periods64", None)  # Series caches it
    return cached if cached is not None else np.array(series.periods, dtype="datetime64[m]")


_POSITIONS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _weeks_back(p64: np.ndarray, idx: np.ndarray, weeks: int) -> np.ndarray:
    """Positions of the same period 1..``weeks`` weeks before each of ``idx`` (-1: absent).

    The series of one site share their periods (fetch_series gives them one array): the
    positions are computed once per periods array and kept for the few arrays in use."""
    key = (id(p64), len(p64), weeks)
    cached = _POSITIONS.get(key)
    if cached is None or cached[0] is not p64:
        targets = p64[:, None] - _WEEK * np.arange(1, weeks + 1)[None, :]
        cached = (p64, _find(p64, targets))
        if len(_POSITIONS) >= 64:
            _POSITIONS.clear()
        _POSITIONS[key] = cached
    return cached[1][idx]


def _find(p64: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Positions of ``targets`` in the sorted ``p64``, -1 where a target is not a period."""
    if len(p64) == 0:
        return np.full(targets.shape, -1)
    pos = np.searchsorted(p64, targets)
    clipped = np.minimum(pos, len(p64) - 1)
    return np.where(p64[clipped] == targets, clipped, -1)


def _shifted_positions(series: Series, grain: str, compared_to: str, idx: np.ndarray):
    p64 = _periods64(series)
    if grain in ("hour", "day") and compared_to == "same_period_last_week":
        return _find(p64, p64[idx] - _WEEK)
    if grain == "hour" and compared_to == "previous_period":
        # the previous hour that exists: one hour before, two across a DST gap (its hour is
        # no period); a series of some periods only may not hold it
        before = np.maximum(idx - 1, 0)
        gap = p64[idx] - p64[before]
        adjacent = (idx > 0) & (gap <= np.timedelta64(120, "m"))
        return np.where(adjacent, before, -1)
    targets = np.array(
        [shift(series.periods[int(i)], grain, compared_to) for i in idx], dtype="datetime64[m]"
    )
    return _find(p64, targets)


# --- the sentence --------------------------------------------------------------------------

_GRAIN_NOUN = {"hour": "hour", "day": "day", "week": "week", "month": "month"}


def _detail(condition, series, grain: str, r: dict, i: int) -> str:
    label = series.label
    value = r["value"][i]
    fmt = _formatter(series)
    when = _describe_period(grain, series.periods, r, i)
    if math.isnan(value):
        return f"{label}: no data for the {_GRAIN_NOUN[grain]} {when}"
    shown = f"{label} {fmt(value)}"
    kind = condition.type
    if kind in ("below", "above"):
        limit = fmt(float(condition.value))
        if r["breach"][i]:
            return f"{shown} is {kind} {limit}"
        return f"{shown} is not {kind} {limit}"
    if kind in ("decrease", "increase"):
        against = _compared_name(grain, condition.compared_to)
        compared = r["baseline"][i]
        if math.isnan(compared):
            return f"{shown}; no data for {against} to compare with"
        by = f"{condition.by:g}%" if condition.unit == "percent" else fmt(float(condition.by))
        return f"{shown} is {_change_words(value, compared, fmt)} {against} ({fmt(compared)})" + (
            "" if r["breach"][i] else f"; alert when it {kind}s by more than {by}"
        )
    # anomaly
    weekday = series.periods[_judged_position(r, i)].strftime("%A")
    usual = f"{weekday}s" if grain == "day" else f"{weekday}s at this hour"
    if r["missing"][i] == 3:
        return (
            f"{shown}; too little history for a baseline: {int(r['weeks_with_data'][i])} of the "
            f"last {condition.weeks} {usual} have data (at least {r['needed']} needed)"
        )
    median, z = r["baseline"][i], r["z"][i]
    band = f"{fmt(r['lower'][i])} to {fmt(r['upper'][i])}"
    side = "above" if value >= median else "below"
    sentence = (
        f"{shown} is {abs(z):.1f} robust deviations {side} the usual {fmt(median)} on "
        f"{usual} (median of {int(r['weeks_with_data'][i])} weeks; band {band})"
    )
    if r["breach"][i] or not r["outside"][i]:
        return sentence
    if not r["enough_volume"][i]:
        return (
            f"{sentence}; not alerting: the baseline's volume "
            f"{_number(r['base_volume'][i])} is under min_volume {condition.min_volume:g}"
        )
    return (
        f"{sentence}; not alerting: a change of {r['change'][i]:.0f}% is under min_change "
        f"{condition.min_change:g}%"
    )


def _judged_position(r: dict, i: int) -> int:
    return int(r["_idx"][i])


def _describe_period(grain, periods, r, i) -> str:
    p = periods[_judged_position(r, i)]
    if grain == "hour":
        return p.strftime("%Y-%m-%d %H:00")
    if grain == "month":
        return p.strftime("%Y-%m")
    if grain == "week":
        return "of " + p.strftime("%Y-%m-%d")
    return p.strftime("%Y-%m-%d")


def _compared_name(grain: str, compared_to: str) -> str:
    noun = _GRAIN_NOUN[grain]
    if compared_to == "previous_period":
        return f"the previous {noun}"
    if compared_to == "same_period_last_week":
        return f"the same {noun} last week" if grain in ("hour", "day") else f"the previous {noun}"
    return f"the same {noun} last year"


def _change_words(value: float, compared: float, fmt) -> str:
    if value == compared:
        return "unchanged from"
    if compared == 0:
        return "up from nothing in" if value > compared else "down from nothing in"
    percent = abs(value - compared) / abs(compared) * 100
    return f"{percent:.0f}% {'above' if value > compared else 'below'}"


def _formatter(series: Series):
    unit = series.unit
    if unit == "ratio":
        return lambda v: f"{v * 100:.1f}%"
    if unit == "seconds":
        return lambda v: f"{v:,.0f} s" if abs(v) >= 10 else f"{v:,.1f} s"
    if unit == "milliseconds":
        return lambda v: f"{v:,.0f} ms"
    if unit == "currency":
        currency = getattr(series, "currency", None) or ""
        return lambda v: (
            (f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}") + (f" {currency}" if currency else "")
        )
    return _number


def _number(v: float) -> str:
    if math.isnan(v):
        return "no data"
    if float(v).is_integer():
        return f"{v:,.0f}"
    return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"


def _opt(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v
