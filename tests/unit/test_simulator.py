import hashlib
import re
from collections import defaultdict
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import orjson
import pytest

from ingestion.demo_traffic.simulator import SimulationConfig, Simulator, visits_for_events

COMBINED = re.compile(
    r'^(?P<ip>\S+) - - \[(?P<ts>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) HTTP/1\.1" '
    r'(?P<status>\d{3}) (?P<bytes>\d+) "(?P<referrer>[^"]*)" "(?P<ua>[^"]*)"$'
)
CFG = SimulationConfig(days=3, visits_per_day=250, seed=7)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def run():
    sim = Simulator(CFG)
    outputs = list(sim.run())
    return sim, outputs


def by_kind(outputs, kind):
    return [o.data for o in outputs if o.kind == kind]


def digest(outputs) -> str:
    h = hashlib.sha256()
    for o in outputs:
        h.update(
            orjson.dumps(o.data, option=orjson.OPT_SORT_KEYS)
            if o.kind != "log"
            else o.data.encode()
        )
    return h.hexdigest()


def test_same_seed_same_traffic_other_seed_other_traffic(run):
    _, outputs = run
    assert digest(Simulator(CFG).run()) == digest(outputs)
    other = SimulationConfig(days=3, visits_per_day=250, seed=8)
    assert digest(Simulator(other).run()) != digest(outputs)


def test_visits_obey_the_session_rules(run):
    """No 30-minute gap inside a visit; at least 30 minutes between visits of one device;
    no visit longer than 12 hours but those the truth cuts there (parts)."""
    _, outputs = run
    cut = {s["session_id"] for s in by_kind(outputs, "sessions") if s["part"] > 0}
    times = defaultdict(list)
    visitor_of = {}
    for event in by_kind(outputs, "event"):
        corrected = ts(event["received_at"]) - (ts(event["sent_at"]) - ts(event["occurred_at"]))
        times[event["session_id"]].append(corrected)
        visitor_of[event["session_id"]] = event["visitor_id"]
    spans = defaultdict(list)
    for session, stamps in times.items():
        stamps.sort()
        gaps = [b - a for a, b in pairwise(stamps)]
        assert not gaps or max(gaps) < timedelta(minutes=30), session
        assert stamps[-1] - stamps[0] < timedelta(hours=12) or session in cut
        spans[visitor_of[session]].append((stamps[0], stamps[-1]))
    returning = 0
    for visits in spans.values():
        visits.sort()
        for (_, end), (start, _) in pairwise(visits):
            assert start - end >= timedelta(minutes=30)
            returning += 1
    assert returning > 20  # the simulation does have returning visitors


def test_truth_matches_the_events(run):
    sim, outputs = run
    events = by_kind(outputs, "event")
    sessions = by_kind(outputs, "sessions")
    unique = {e["event_id"]: e for e in events}
    assert len(events) - len(unique) == sim.stats["duplicates"] > 0
    page_views = [e for e in unique.values() if e["type"] == "page_view"]
    assert len(page_views) == sum(s["page_views"] for s in sessions if s["tracked"])
    tracked_orders = [t for t in by_kind(outputs, "transactions") if t["tracked"]]
    tx_events = [e for e in unique.values() if e["type"] == "transaction"]
    assert sorted(e["order_id"] for e in tx_events) == sorted(t["order_id"] for t in tracked_orders)
    assert (
        round(sum(t["revenue"] for t in by_kind(outputs, "transactions")), 2)
        == sim.stats["revenue"]
    )
    assert sum(s["revenue"] for s in sessions) == pytest.approx(sim.stats["revenue"])
    assert len(sessions) == sim.stats["visits"]
    assert sum(s["is_bot"] for s in sessions) == sim.stats["bot_visits"] > 0
    assert sum(not s["tracked"] for s in sessions) == sim.stats["blocked_visits"] > 0
    identities = by_kind(outputs, "identities")
    assert len({i["visitor_id"] for i in identities}) == len(identities) > 0


def test_shop_behaviour_is_present(run):
    sim, outputs = run
    unique = {e["event_id"]: e for e in by_kind(outputs, "event")}
    types = {e["type"] for e in unique.values()}
    assert types == {"page_view", "page_ping", "event", "transaction", "identify", "consent"}
    sessions = by_kind(outputs, "sessions")
    channels = {s["channel"] for s in sessions if not s["is_bot"]}
    assert channels == {
        "direct", "organic_search", "paid_search", "social", "email", "referral", "display",
        "affiliate",
    }  # fmt: skip
    steps = [sum(s["funnel_step"] >= k for s in sessions) for k in range(1, 5)]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[3] > 0  # funnel drop-off
    assert sim.stats["late_events"] > 0
    assert len({s["device_type"] for s in sessions}) == 3


def test_access_log_is_combined_format_in_time_order(run):
    sim, outputs = run
    lines = by_kind(outputs, "log")
    assert len(lines) == sim.stats["log_lines"]
    parsed = [COMBINED.match(line) for line in lines]
    assert all(parsed)
    stamps = [datetime.strptime(m["ts"], "%d/%b/%Y:%H:%M:%S %z") for m in parsed]
    assert stamps == sorted(stamps)
    statuses = {m["status"] for m in parsed}
    assert {"200", "404"} <= statuses
    paths = {m["path"] for m in parsed}
    assert "/robots.txt" in paths and "/static/app.css" in paths
    assert any("Googlebot" in m["ua"] for m in parsed)


def test_quick_reloads_are_two_page_views_and_two_log_lines(run):
    """Some pages are requested twice within ~2 s by one browser: two tracker page views and
    two log lines of the same URL (the warehouse must match them one to one)."""
    sim, outputs = run
    views = defaultdict(list)
    for e in {e["event_id"]: e for e in by_kind(outputs, "event")}.values():
        if e["type"] == "page_view":
            views[(e["visitor_id"], e["url"])].append(ts(e["occurred_at"]))
    reloaded = set()
    for (_, url), stamps in views.items():
        stamps.sort()
        if any(b - a <= timedelta(seconds=2) for a, b in pairwise(stamps)):
            reloaded.add(url.split("shop.siteline.test", 1)[1])
    lines = defaultdict(list)
    for m in map(COMBINED.match, by_kind(outputs, "log")):
        lines[(m["ip"], m["ua"], m["path"])].append(
            datetime.strptime(m["ts"], "%d/%b/%Y:%H:%M:%S %z")
        )
    twice = {
        path
        for (_, ua, path), stamps in lines.items()
        if "Bot" not in ua and any(b - a <= timedelta(seconds=2) for a, b in pairwise(stamps))
    }
    assert sim.stats["reloads"] >= 20
    assert len(reloaded) >= 10 and reloaded <= twice


def rule_visits(outputs) -> dict[str, list[dict]]:
    """The truth rows of each tracker session the truth splits into parts, or that crosses
    local midnight."""
    parts = defaultdict(list)
    for s in by_kind(outputs, "sessions"):
        parts[s["session_id"]].append(s)
    berlin = ZoneInfo(CFG.site_timezone)

    def crosses_midnight(rows):
        days = {
            ts(r[k]).astimezone(berlin).date() for r in rows for k in ("started_at", "ended_at")
        }
        return len(days) > 1

    return {k: v for k, v in parts.items() if len(v) > 1 or crosses_midnight(v)}


def test_each_day_has_visits_the_visit_rules_split(run):
    """A campaign link followed inside a visit (a new visit from it), a visit longer than
    the 12-hour cap (cut there), a visit across local midnight (one visit: the demo site does
    not split at midnight): one of each a day, in the truth as the warehouse is to build them."""
    sim, outputs = run
    found = rule_visits(outputs)
    campaign = [v for v in found.values() if len(v) == 2 and v[1]["channel"] == "email"]
    long = [v for v in found.values() if len(v) == 2 and v[1]["channel"] == "direct"]
    midnight = [v for v in found.values() if len(v) == 1]
    assert len(campaign) >= CFG.days and len(long) >= CFG.days and len(midnight) >= CFG.days
    for first, second in campaign:
        assert (first["part"], second["part"]) == (0, 1)
        assert first["channel"] == "direct" and second["campaign"] == "weekly_digest"
        assert ts(second["started_at"]) - ts(first["ended_at"]) < timedelta(minutes=30)
    for first, second in long:
        assert ts(second["started_at"]) - ts(first["started_at"]) >= timedelta(hours=12)
        assert ts(second["started_at"]) - ts(first["ended_at"]) < timedelta(minutes=30)
    assert sim.stats["rule_visits"] == 3 * CFG.days


def test_a_site_that_splits_at_midnight_gets_two_visits_in_the_truth():
    cfg = SimulationConfig(days=2, visits_per_day=20, seed=7, split_at_midnight=True)
    sim = Simulator(cfg)
    outputs = list(sim.run())
    berlin = ZoneInfo(cfg.site_timezone)
    split = [v for v in rule_visits(outputs).values() if len(v) == 2 and v[1]["channel"] == "direct"
             and ts(v[0]["started_at"]).astimezone(berlin).hour == 23]  # fmt: skip
    assert len(split) == cfg.days
    for first, second in split:
        assert ts(first["ended_at"]).astimezone(berlin).hour == 23
        assert ts(second["started_at"]).astimezone(berlin).hour == 0
        assert (first["page_views"], second["page_views"]) == (3, 2)


def test_a_target_of_tracker_events_gives_the_visits_a_day():
    assert visits_for_events(1_300_000, 10) == 10_000  # about 13 events a visit
    assert visits_for_events(1_000_000, 14) == 5_495
    assert visits_for_events(5, 14) == 1  # at least one visit a day
