"""The warehouse's visit rules, in Python, for the real-time engine.

Each function here mirrors one definition in the dbt project and is tested to agree with it
(tests/unit/test_engine_rules.py, and tests/integration/test_pipeline.py replays the demo's
landed events through :class:`Sessioniser` and compares every session id with the
warehouse's):

* :func:`channel_of` - the channel of ``int_sessions``: both read the seed ``channel_rules``
* :meth:`SiteRules.referrer` - the ``referrer_medium`` of ``int_events_unified`` with the
  ``referrer_hosts`` seed
* :meth:`SiteRules.campaign` - the campaign fields of ``int_events_unified``
* :meth:`SiteRules.page_label` - ``dim_pages.page_label``
* :meth:`SiteRules.matches` - ``macros/matches_rule.sql`` (goals and funnel steps)
* :class:`Sessioniser` - ``int_events_sessionised``: a new visit after the inactivity timeout,
  at local midnight when the site asks, when a page view brings another campaign or external
  referrer; visits cut into pieces of ``max_session_hours``; the session id is
  ``md5(site | visitor | first event id)`` as in the warehouse, so a live session and its row
  in ``web.fct_sessions`` share the id.

Pure functions and small classes: no I/O besides reading each seed once.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT
from ingestion.core.sites import Match, Site, compile_pattern

SEEDS = PROJECT_ROOT / "dbt_project" / "seeds"
REFERRER_SEED = SEEDS / "referrer_hosts.csv"
CHANNEL_RULES_SEED = SEEDS / "channel_rules.csv"
CHANNELS_SEED = SEEDS / "channels.csv"
MATCH_KINDS = ("campaign_medium", "referrer_medium", "any_campaign", "none")


@dataclass(frozen=True)
class ChannelRules:
    """The channel grouping of seed ``channel_rules``, compiled to lookups (see the seed's
    description in ``seeds/_seeds.yml`` for which rule applies first)."""

    by_campaign_medium: dict[str, str]
    by_referrer_medium: dict[str, str]
    any_campaign: str
    no_source: str


@cache
def channel_rules(
    path: Path = CHANNEL_RULES_SEED, channels_path: Path = CHANNELS_SEED
) -> ChannelRules:
    """The channel rules of the dbt seed the warehouse uses, checked as dbt's tests check it
    (one rule per kind and lower-cased value, known kinds and channels, one any_campaign
    and one none rule)."""
    with open(channels_path, newline="") as fh:
        channels = {row["channel_id"] for row in csv.DictReader(fh)}
    lookups: dict[str, dict[str, str]] = {kind: {} for kind in MATCH_KINDS}
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            kind, value, channel = row["match_kind"], row["match_value"].lower(), row["channel_id"]
            where = f"{path.name}: line {line}"
            if kind not in lookups:
                raise SitelineError(
                    f"{where}: match_kind {kind!r} is not one of {', '.join(MATCH_KINDS)}"
                )
            if channel not in channels:
                raise SitelineError(
                    f"{where}: channel_id {channel!r} is not in {channels_path.name}; add it there"
                )
            if value in lookups[kind]:
                raise SitelineError(f"{where}: a second {kind} rule for {value!r}; keep one")
            lookups[kind][value] = channel
    for kind in ("any_campaign", "none"):
        if len(lookups[kind]) != 1:
            raise SitelineError(f"{path.name}: needs exactly one {kind} rule (with no value)")
    return ChannelRules(
        by_campaign_medium=lookups["campaign_medium"],
        by_referrer_medium=lookups["referrer_medium"],
        any_campaign=next(iter(lookups["any_campaign"].values())),
        no_source=next(iter(lookups["none"].values())),
    )


def channel_of(
    campaign_medium: str | None, campaign_source: str | None, referrer_medium: str | None
) -> str:
    """The channel of a visit from its landing page's campaign medium/source and referrer."""
    rules = channel_rules()
    if campaign_medium is not None:
        channel = rules.by_campaign_medium.get(campaign_medium.lower())
        if channel is not None:
            return channel
    if referrer_medium is not None:
        channel = rules.by_referrer_medium.get(referrer_medium)
        if channel is not None:
            return channel
    if campaign_medium is not None or campaign_source is not None:
        return rules.any_campaign
    return rules.no_source


@cache
def referrer_hosts(path: Path = REFERRER_SEED) -> dict[str, tuple[str, str]]:
    """host → (medium, source), from the dbt seed the warehouse uses."""
    with open(path, newline="") as fh:
        return {
            row["referrer_host"]: (row["referrer_medium"], row["referrer_source"])
            for row in csv.DictReader(fh)
        }


_BARE = re.compile(r"^(www|m)\.")
CAMPAIGN_FIELDS = ("campaign", "source", "medium", "term", "content")


@dataclass(frozen=True)
class Campaign:
    name: str | None = None
    source: str | None = None
    medium: str | None = None
    term: str | None = None
    content: str | None = None

    @property
    def is_set(self) -> bool:
        return self.source is not None or self.medium is not None or self.name is not None


NO_CAMPAIGN = Campaign()


class SiteRules:
    """A site's configuration compiled for fast per-event use."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self.site_id = site.id
        self.domains = frozenset(site.domains)
        rules = site.sessions
        self.timeout = rules.inactivity_timeout_minutes * 60.0
        self.split_at_midnight = rules.split_at_midnight
        self.on_campaign_change = rules.new_session_on_campaign_change
        self.max_length = rules.max_session_hours * 3600.0
        self.allowed_lateness = rules.allowed_lateness_hours * 3600.0
        self.zone = ZoneInfo(site.timezone)
        # Operators' patterns meet visitors' paths: RE2, linear in the path (compile_pattern).
        self.labels = [(label.label, compile_pattern(label.path)) for label in site.page_labels]
        # parameter name → (field, position): the lowest position present in a URL wins
        self.parameters: dict[str, tuple[str, int]] = {}
        for field, names in site.campaign_parameters.model_dump().items():
            for position, name in enumerate(names, start=1):
                self.parameters.setdefault(name, (field, position))
        self.goals = [(goal, _compiled(goal)) for goal in site.goals]
        self.funnels = [
            (funnel, [_compiled(step) for step in funnel.steps]) for funnel in site.funnels
        ]
        self._seed = referrer_hosts()

    # -- enrichment -----------------------------------------------------------------------------
    def referrer(self, referrer_host: str | None, page_host: str | None) -> tuple[str | None, ...]:
        """(medium, source) of a referrer: internal, a known search/social/e-mail host, or
        other_site; (None, None) without referrer."""
        if referrer_host is None:
            return None, None
        if referrer_host == page_host or referrer_host in self.domains:
            return "internal", None
        known = self._seed.get(_BARE.sub("", referrer_host))
        return known if known else ("other_site", None)

    def campaign(self, page_query: str | None) -> Campaign:
        """Campaign fields of a page URL's query (values as given, '+' read as a space)."""
        if not page_query or "=" not in page_query:
            return NO_CAMPAIGN
        best: dict[str, tuple[int, str | None]] = {}
        for pair in page_query.split("&"):
            name, sep, value = pair.partition("=")
            known = self.parameters.get(name)
            if known is None:
                continue
            field, position = known
            if field not in best or position < best[field][0]:
                best[field] = (position, (value.replace("+", " ") or None) if sep else None)
        if not best:
            return NO_CAMPAIGN
        return Campaign(
            name=best.get("campaign", (0, None))[1],
            source=best.get("source", (0, None))[1],
            medium=best.get("medium", (0, None))[1],
            term=best.get("term", (0, None))[1],
            content=best.get("content", (0, None))[1],
        )

    def page_label(self, path: str | None) -> str:
        if path is not None:
            for label, pattern in self.labels:
                if pattern.search(path):
                    return label
        return "Other"

    @staticmethod
    def matches(rule: tuple, event_type: str, path: str | None, category, action) -> bool:
        """Whether an event matches a compiled goal/funnel-step rule (see :func:`_compiled`)."""
        kind, pattern, want_category, want_action = rule
        if kind == "page":
            return event_type == "page_view" and path is not None and bool(pattern.search(path))
        if kind == "event":
            return (
                event_type == "event"
                and (want_category is None or category == want_category)
                and (want_action is None or action == want_action)
                and (pattern is None or (path is not None and bool(pattern.search(path))))
            )
        if kind == "transaction":
            return event_type == "transaction"
        return event_type == "identify"

    # -- visits -----------------------------------------------------------------------------------
    def local_day(self, at: float) -> int:
        """The site's local calendar day of an epoch time (a day number)."""
        return datetime.fromtimestamp(at, self.zone).toordinal()

    def touch_key(self, campaign: Campaign, referrer_medium, referrer_host) -> str | None:
        """What identifies a page view's traffic source for the campaign-change rule."""
        if campaign.is_set:
            # As int_events_sessionised: the fields as a JSON array, a missing one in its place
            # (joined without the missing ones, source x and medium x were one campaign).
            fields = [campaign.source, campaign.medium, campaign.name]
            return "campaign|" + json.dumps(fields)
        if referrer_medium is not None and referrer_medium != "internal":
            return f"referrer|{referrer_host}"
        return None


def _compiled(rule: Match) -> tuple:
    pattern = compile_pattern(rule.path) if rule.path else None
    return rule.type, pattern, rule.category, rule.action


def session_id_of(site_id: str, device_key: str, first_event_id: str) -> str:
    """The warehouse's session id (int_events_sessionised): md5(site|device|first event)."""
    return hashlib.md5(f"{site_id}|{device_key}|{first_event_id}".encode()).hexdigest()


@dataclass(slots=True)
class Track:
    """Where a device (visitor id) stands in the visit rules; one per live visitor."""

    last_at: float
    last_day: int
    page_views_in_run: int  # page views since the last inactivity gap
    last_touch: str | None  # the previous page view's touch key in this run
    started_at: float  # start of the visit (before cutting it into max-length pieces)
    piece: int


class Sessioniser:
    """Decides, event by event in time order, whether an event starts a new visit.

    ``step`` returns True when the event starts a visit; the caller names that visit with
    :func:`session_id_of` and the event's id. Events must come in (time, event id) order
    per device, as the warehouse sorts them; the engine feeds them in arrival order, which
    for live traffic is the same (late and out-of-order events join the open visit).
    """

    def __init__(self, rules: SiteRules) -> None:
        self.rules = rules

    def step(
        self, track: Track | None, at: float, is_page_view: bool, touch: str | None
    ) -> tuple[Track, bool]:
        r = self.rules
        day = r.local_day(at) if r.split_at_midnight else 0
        gap = (
            track is None
            or at - track.last_at > r.timeout
            or (r.split_at_midnight and day != track.last_day)
        )
        if gap:
            track = Track(at, day, 0, None, at, 0)
        new = gap
        if is_page_view:
            track.page_views_in_run += 1
            if (
                not gap
                and r.on_campaign_change
                and track.page_views_in_run > 1
                and touch is not None
                and (track.last_touch or "") != touch
            ):
                new = True
            if touch is not None:
                track.last_touch = touch
        if new and not gap:
            track.started_at, track.piece = at, 0
        elif not new:
            piece = int((at - track.started_at) // r.max_length)
            if piece != track.piece:
                track.piece, new = piece, True
        track.last_at, track.last_day = at, day
        return track, new


def epoch(value: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (None stays None)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


PLAUSIBLE_WAIT = 366 * 86400.0  # macros/device_clock.sql: device_wait_is_plausible


def corrected_time(record: dict) -> tuple[float, float, float]:
    """(occurred_at on the collector's clock, send delay, received_at) of a landed event, as
    stg_collector__events corrects it: received_at - (sent_at - occurred_at) when the device's
    wait is one a tracker can have had (0 to 366 days), else received_at with no delay."""
    occurred = epoch(record["occurred_at"])
    sent = epoch(record.get("sent_at")) or occurred
    received = epoch(record["received_at"])
    wait = sent - occurred
    if not 0 <= wait <= PLAUSIBLE_WAIT:
        return received, 0.0, received
    return received - wait, wait, received


def iso(at: float | None) -> str | None:
    """ISO 8601 UTC with milliseconds of an epoch time, as the collector writes times."""
    if at is None:
        return None
    second = int(at // 1)
    return f"{_iso_second(second)}.{int((at - second) * 1000):03d}Z"


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
