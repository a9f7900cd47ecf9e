"""A rule's metric as numbers per period: the metric catalogue's SQL, in one place.

:func:`fetch_series` turns a rule (metric, grain, filters, ``by``) and its sites into one
:class:`Series` per site (and value of ``by``): every period of [start, end) in the site's
time zone, its value and its volume. ONE statement per rule reads every site of it.

:data:`QUERIES` is the catalogue's single SQL definition (``ingestion/core/metrics.py`` names
the metrics; this says how each is counted): a :class:`MetricQuery` per metric that is not
real-time - the mart it reads, which rows, the value and the volume. Scheduled reports build
their figures from the same table.

How a metric is read:

- Periods are local: ``date_trunc(grain, ts at time zone site.timezone)`` (weeks from
  Monday), the periods of ``orchestration/alerts/periods.py``.
- Rows are bounded twice: by the local date column the mart is indexed on
  (``(site_id, session_date)`` ...; one day either side is enough for any time zone) so the
  index is used, and by the UTC instants of the range's local bounds so the edges are exact.
- A period without rows is 0 for a count or a sum (no visits = 0 visits) and ``nan`` (no
  data) for a rate, a mean or a percentile: a bounce rate of no visits is unknown, not 0.
- ``volume`` is what the value is a share or mean of (visits behind a bounce rate, orders
  behind an average order value, log lines behind a 5xx share or a 5xx count, page views
  with a load time behind the p75); for a count, the count itself. The anomaly condition's
  ``min_volume`` reads it, and ``by`` keeps the ``by_limit`` values of most volume.
- ``by``: a row without a value of the dimension (a visit without a campaign) counts under
  ``(none)``.
- ``custom``: the rule's SQL, run as ``bi_reader`` (read-only, at most CUSTOM_SQL_TIMEOUT),
  once per site inside one ``union all`` statement; it returns (period, value) and may use
  ``{site_id}``, ``{timezone}``, ``{grain}``, ``{start}``/``{end}`` (local, naive) and
  ``{start_utc}``/``{end_utc}``, bound as parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Literal

import numpy as np

from ingestion.core.metrics import METRICS
from orchestration.alerts.periods import (
    local_to_utc,
    next_period,
    period_start,
    periods_between,
    utc_to_local,
)

NONE_VALUE = "(none)"
Kind = Literal["count", "rate"]


# How long a rule's custom SQL may run before it is cancelled (the rule goes to Error).
CUSTOM_SQL_TIMEOUT = "30s"


class SeriesError(ValueError):
    """A rule's metric cannot be read (its custom SQL failed or returned the wrong shape);
    the message names the rule and what was wrong."""


@dataclass(eq=False)
class Series:
    """A metric per period for one site (and value of ``by``)."""

    site_id: str
    dimension_value: str | None
    metric: str
    label: str
    unit: str
    grain: str
    timezone: str
    currency: str
    periods: list[datetime]  # naive local period starts, every period of [start, end)
    values: np.ndarray  # float; nan = no data
    volumes: np.ndarray  # float

    @cached_property
    def periods64(self) -> np.ndarray:
        return np.array(self.periods, dtype="datetime64[m]")

    def index(self, period: datetime) -> int:
        """The position of the period starting at ``period`` (``ValueError`` if absent)."""
        pos = int(np.searchsorted(self.periods64, np.datetime64(period, "m")))
        if pos >= len(self.periods) or self.periods[pos] != period:
            raise ValueError(f"{period} is not a period of this series")
        return pos


# --- the catalogue's SQL -------------------------------------------------------------------


@dataclass(frozen=True)
class Dim:
    """A dimension of a metric's rows: its SQL expression, and the join it needs."""

    expr: str
    join: str = ""


@dataclass(frozen=True)
class MetricQuery:
    """How a metric is counted.

    ``source``: the rows (``f``), joined to ``sites`` and bounded by the range (a format
    string given ``period`` nothing: it must expose ``f`` and the columns named below);
    ``ts``: the instant that places a row in a period (UTC, or ``local_ts`` when the mart
    holds local times already); ``day``: the indexed local date column; ``value`` and
    ``volume``: aggregates over the rows; ``kind``: ``count`` (no rows = 0) or ``rate`` (no
    rows = no data)."""

    relation: str
    value: str
    volume: str
    kind: Kind
    ts: str | None = None
    day: str | None = None
    local_ts: str | None = None
    dims: dict[str, Dim] = field(default_factory=dict)
    where: str = ""
    # the mart has an index on (site_id, day): a few periods are read through it
    day_indexed: bool = True


_PAGES = "left join web.dim_pages as page on page.page_sk = {key}"
_DEVICES = "left join web.dim_devices as dev on dev.device_sk = f.device_sk"
_VISIT = "left join web.fct_sessions as visit on visit.session_id = f.session_id"

SESSION_DIMS = {
    "channel": Dim("f.channel_id"),
    "device": Dim("f.device_type"),
    "country": Dim("f.country_code"),
    "campaign": Dim("f.campaign_name"),
    "page_label": Dim("page.page_label", _PAGES.format(key="f.landing_page_sk")),
}
PAGE_VIEW_DIMS = {
    "channel": Dim("f.channel_id"),
    "device": Dim("f.device_type"),
    "country": Dim("f.country_code"),
    "page_label": Dim("page.page_label", _PAGES.format(key="f.page_sk")),
}
ORDER_DIMS = {
    "channel": Dim("f.channel_id"),
    "device": Dim("dev.device_type", _DEVICES),
    "country": Dim("visit.country_code", _VISIT),
}
FUNNEL_DIMS = {
    "channel": Dim("f.channel_id"),
    "device": Dim("dev.device_type", _DEVICES),
    "country": Dim("visit.country_code", _VISIT),
}


def _sessions(value: str, volume: str, kind: Kind, relation: str = "web.fct_sessions") -> dict:
    return dict(
        relation=relation, value=value, volume=volume, kind=kind, ts="f.started_at",
        day="f.session_date", dims=SESSION_DIMS,
    )  # fmt: skip


def _page_views(value: str, volume: str, kind: Kind) -> dict:
    return dict(
        relation="web.fct_page_views", value=value, volume=volume, kind=kind,
        ts="f.viewed_at", day="f.viewed_date", dims=PAGE_VIEW_DIMS,
    )  # fmt: skip


def _orders(value: str, kind: Kind) -> dict:
    return dict(
        relation="web.fct_transactions", value=value, volume="count(*)", kind=kind,
        ts="f.ordered_at", day="f.order_date", dims=ORDER_DIMS,
    )  # fmt: skip


def _log(value: str, kind: Kind) -> dict:
    return dict(
        relation="web.agg_hourly_log_hits", value=value, volume="sum(f.hits)", kind=kind,
        local_ts="f.kpi_hour", day="f.kpi_date",
    )  # fmt: skip


def _hits(condition: str) -> str:
    return f"coalesce(sum(f.hits) filter (where {condition}), 0)"


def _hit_share(condition: str) -> str:
    # of the log lines (volume): 0 when there were lines and none matched
    return f"{_hits(condition)}::float8 / nullif(sum(f.hits), 0)"


# The conversions of a visit, one row per goal reached (each goal once per visit); the goal
# filter applies here. A conversion happens after its visit started: on the visit's local
# day or a later one (a visit across midnight), so the range's dates, one day longer.
_CONVERSIONS = (
    "(select c.session_id, c.goal_id from web.fct_goal_conversions as c"
    " where c.site_id = any(%(site_ids)s) and c.conversion_date >= %(date_from)s"
    " and c.conversion_date <= %(date_to)s::date + 1 {goal_filter})"
)

QUERIES: dict[str, MetricQuery] = {
    "sessions": MetricQuery(**_sessions("count(*)", "count(*)", "count")),
    "visitors": MetricQuery(
        **_sessions("count(distinct f.visitor_id)", "count(distinct f.visitor_id)", "count")
    ),
    "page_views": MetricQuery(**_page_views("count(*)", "count(*)", "count")),
    "bounce_rate": MetricQuery(**_sessions("avg(f.is_bounce::int)", "count(*)", "rate")),
    "engaged_time": MetricQuery(**_sessions("avg(f.engaged_seconds)", "count(*)", "rate")),
    # one row per visit; by goal: per visit and goal of the site (conv.goal_id is then the
    # goal of the row: a visit counts as converting for the goals it reached)
    "conversion_rate": MetricQuery(
        **_sessions("avg((conv.session_id is not null)::int)", "count(*)", "rate"),
    ),
    # one row per conversion of a visit that started in the period
    "conversions": MetricQuery(**_sessions("count(*)", "count(*)", "count")),
    # the visits that reached the step before `step`; not reached_next_step = dropped off
    "funnel_drop_off": MetricQuery(
        relation="web.fct_funnel_steps",
        value="avg((not f.reached_next_step)::int)",
        volume="count(*)",
        kind="rate",
        ts="f.reached_at",
        day="f.reached_date",
        dims=FUNNEL_DIMS,
        where="f.funnel_id = %(funnel)s and f.step_number = %(step)s - 1",
        day_indexed=False,  # a small table: scanned
    ),
    "transactions": MetricQuery(**_orders("count(*)", "count")),
    "revenue": MetricQuery(**_orders("coalesce(sum(f.revenue), 0)", "count")),
    "average_order_value": MetricQuery(**_orders("sum(f.revenue) / nullif(count(*), 0)", "rate")),
    "new_customers": MetricQuery(
        relation="crm.customers",
        value="count(*)",
        volume="count(*)",
        kind="count",
        ts="f.first_transaction_at",
    ),
    "log_4xx": MetricQuery(**_log(_hits("f.status_class = '4xx'"), "count")),
    "log_5xx": MetricQuery(**_log(_hits("f.status_class = '5xx'"), "count")),
    "log_4xx_share": MetricQuery(**_log(_hit_share("f.status_class = '4xx'"), "rate")),
    "log_5xx_share": MetricQuery(**_log(_hit_share("f.status_class = '5xx'"), "rate")),
    "bot_share": MetricQuery(**_log(_hit_share("f.is_bot"), "rate")),
    "page_load_p75": MetricQuery(
        **_page_views(
            "percentile_cont(0.75) within group (order by f.page_load_ms)",
            "count(f.page_load_ms)",
            "rate",
        )
    ),
    "untracked_share": MetricQuery(
        **_page_views("avg((f.event_source = 'logfile')::int)", "count(*)", "rate")
    ),
}


def metric_sql(
    metric_name: str,
    grain: str,
    filters: dict | None = None,
    by: str | None = None,
    *,
    some_periods: bool = False,
) -> tuple[str, dict]:
    """The statement reading ``metric_name`` per site, value of ``by`` and local period for
    the sites and range given as parameters (``site_ids``, ``timezones``, ``utc_from``,
    ``utc_to`` arrays; ``local_from``/``local_to``, ``date_from``/``date_to``, ``by_limit``).

    Returns the SQL and the parameters it adds (the filters' values). Its rows: site_id, dim
    (text, null without ``by``), period (local timestamp), value, volume."""
    q = QUERIES[metric_name]
    filters = dict(filters or {})
    params: dict = {"grain": grain}
    joins: list[str] = []
    where: list[str] = []

    def dimension(name: str) -> str:
        if name == "goal" and metric_name in ("conversions", "conversion_rate"):
            return "conv.goal_id"
        dim = q.dims[name]
        if dim.join and dim.join not in joins:
            joins.append(dim.join)
        return dim.expr

    if q.where:
        where.append(q.where)
    for name in ("funnel", "step"):
        if name in filters:
            params[name] = filters.pop(name)
    goals = filters.pop("goal", None)
    for name, values in sorted(filters.items()):
        params[f"f_{name}"] = [str(v) for v in values]
        where.append(f"{dimension(name)} = any(%(f_{name})s)")

    # the rows, bounded by the indexed local date and the exact instants (or local hours)
    if q.local_ts:
        period = f"date_trunc(%(grain)s, {q.local_ts})"
        bounds = [f"{q.local_ts} >= sites.local_from", f"{q.local_ts} < sites.local_to"]
    else:
        period = f"date_trunc(%(grain)s, {q.ts} at time zone sites.timezone)"
        bounds = [f"{q.ts} >= sites.utc_from", f"{q.ts} < sites.utc_to"]
    if q.day:
        # the local date of a row lies within its range's local dates; over one range, also
        # within constant dates the planner sees (a scan of the range); over some periods
        # (some_periods) not: then each period's rows are read through the index
        bounds = [f"{q.day} >= sites.date_from", f"{q.day} <= sites.date_to", *bounds]
        if not (some_periods and q.day_indexed):
            bounds = [f"{q.day} >= %(date_from)s", f"{q.day} <= %(date_to)s", *bounds]
    source = f"{q.relation} as f inner join sites on f.site_id = sites.site_id"
    if some_periods and q.day and q.day_indexed:
        # each period's rows through the index: a lateral subquery per range, fenced
        # (offset 0) so the planner cannot flatten it into one scan of every row between
        source = (
            f"sites cross join lateral (select * from {q.relation} as f where f.site_id = "
            f"sites.site_id and {' and '.join(bounds)} offset 0) as f"
        )
        bounds = []

    if metric_name in ("conversions", "conversion_rate"):
        goal_filter = ""
        if goals:
            params["f_goal"] = [str(g) for g in goals]
            goal_filter = "and c.goal_id = any(%(f_goal)s)"
        conversions = _CONVERSIONS.format(goal_filter=goal_filter)
        if metric_name == "conversions":
            joins.insert(0, f"inner join {conversions} as conv on conv.session_id = f.session_id")
        elif by == "goal":
            # every visit once per goal of its site: converting for the goals it reached
            joins.insert(
                0,
                "inner join site_goals on site_goals.site_id = f.site_id "
                f"left join (select distinct session_id, goal_id from {conversions} as c) "
                "as conv on conv.session_id = f.session_id and conv.goal_id = site_goals.goal_id",
            )
        else:
            joins.insert(
                0,
                f"left join (select distinct session_id from {conversions} as c) as conv "
                "on conv.session_id = f.session_id",
            )
    dim = "null::text"
    if by == "goal" and metric_name == "conversion_rate":
        dim = "site_goals.goal_id"
    elif by:
        dim = f"coalesce(({dimension(by)})::text, '{NONE_VALUE}')"

    sql = f"""
with

sites as (

    -- one row per site and range read: the whole range, or each period asked for
    select *
    from unnest(
        %(site_ids)s::text[], %(timezones)s::text[], %(utc_froms)s::timestamptz[],
        %(utc_tos)s::timestamptz[], %(local_froms)s::timestamp[], %(local_tos)s::timestamp[],
        %(date_froms)s::date[], %(date_tos)s::date[]
    ) as s (site_id, timezone, utc_from, utc_to, local_from, local_to, date_from, date_to)

),

site_goals as (

    select *
    from unnest(%(goal_sites)s::text[], %(goal_ids)s::text[]) as g (site_id, goal_id)
    {"where goal_id = any(%(f_goal)s)" if goals else ""}

),

measured as (

    select
        f.site_id,
        {dim} as dim,
        {period} as period,
        ({q.value})::float8 as value,
        ({q.volume})::float8 as volume
    from {source}
    {" ".join(joins)}
    where {" and ".join([*bounds, *where]) or "true"}
    group by 1, 2, 3

){_top_values(by)}
order by measured.site_id, measured.dim, measured.period
"""
    return sql, params


def _top_values(by: str | None) -> str:
    """The end of metric_sql's statement: with ``by``, only each site's by_limit values of
    most volume over the range (a rate split by goal has the same volume for every goal:
    then the most converting)."""
    if not by:
        return "\n\nselect measured.*\nfrom measured"
    return """,

ranked as (

    select
        site_id,
        dim,
        row_number() over (
            partition by site_id order by sum(volume) desc, sum(value * volume) desc, dim
        ) as rank
    from measured
    group by site_id, dim

)

select measured.*
from measured
inner join ranked
    on measured.site_id = ranked.site_id and measured.dim = ranked.dim
where ranked.rank <= %(by_limit)s"""


# --- fetching --------------------------------------------------------------------------------


def fetch_series(
    conn,
    rule,
    sites: Sequence,
    start: datetime,
    end: datetime,
    *,
    bi_url: str | None = None,
    periods: Sequence[datetime] | None = None,
    known: dict[str, list[str]] | None = None,
) -> dict[tuple[str, str | None], Series]:
    """The rule's metric for each of ``sites`` and every local period of [start, end)
    (naive local times, the same for every site: each site's own midnight).

    ``periods``: only these periods of the range are read, and the series hold only them
    (the evaluator judging the last hour needs it and the same hour of 8 weeks before, not
    8 weeks of hours: ``conditions.periods_read``); the statement reads each period's rows
    through the index, a range of its own.

    Keyed by (site_id, value of ``by`` or None). Without ``by`` every site has a series;
    with it, each site's ``rule.by_limit`` values of most volume that have rows in the range.
    ``known``: site -> values of ``by`` that get a series even without rows in the range
    (0 for a count, no data otherwise): the instances the evaluator already has, so that
    a value gone from the data is judged, and resolves, rather than left as it was.
    ``custom`` runs the rule's SQL as ``bi_reader`` (``bi_url``: its DSN, by default
    ``ingestion.core.warehouse.bi_reader_url()``); :class:`SeriesError` when it fails."""
    meta = METRICS[rule.metric]
    if meta.realtime:
        raise ValueError(
            f"alert rule '{rule.id}': '{rule.metric}' is a real-time metric (a window of the "
            "engine's live state), not a series of the marts"
        )
    grain = rule.grain
    if not sites:
        return {}
    if rule.metric == "custom":
        rows = _fetch_custom(rule, sites, start, end, bi_url)
        if periods is not None:
            asked = set(_asked(periods, start, end, grain))
            rows = [row for row in rows if row[2] in asked]
        kind: Kind = "rate"
    else:
        sql, params = metric_sql(
            rule.metric, grain, rule.filters.given(), rule.by, some_periods=periods is not None
        )
        params.update(_range_params(sites, start, end, grain, periods))
        params["by_limit"] = rule.by_limit if rule.by else 1
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall()
        kind = QUERIES[rule.metric].kind
    return _assemble(rule, sites, start, end, rows, kind, periods, known)


def _range_params(
    sites: Sequence, start: datetime, end: datetime, grain: str, periods=None
) -> dict:
    """The sites CTE's ranges: per site the whole [start, end), or each of ``periods``."""
    local_from = period_start(start, grain)
    goal_sites, goal_ids = [], []
    for site in sites:
        for goal in getattr(site, "goals", []) or []:
            goal_sites.append(site.id)
            goal_ids.append(goal.id)
    ranges = []
    for site in sites:
        if periods is None:
            ranges.append((site, local_from, end))
        else:
            ranges.extend(
                (site, p, next_period(p, grain)) for p in _asked(periods, start, end, grain)
            )
    return {
        "site_ids": [site.id for site, _, _ in ranges],
        "timezones": [site.timezone for site, _, _ in ranges],
        "utc_froms": [local_to_utc(a, site.timezone) for site, a, _ in ranges],
        "utc_tos": [local_to_utc(b, site.timezone) for site, _, b in ranges],
        "local_froms": [a for _, a, _ in ranges],
        "local_tos": [b for _, _, b in ranges],
        "date_froms": [a.date() for _, a, _ in ranges],
        "date_tos": [b.date() for _, _, b in ranges],
        "date_from": local_from.date(),
        "date_to": end.date(),
        "goal_sites": goal_sites,
        "goal_ids": goal_ids,
    }


def _asked(periods, start: datetime, end: datetime, grain: str) -> list[datetime]:
    """The distinct period starts of ``periods`` within [start, end), in order."""
    local_from = period_start(start, grain)
    starts = {period_start(p, grain) for p in periods}
    return sorted(p for p in starts if local_from <= p < end)


def _assemble(rule, sites, start, end, rows, kind: Kind, asked=None, known=None) -> dict:
    meta = METRICS[rule.metric]
    grain = rule.grain
    by_site: dict[str, list] = {}
    for row in rows:
        by_site.setdefault(row[0], []).append(row)
    result: dict[tuple[str, str | None], Series] = {}
    for site in sites:
        periods, periods64, position = _grid(
            start, end, grain, site.timezone,
            None if asked is None else tuple(_asked(asked, start, end, grain)),
        )  # fmt: skip
        groups: dict[str | None, list] = {}
        if not rule.by:
            groups[None] = []
        else:
            for dim in (known or {}).get(site.id, []):
                groups[dim] = []
        for _site, dim, period, value, volume in by_site.get(site.id, []):
            groups.setdefault(dim if rule.by else None, []).append((period, value, volume))
        for dim, measured in groups.items():
            empty = 0.0 if kind == "count" else np.nan
            values = np.full(len(periods), empty)
            volumes = np.zeros(len(periods))
            for period, value, volume in measured:
                i = position.get(period)
                if i is None:
                    continue  # a DST gap's hour holds no rows; outside the range: not asked
                values[i] = np.nan if value is None else float(value)
                volumes[i] = 0.0 if volume is None else float(volume)
            label = meta.label if rule.metric != "custom" else (rule.name or rule.id)
            result[(site.id, dim)] = Series(
                site_id=site.id, dimension_value=dim, metric=rule.metric, label=label,
                unit=meta.unit, grain=grain, timezone=site.timezone,
                currency=getattr(site, "currency", ""), periods=periods, values=values,
                volumes=volumes,
            )  # fmt: skip
            # one array of the periods for the site's series: conditions reuse what they
            # computed from it (the positions of the weeks before)
            result[(site.id, dim)].__dict__["periods64"] = periods64
    return result


@lru_cache(maxsize=64)
def _grid(start: datetime, end: datetime, grain: str, timezone: str, asked=None):
    """The periods of [start, end) in ``timezone`` (or those of them ``asked``), as
    datetimes and datetime64, and each one's position (shared, read-only, by every series
    of the range)."""
    periods = periods_between(start, end, grain, timezone)
    if asked is not None:
        wanted = set(asked)
        periods = [p for p in periods if p in wanted]
    periods64 = np.array(periods, dtype="datetime64[m]")
    periods64.flags.writeable = False
    return periods, periods64, {p: i for i, p in enumerate(periods)}


# --- custom SQL ------------------------------------------------------------------------------

PLACEHOLDERS = ("site_id", "timezone", "grain", "start", "end", "start_utc", "end_utc")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def custom_sql(rule, sites: Sequence, start: datetime, end: datetime) -> tuple[str, dict]:
    """One statement running the rule's SQL for each site (``union all``), its placeholders
    bound per site; rows: site_id, then the SQL's own columns."""
    text = rule.sql.strip().rstrip(";").strip()
    if ";" in text:
        raise SeriesError(
            f"alert rule '{rule.id}': sql: holds more than one statement; give one query "
            "returning (period, value)"
        )
    local_from = period_start(start, rule.grain)
    parts, params = [], {}
    for n, site in enumerate(sites):
        values = {
            "site_id": site.id, "timezone": site.timezone, "grain": rule.grain,
            "start": local_from, "end": end,
            "start_utc": local_to_utc(local_from, site.timezone),
            "end_utc": local_to_utc(end, site.timezone),
        }  # fmt: skip
        for name, value in values.items():
            params[f"{name}_{n}"] = value
        body = _PLACEHOLDER.sub(lambda m, n=n: f"%({m.group(1)}_{n})s", text.replace("%", "%%"))
        parts.append(f"select %(site_id_{n})s::text as site_id, q.* from (\n{body}\n) as q")
    return "\nunion all\n".join(parts), params


def _fetch_custom(rule, sites, start, end, bi_url: str | None) -> list[tuple]:
    import psycopg

    from ingestion.core.warehouse import bi_reader_url, connect

    sql, params = custom_sql(rule, sites, start, end)
    try:
        with connect(bi_url or bi_reader_url()) as bi, bi.cursor() as cur:
            bi.read_only = True
            # one slow rule must not hold the cycle of every other for bi_reader's minutes
            cur.execute(f"set statement_timeout = '{CUSTOM_SQL_TIMEOUT}'")
            cur.execute(sql, params)
            names = [d.name for d in cur.description or []][1:]
            rows = cur.fetchall()
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SeriesError(f"alert rule '{rule.id}': sql failed: {message}") from exc
    if len(names) != 2:
        raise SeriesError(
            f"alert rule '{rule.id}': sql returns {len(names)} column(s) "
            f"({', '.join(names)}); it must return two: period, value"
        )
    tz = {s.id: s.timezone for s in sites}
    out: dict[tuple[str, datetime], tuple] = {}
    local_from = period_start(start, rule.grain)
    for site_id, period, value in rows:
        local = _local_period(rule, period, tz[site_id])
        if value is not None and not _is_number(value):
            raise SeriesError(
                f"alert rule '{rule.id}': sql returns the value {value!r} "
                f"({type(value).__name__}) for period {period}; the second column must be a "
                "number (or null)"
            )
        if local < local_from or local >= end:
            continue
        if (site_id, local) in out:
            raise SeriesError(
                f"alert rule '{rule.id}': sql returns two rows for the {rule.grain} {local} "
                f"(site '{site_id}'); return one row per period (group by it)"
            )
        number = None if value is None else float(value)
        out[(site_id, local)] = (site_id, None, local, number, 1.0 if number is not None else 0.0)
    return list(out.values())


def _local_period(rule, period, timezone: str) -> datetime:
    if isinstance(period, datetime):
        local = period if period.tzinfo is None else utc_to_local(period, timezone)
    elif isinstance(period, date):
        local = datetime(period.year, period.month, period.day)
    else:
        raise SeriesError(
            f"alert rule '{rule.id}': sql returns the period {period!r} "
            f"({type(period).__name__}); the first column must be a date or a timestamp"
        )
    return period_start(local, rule.grain)


def _is_number(value) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
