"""Up to when a site's data is complete: the one rule that alerts and scheduled reports wait for.

A period (an hour, a day, ... in the site's time zone) is complete when its end, in UTC, is at
or before :func:`complete_until`'s ``until``, which is the earliest of these bounds:

* **now**: the period is over;
* **the collector**: every event the collector received before it is in a landing segment
  that was loaded (``raw_collector.landing_reads``: each load records when it read the
  manifest and what it took and left; a segment is closed at most
  ``SITELINE_SEGMENT_MAX_SECONDS`` after its first event, so a read at ``t`` that took every
  listed segment holds every event received before ``t`` minus that, less 30 s of grace);
  a quiet collector holds nothing back: when the live manifest lists no segment since that
  read, the bound is now minus the same time;
* **each logfile source of the site**: the start of its last pull, less the source's
  ``lateness`` (a pull reads every complete line written before it started; the lines of a
  moment can still be written ``lateness`` after it, by a buffered writer);
* **the marts**: only the loads committed before the marts' last build count
  (``intermediate.int_incremental_manifest``: when each incremental model of ``web`` and
  ``crm`` was last built, dbt's ``run_started_at``; the oldest of them counts).

Every query reads bookkeeping tables (one row per load, per pull, per model), never the
events or hits. See docs/alerts.md, "Complete data".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from ingestion.collector_events import CLOSE_GRACE_SECONDS, Landing, closed_before
from ingestion.core.landing import SegmentInfo
from ingestion.core.settings import settings
from ingestion.core.sites import LogSource, Site, SitesConfig

# "Nothing is complete": the bound of a part that has no data in the marts at all.
NOTHING = datetime.min.replace(tzinfo=UTC)
LATER = datetime.max.replace(tzinfo=UTC)  # (no bound)
# A mart not built for this long before the newest one is taken for one no longer built
# (removed from the project): it does not hold the others back (as the change logs' pruning,
# dbt_project/macros/incremental/bookkeeping.sql).
STALE_MART = timedelta(days=30)


@dataclass(frozen=True)
class Bound:
    """What one part of the data (the collector, a logfile source, the marts) is complete
    until, and the sentence that says why not later."""

    part: str
    until: datetime
    reason: str


@dataclass(frozen=True)
class Completeness:
    """``until`` (UTC): a period is complete when its end is at or before it. ``reasons``:
    why not later, the tightest first, one sentence per part that is behind ``now``."""

    until: datetime
    reasons: list[str]
    bounds: tuple[Bound, ...] = field(default=())

    def waiting_for(self, period_end_utc: datetime) -> list[str]:
        """The reasons a period ending at ``period_end_utc`` is not complete yet (empty
        when it is): what an instance shows while it says "waiting for data"."""
        _aware(period_end_utc, "period_end_utc")
        return [b.reason for b in self.bounds if b.until < period_end_utc]


def period_complete(completeness: Completeness, period_end_utc: datetime) -> bool:
    """Whether the period ending at ``period_end_utc`` (aware, any zone) is complete."""
    return _aware(period_end_utc, "period_end_utc") <= completeness.until


def complete_until(
    conn,
    config: SitesConfig,
    site_id: str,
    now: datetime | None = None,
    *,
    landing: Landing | None = None,
) -> Completeness:
    """Up to when site ``site_id``'s data is complete, as of ``now`` (aware; default the
    clock; ``siteline alerts check --at`` passes its time). ``landing`` is the collector's
    landing, read for its live manifest (default: the one the loader reads)."""
    return complete_until_sites(conn, config, [site_id], now, landing=landing)[site_id]


def complete_until_sites(
    conn,
    config: SitesConfig,
    site_ids: list[str],
    now: datetime | None = None,
    *,
    landing: Landing | None = None,
) -> dict[str, Completeness]:
    """:func:`complete_until` of several sites: the collector and the marts are read once."""
    now = datetime.now(UTC) if now is None else _aware(now, "now")
    sites = [config.site(site_id) for site_id in site_ids]
    built = _marts_built(conn)
    shared = _collector_bound(conn, built, now, landing or default_landing())
    marts = (
        [Bound("marts", NOTHING, "the marts have not been built yet (siteline run)")]
        if built is None
        else []
    )
    result = {}
    for site in sites:
        zone = ZoneInfo(site.timezone)
        collector = Bound(shared.part, shared.until, _localise(shared.reason, zone))
        bounds = sorted(
            [*marts, collector, *_logfile_bounds(conn, site, built, zone)], key=lambda b: b.until
        )
        until = min([now, *(b.until for b in bounds)])
        reasons = [b.reason for b in bounds if b.until < now]
        result[site.id] = Completeness(until, reasons, tuple(bounds))
    return result


def default_landing() -> Landing:
    """The landing the collector events loader reads (a remote collector's export, or the
    local landing directory)."""
    from ingestion.core.home import landing_dir

    config = settings()
    if config.remote_landing_url:
        return Landing(config.remote_landing_url, config.remote_landing_token)
    return Landing(str(landing_dir()))


# -- the marts ----------------------------------------------------------------------------------


def _marts_built(conn) -> datetime | None:
    """When the marts were last built: the oldest last build of the incremental models of
    ``web`` and ``crm`` (loads committed before it are in them); None before the first."""
    if not _exists(conn, "intermediate.int_incremental_manifest"):
        return None
    rows = conn.execute(
        """
        -- the manifest names models by table; the marts are those of web and crm
        select m.model_name, m.updated_at
        from intermediate.int_incremental_manifest as m
        inner join pg_catalog.pg_class as c on m.model_name = c.relname
        inner join pg_catalog.pg_namespace as n on c.relnamespace = n.oid
        where n.nspname in ('web', 'crm') and c.relkind in ('r', 'p')
        """
    ).fetchall()
    if not rows:
        return None
    newest = max(at for _, at in rows)
    return min(at for _, at in rows if at > newest - STALE_MART)


# -- the collector ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Read:
    read_at: datetime
    complete_before: datetime
    segments_left: int
    last_listed: str | None
    loaded_at: datetime


# The newest read of the events stream whose load had completed before ``before`` (the
# marts' build). Top-1 by read_at, so with indexes on landing_reads (read_at) and
# _dlt_loads (load_id) it reads a row or two; without, it scans both bookkeeping tables.
_READ = """
    select r.read_at, r.complete_before, r.segments_left, r.last_listed, l.inserted_at
    from raw_collector.landing_reads as r
    inner join raw_collector._dlt_loads as l on r._dlt_load_id = l.load_id
    where
        r.stream = 'events' and r.read_at < %(before)s
        and l.status = 0 and l.inserted_at < %(before)s
    order by r.read_at desc
    limit 1
"""


def _latest_read(conn, before: datetime) -> _Read | None:
    row = conn.execute(_READ, {"before": before}).fetchone()
    return _Read(*row) if row else None


def _collector_bound(conn, built: datetime | None, now: datetime, landing: Landing) -> Bound:
    """The collector's bound. Its reason holds ``{t:...}`` placeholders for times, filled in
    each site's time zone by :func:`_localise`."""
    part = "collector"
    window = settings().segment_max_seconds
    idle = closed_before(now, window)
    has_reads = _exists(conn, "raw_collector.landing_reads")
    in_marts = _latest_read(conn, built) if has_reads and built is not None else None
    loaded = _latest_read(conn, LATER) if has_reads else None
    try:
        manifest: list[SegmentInfo] | None = landing.manifest("events")
        unreadable = ""
    except Exception as exc:  # an unreachable remote collector: judge by the loads alone
        manifest, unreadable = None, f"cannot read the landing manifest ({exc}); "
    still_open = (
        f"collector: events of the last {window + CLOSE_GRACE_SECONDS:g} s may still be in a "
        "landing segment the collector has not closed"
    )
    not_built = (
        f"; loaded {_t(loaded.loaded_at)}, after the marts' last build {_t(built)}"
        if loaded is not None and built is not None
        and (in_marts is None or loaded.read_at > in_marts.read_at)
        else ""
    )  # fmt: skip

    if in_marts is None:
        if manifest == [] and loaded is None:  # nothing ever landed
            return Bound(part, idle, still_open)
        firsts = [_first(s) for s in manifest or [] if s.first_received_at]
        if not firsts:
            why = f"{unreadable}no load is in the marts yet"
            return Bound(part, NOTHING, f"collector: {why}{not_built}")
        why = f"no landing segment is in the marts yet (the first from {_t(min(firsts))})"
        return Bound(part, min(firsts), f"collector: {unreadable}{why}{not_built}")

    names = [s.name for s in manifest] if manifest is not None else []
    located = in_marts.last_listed is None or in_marts.last_listed in names
    if manifest is None or in_marts.segments_left or not located:
        if in_marts.segments_left:
            why = (f"{in_marts.segments_left} landing segment(s) were left for a later load "
                   f"(the earliest from {_t(in_marts.complete_before)})")  # fmt: skip
        else:
            why = f"{unreadable}the load in the marts read the landing at {_t(in_marts.read_at)}"
        return Bound(part, in_marts.complete_before, f"collector: {why}{not_built}")

    # Segments listed since the read in the marts (the manifest only ever appends): every
    # event received before the first event of the earliest of them, and before ``idle``,
    # was in a segment that read took.
    new = manifest[names.index(in_marts.last_listed) + 1 :] if in_marts.last_listed else manifest
    firsts = [(_first(s), s.name) for s in new if s.first_received_at]
    if firsts and min(firsts)[0] < idle:
        first, name = min(firsts)
        why = f"landing segment {name} (first event {_t(first)}) is not in the marts yet"
        return Bound(part, first, f"collector: {why}{not_built}")
    return Bound(part, idle, still_open)


def _t(moment: datetime) -> str:
    """A placeholder for a time in a shared reason, filled in per site by :func:`_localise`."""
    return "{t:" + moment.isoformat() + "}"


def _first(segment: SegmentInfo) -> datetime:
    return datetime.fromisoformat(segment.first_received_at)


# -- the logfile sources ------------------------------------------------------------------------


def _logfile_bounds(conn, site: Site, built: datetime | None, zone: ZoneInfo) -> list[Bound]:
    """One bound per logfile source of the site: its last pull in the marts, less its
    lateness."""
    if not site.logfiles:
        return []
    pulls: dict[str, tuple[datetime | None, datetime | None]] = {}
    if _has_column(conn, "raw_logfiles", "files", "pull_started_at"):
        rows = conn.execute(
            """
            -- per source, the start of its last pull whose load had completed before the
            -- marts' build, and of its last pull: top-1 each, so an index on files
            -- (site_id, source, pull_started_at) and on _dlt_loads (load_id) answer them
            with

            sources as (
                select unnest(%(sources)s::text[]) as source
            ),

            final as (
                select
                    s.source,
                    (
                        select f.pull_started_at
                        from raw_logfiles.files as f
                        inner join raw_logfiles._dlt_loads as l on f._dlt_load_id = l.load_id
                        where
                            f.site_id = %(site)s and f.source = s.source
                            and f.pull_started_at < %(built)s
                            and l.status = 0 and l.inserted_at < %(built)s
                        order by f.pull_started_at desc
                        limit 1
                    ) as in_marts,
                    (
                        select f.pull_started_at
                        from raw_logfiles.files as f
                        inner join raw_logfiles._dlt_loads as l on f._dlt_load_id = l.load_id
                        where
                            f.site_id = %(site)s and f.source = s.source
                            and f.pull_started_at is not null and l.status = 0
                        order by f.pull_started_at desc
                        limit 1
                    ) as loaded
                from sources as s
            )

            select * from final
            """,
            {
                "sources": [s.name for s in site.logfiles],
                "site": site.id,
                "built": built if built else NOTHING,
            },
        ).fetchall()
        pulls = {source: (in_marts, loaded) for source, in_marts, loaded in rows}
    return [_logfile_bound(site, source, *pulls.get(source.name, (None, None)), built, zone)
            for source in site.logfiles]  # fmt: skip


def _logfile_bound(
    site: Site,
    source: LogSource,
    in_marts: datetime | None,
    loaded: datetime | None,
    built: datetime | None,
    zone: ZoneInfo,
) -> Bound:
    part = f"logfile source {site.id}.{source.name}"
    lateness = timedelta(seconds=source.lateness)
    if in_marts is None:
        if loaded is None:
            return Bound(part, NOTHING, f"{part} has not been pulled yet")
        return Bound(part, NOTHING, f"{part}: its pull of {_at(loaded, zone)} is not in the "
                     f"marts yet (built {_at(built, zone) if built else 'never'})")  # fmt: skip
    until = in_marts - lateness
    reason = (f"{part} last pulled {_at(in_marts, zone)}, so complete until "
              f"{_at(until, zone)} (lateness {_duration(source.lateness)})")  # fmt: skip
    if loaded is not None and loaded > in_marts and built is not None:
        reason += f"; its pull of {_at(loaded, zone)} is not in the marts yet"
    return Bound(part, until, reason)


# -- helpers ------------------------------------------------------------------------------------


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (UTC), not {value!r}")
    return value


def _exists(conn, relation: str) -> bool:
    return conn.execute("select to_regclass(%s) is not null", (relation,)).fetchone()[0]


def _has_column(conn, schema: str, table: str, column: str) -> bool:
    return (
        conn.execute(
            "select 1 from information_schema.columns "
            "where table_schema = %s and table_name = %s and column_name = %s",
            (schema, table, column),
        ).fetchone()
        is not None
    )


def _at(moment: datetime, zone: ZoneInfo) -> str:
    """A time as the site's people read it: ``2026-12-07 10:05 CET``."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname()}"


def _localise(reason: str, zone: ZoneInfo) -> str:
    """Fill the ``{t:<iso time>}`` placeholders of a shared reason in a site's zone."""
    out, rest = [], reason
    while "{t:" in rest:
        head, _, tail = rest.partition("{t:")
        stamp, _, rest = tail.partition("}")
        out += [head, _at(datetime.fromisoformat(stamp), zone)]
    return "".join([*out, rest])


def _duration(seconds: int) -> str:
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
