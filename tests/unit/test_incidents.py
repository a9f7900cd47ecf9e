"""Incidents injected into the demo traffic: each does what its ground truth says, only in its
window, and a simulation without them is the traffic it always was."""

import hashlib
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median
from zoneinfo import ZoneInfo

import orjson
import pytest

from ingestion.core.enrich import bot_reason
from ingestion.core.sites import load_sites
from ingestion.demo_traffic.incidents import (
    DEMO_MIN_DAYS,
    FLOOD_USER_AGENT,
    Incident,
    demo_incidents,
)
from ingestion.demo_traffic.simulator import SimulationConfig, Simulator
from ingestion.demo_traffic.writer import read_incidents, write_simulation

TZ = ZoneInfo("Europe/Berlin")
LINE = re.compile(r'\[(?P<ts>[^\]]+)\] "(?P<method>[A-Z]+) (?P<path>\S+) [^"]*" (?P<status>\d{3}) '
                  r'\d+ "[^"]*" "(?P<ua>[^"]*)"$')  # fmt: skip
INCIDENTS = (
    Incident("campaign_spike", datetime(2026, 11, 2, 18), hours=3, factor=8),
    Incident("checkout_outage", datetime(2026, 11, 3, 10), hours=10),
    Incident("bot_flood", datetime(2026, 11, 3, 12), hours=2, factor=50),
    Incident("page_speed_regression", datetime(2026, 11, 4, 9), hours=6, factor=2.5),
)
CFG = SimulationConfig(days=5, visits_per_day=300, seed=3, incidents=INCIDENTS)


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def log_time(line: str) -> datetime:
    return datetime.strptime(LINE.search(line)["ts"], "%d/%b/%Y:%H:%M:%S %z")


def window(incident: Incident) -> tuple[datetime, datetime]:
    return incident.window_utc(TZ)


@pytest.fixture(scope="module")
def run():
    sim = Simulator(CFG)
    outputs = list(sim.run())
    return sim, outputs, {row["kind"]: row for row in sim.incident_truth()}


def of(outputs, kind):
    return [o.data for o in outputs if o.kind == kind]


def digest(outputs) -> str:
    h = hashlib.sha256()
    for o in outputs:
        h.update(orjson.dumps(o.data, option=orjson.OPT_SORT_KEYS) if o.kind != "log"
                 else o.data.encode())  # fmt: skip
    return h.hexdigest()


def test_the_ground_truth_names_each_incident_its_window_and_metrics(run):
    _, _, truth = run
    outage = truth["checkout_outage"]
    assert outage["start_local"] == "2026-11-03T10:00:00"
    assert outage["end_local"] == "2026-11-03T20:00:00"
    assert (outage["start_utc"], outage["end_utc"]) == ("2026-11-03T09:00:00Z",
                                                        "2026-11-03T19:00:00Z")  # fmt: skip
    assert outage["metrics"].split()[:3] == ["log_5xx_share", "log_5xx", "transactions"]
    assert truth["campaign_spike"]["dimension"] == "channel=social"
    assert truth["campaign_spike"]["affected"] == round(8 * 300 / 24 * 3)  # 300 extra visits
    assert truth["bot_flood"]["affected"] == round(50 * 300 / 24 * 2)
    assert truth["page_speed_regression"]["metrics"] == "page_load_p75"
    assert all(row["affected"] > 0 for row in truth.values())


def test_checkout_outage_fails_every_payment_in_its_hours_and_only_then(run):
    _, outputs, truth = run
    start, end = window(INCIDENTS[1])
    errors = [line for line in of(outputs, "log") if LINE.search(line)["status"][0] == "5"]
    assert errors and all(start <= log_time(line) < end for line in errors)
    assert {(LINE.search(x)["method"], LINE.search(x)["path"]) for x in errors} == {
        ("POST", "/checkout/payment")
    }
    orders = [ts(t["ordered_at"]) for t in of(outputs, "transactions")]
    assert not [at for at in orders if start <= at < end]
    assert [at for at in orders if at < start] and [at for at in orders if at >= end]
    failed = [e for e in of(outputs, "event") if e.get("action") == "payment_failed"]
    visits = {e["session_id"] for e in failed}
    assert 0 < len(visits) <= truth["checkout_outage"]["affected"]
    assert all(start <= ts(e["received_at"]) < end + timedelta(minutes=5) for e in failed)
    # The visits that failed end on the payment page, in the truth too.
    sessions = {s["session_id"]: s for s in of(outputs, "sessions")}
    assert {(sessions[v]["exit_path"], sessions[v]["transactions"]) for v in visits} == {
        ("/checkout/payment", 0)
    }


def test_campaign_spike_brings_its_visits_from_one_campaign_in_its_hours(run):
    _, outputs, truth = run
    start, end = window(INCIDENTS[0])
    flash = [s for s in of(outputs, "sessions") if s["campaign"] == "flash_sale"]
    assert len(flash) == truth["campaign_spike"]["affected"]
    assert {s["channel"] for s in flash} == {"social"}
    assert all(start <= ts(s["started_at"]) < end for s in flash)
    tracked = [e for e in of(outputs, "event")
               if e["type"] == "page_view" and "utm_campaign=flash_sale" in e["url"]]  # fmt: skip
    assert len({e["session_id"] for e in tracked}) == sum(s["tracked"] for s in flash)


def test_bot_flood_is_log_lines_of_a_known_bot_in_its_hours(run):
    _, outputs, truth = run
    start, end = window(INCIDENTS[2])
    flood = [line for line in of(outputs, "log") if f'"{FLOOD_USER_AGENT}"' in line]
    assert len(flood) == truth["bot_flood"]["affected"]
    assert all(start <= log_time(line) < end for line in flood)
    assert bot_reason(FLOOD_USER_AGENT) is not None
    assert not [e for e in of(outputs, "event") if e["user_agent"] == FLOOD_USER_AGENT]


def test_page_speed_regression_multiplies_load_times_in_its_hours(run):
    _, outputs, truth = run
    start, end = window(INCIDENTS[3])
    inside, outside = [], []
    for e in of(outputs, "event"):
        if e["type"] == "page_view" and "performance" in e:
            perf = e["performance"]
            at = ts(e["received_at"])
            (inside if start <= at < end else outside).append(perf["load_ms"] - perf["ttfb_ms"])
    assert len(inside) >= truth["page_speed_regression"]["affected"] * 0.95
    assert 2.0 < median(inside) / median(outside) < 3.0


def test_incidents_are_reproducible_and_leave_the_traffic_before_them_as_it_was(run):
    _, outputs, _ = run
    assert digest(Simulator(CFG).run()) == digest(outputs)
    plain = list(Simulator(SimulationConfig(days=5, visits_per_day=300, seed=3)).run())
    first_day = datetime(2026, 11, 2, tzinfo=TZ).astimezone(UTC)  # the spike's day
    before = [o for o in outputs if o.at < first_day]
    assert before and digest(before) == digest([o for o in plain if o.at < first_day])
    assert digest(plain) != digest(outputs)


def test_demo_incidents_fill_the_last_week_of_a_three_week_run_only():
    assert demo_incidents(date(2026, 11, 1), DEMO_MIN_DAYS - 1) == ()
    incidents = demo_incidents(date(2026, 11, 1), 28)
    assert [i.kind for i in incidents] == [
        "campaign_spike", "checkout_outage", "bot_flood", "page_speed_regression",
    ]  # fmt: skip
    last_week = datetime(2026, 11, 22)
    for incident in incidents:
        start, end = incident.window_local(TZ)
        assert last_week <= start < end <= last_week + timedelta(days=7)
    days = Counter(i.start.date() for i in incidents)
    assert max(days.values()) == 1  # one a day: each stands out alone


def test_an_incident_is_refused_when_it_makes_no_sense():
    with pytest.raises(ValueError, match="not an incident kind"):
        Incident("meteor", datetime(2026, 11, 2), hours=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="naive"):
        Incident("bot_flood", datetime(2026, 11, 2, tzinfo=UTC), hours=1)
    with pytest.raises(ValueError, match="hours > 0"):
        Incident("bot_flood", datetime(2026, 11, 2), hours=0)


def test_the_writer_keeps_the_incidents_with_the_other_truth(tmp_path):
    cfg = SimulationConfig(days=3, visits_per_day=60, seed=1, incidents=INCIDENTS[:2])
    summary = write_simulation(cfg, tmp_path, progress=False)
    rows = read_incidents(tmp_path)
    assert [r["kind"] for r in rows] == ["campaign_spike", "checkout_outage"]
    assert rows[0]["start_utc"] == "2026-11-02T17:00:00Z"
    assert summary["config"]["incidents"][1] == {
        "kind": "checkout_outage", "start": "2026-11-03T10:00:00", "hours": 10, "factor": 1.0,
    }  # fmt: skip
    assert write_simulation(cfg, tmp_path, progress=False)["reused"]
    plain = SimulationConfig(days=3, visits_per_day=60, seed=1)
    assert not write_simulation(plain, tmp_path, progress=False)["reused"]
    assert read_incidents(tmp_path) == []


def test_the_demo_site_has_a_rule_for_every_incident_and_a_local_mailbox():
    config = load_sites(Path(__file__).parents[2] / "sites.yml")
    for incident in demo_incidents(date(2026, 11, 1), 28):
        rules = [r for r in config.alerts.rules
                 if r.metric in incident.metrics and "demo" in [s.id for s in config.sites_of(r)]
                 and r.enabled]  # fmt: skip
        assert rules, f"no rule of the demo site catches a {incident.kind}"
        for rule in rules:
            assert rule.contact_points == ["shop_team"]
    mailbox = config.alerts.contact_point("shop_team")
    assert (mailbox.type, mailbox.smtp_host, mailbox.smtp_port) == ("email", "127.0.0.1", 2525)
    assert mailbox.password_env is None  # the demo needs no secret
