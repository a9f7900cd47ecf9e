"""The evaluation cycle on a real warehouse built by `siteline demo`, with rules whose series
the test controls (custom SQL, run as bi_reader): a rule fires and the webhook hears it once,
a re-run sends nothing, the next period resolves it; a broken rule goes to Error alone; the
command line's check, list and history; Dagster's evaluation asset fails only the broken
rule's check."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from ingestion.core.sites import load_sites
from ingestion.core.warehouse import (
    bi_reader_password,
    connect,
    ensure_bi_reader,
    ensure_database,
    with_database,
)
from orchestration.alerts.evaluate import run_cycle
from tests.integration.servers import HttpReceiver
from tests.integration.test_models_truth import INHERITED, run_siteline, siteline

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")
TODAY = datetime.now(BERLIN).date()
LOW_DAY = TODAY - timedelta(days=3)  # the day the controlled series drops to 10
DBS = ("siteline_alert_eval", "siteline_alert_eval_dagster")


def at(day: date, hour: int = 1) -> datetime:
    """``hour`` o'clock in Berlin on ``day``, in UTC: the day before is complete by then."""
    return datetime.combine(day, time(hour), BERLIN).astimezone(UTC)


def sites_file(path: Path, hook_url: str, enabled: bool) -> Path:
    """The project's sites.yml with the test's alert rules instead of the demo's."""
    config = yaml.safe_load((ROOT / "sites.yml").read_text())
    low = LOW_DAY.isoformat()
    series = (
        f"select d as period, case when d::date = date '{low}' then 10 else 100 end as value "
        "from generate_series({start}::timestamp, {end}::timestamp - interval '1 day', "
        "interval '1 day') as d"
    )
    config["alerts"] = {
        "contact_points": [{"name": "hook", "type": "webhook", "url": f"{hook_url}/alerts"}],
        "rules": [
            {"id": "low_day", "name": "Low day", "metric": "custom", "sql": series,
             "sites": ["demo"], "grain": "day", "condition": {"type": "below", "value": 50},
             "severity": "critical", "contact_points": ["hook"], "enabled": enabled},
            {"id": "broken", "metric": "custom", "sql": "select 1 / 0 as period, 2 as value",
             "sites": ["demo"], "condition": {"type": "above", "value": 1},
             "contact_points": ["hook"], "enabled": enabled},
        ],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(warehouse, tmp_path_factory):
    home = tmp_path_factory.mktemp("alert-eval-home")
    url, dagster_url = (with_database(warehouse, db) for db in DBS)
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        for db in DBS:
            conn.execute(f'drop database if exists "{db}" with (force)')
    for db in (url, dagster_url):
        ensure_database(db)
    receiver = HttpReceiver([200])
    off = sites_file(home / "sites.yml", receiver.url, enabled=False)
    on = sites_file(home / "sites-enabled.yml", receiver.url, enabled=True)
    env = {k: v for k, v in os.environ.items() if k not in INHERITED}
    env.update(SITELINE_HOME=str(home), WAREHOUSE_URL=url, DAGSTER_PG_URL=dagster_url,
               SITELINE_SITES_FILE=str(off))  # fmt: skip
    siteline(env, "demo", "--no-serve", "--days", "2", "--visits-per-day", "60", "--seed", "5")
    ensure_bi_reader(url)  # this process's bi_reader password (the demo's home has its own)
    env["SITELINE_BI_READER_PASSWORD"] = bi_reader_password()  # and the commands' too
    from ingestion.collector_events import Landing

    landing = Landing(str(home / "landing"))
    with connect(url, autocommit=True) as conn:
        yield {"conn": conn, "url": url, "env": env, "receiver": receiver, "off": off,
               "on": on, "config": load_sites(off), "landing": landing}  # fmt: skip
    receiver.close()
    with connect(with_database(warehouse, "postgres"), autocommit=True) as conn:
        for db in DBS:
            conn.execute(f'drop database if exists "{db}" with (force)')


def cycle(world, when: datetime, rules=("low_day", "broken")):
    return run_cycle(world["conn"], world["config"], now=when, rule_ids=list(rules),
                     landing=world["landing"])  # fmt: skip


def posted(world) -> list[dict]:
    return [json.loads(r["body"]) for r in world["receiver"].requests]


def test_a_rule_fires_once_is_not_sent_again_and_resolves(world):
    conn = world["conn"]
    fired = cycle(world, at(LOW_DAY + timedelta(days=1)))
    # the broken rule fails alone: the other one is evaluated and notifies
    assert set(fired.errors) == {"broken"}
    assert "division by zero" in fired.errors["broken"]
    low = next(o for o in fired.outcomes if o.rule_id == "low_day")
    assert (low.periods, low.states) == (1, {"low_day/demo": "firing"})
    [message] = [m for m in posted(world) if any(n["rule_id"] == "low_day" for n in m["alerts"])]
    [news] = [n for n in message["alerts"] if n["rule_id"] == "low_day"]
    assert (news["kind"], news["value"], news["state"], news["severity"]) == (
        "firing", 10.0, "firing", "critical",
    )  # fmt: skip
    assert news["period_start"] == f"{LOW_DAY.isoformat()}T00:00:00"
    assert news["reason"] == "Low day 10 is below 50"
    # the chart: the recent days up to the breaching one, each with the threshold
    assert len(news["series"]) == 36
    assert news["series"][-1] == [f"{LOW_DAY.isoformat()}T00:00:00", 10.0, 50.0, None]
    assert [p[1] for p in news["series"][-3:]] == [100.0, 100.0, 10.0]

    before = len(world["receiver"].requests)
    again = cycle(world, at(LOW_DAY + timedelta(days=1)))
    assert again.news == []
    assert len(world["receiver"].requests) == before  # nothing sent twice

    resolved = cycle(world, at(LOW_DAY + timedelta(days=2)))
    assert [(n.kind, n.value) for n in resolved.news] == [("resolved", 100.0)]
    kinds = [n["kind"] for m in posted(world) for n in m["alerts"] if n["rule_id"] == "low_day"]
    assert kinds == ["firing", "resolved"]
    rows = conn.execute(
        "select from_state, to_state, period_start::date from alerts.transitions"
        " where rule_id = 'low_day' order by transition_id"
    ).fetchall()
    assert rows == [
        ("normal", "firing", LOW_DAY),
        ("firing", "resolved", LOW_DAY + timedelta(days=1)),
    ]
    # the broken rule: in Error once (one notification), not again on the re-runs
    errors = [n for m in posted(world) for n in m["alerts"] if n["rule_id"] == "broken"]
    assert len(errors) == 1 and errors[0]["state"] == "error"
    assert "the rule could not be evaluated" in errors[0]["reason"]


def test_check_is_a_dry_run_that_prints_value_threshold_and_verdict(world):
    conn = world["conn"]
    count = conn.execute("select count(*) from alerts.evaluations").fetchone()[0]
    when = at(LOW_DAY + timedelta(days=1), 9).isoformat()
    result = run_siteline(world["env"], "alerts", "check", "low_day", "--at", when)
    assert result.returncode == 0, result.stderr
    assert (
        f"low_day demo {LOW_DAY.isoformat()}: value 10, baseline 50 [50, -] -> breach: "
        "Low day 10 is below 50" in result.stdout
    )
    assert conn.execute("select count(*) from alerts.evaluations").fetchone()[0] == count


def test_list_and_history_tell_states_and_errors(world):
    listed = run_siteline(world["env"], "alerts", "list")
    assert listed.returncode == 0, listed.stderr
    assert "low_day (disabled): Custom SQL per day, below, critical, demo -> hook" in listed.stdout
    assert "  low_day/demo: resolved since " in listed.stdout
    assert "  broken/demo: error since " in listed.stdout and "division by zero" in listed.stdout
    history = run_siteline(world["env"], "alerts", "history", "low_day")
    assert history.returncode == 0, history.stderr
    lines = history.stdout.splitlines()
    assert " low_day/demo: firing -> resolved period " in lines[0]
    assert lines[0].endswith("[hook:sent]")
    assert " low_day/demo: normal -> firing period " in lines[1]


def test_dagster_s_evaluation_fails_only_the_broken_rule_s_check(world):
    env = {**world["env"], "SITELINE_SITES_FILE": str(world["on"])}
    result = run_siteline(env, "run", "alerts/evaluation")
    assert result.returncode == 1, result.stdout
    assert "1/2 checks passed" in result.stdout
    assert "check failed: alerts/evaluation:rule_broken" in result.stderr


def test_silences_are_set_listed_and_ended_from_the_command_line(world):
    env = world["env"]
    bad = run_siteline(env, "alerts", "silence", "low_day", "--for", "soon", "--reason", "x")
    assert bad.returncode == 1
    assert "--for: 'soon' is not a duration (write e.g. 90s, 30m, 4h, 1d, 1w)" in bad.stderr
    made = run_siteline(env, "alerts", "silence", "low_day", "--for", "2h", "--reason",
                        "shop maintenance", "--site", "demo")  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("silence ") and " low_day on demo until " in made.stdout
    silence_id = made.stdout.split()[1].rstrip(":")
    listed = run_siteline(env, "alerts", "silences")
    assert f"silence {silence_id}: low_day on demo from " in listed.stdout
    assert listed.stdout.rstrip().endswith(": shop maintenance")
    ended = run_siteline(env, "alerts", "silence", "--end", silence_id)
    assert ended.stdout.strip() == f"silence {silence_id} ended"
    assert run_siteline(env, "alerts", "silences").stdout.strip() == "no silence in force"
    again = run_siteline(env, "alerts", "silence", "--end", silence_id)
    assert again.returncode == 1
    assert f"--end: no silence {silence_id} in force" in again.stderr
