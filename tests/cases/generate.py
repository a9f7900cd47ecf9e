"""The visit rules' table of cases (tests/cases/visit_rules.yml): reads and checks it, and
writes the dbt unit tests the warehouse runs from it.

Run ``make cases`` (or ``python tests/cases/generate.py``) after editing the table or seed
``channel_rules``; tests/unit/test_visit_rule_cases.py fails while the written file differs
from what this would write. The engine's tests (tests/unit/test_engine_rules.py) read the
table through :func:`load_cases` directly.
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from ingestion.core.sites import SessionRules

ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases" / "visit_rules.yml"
CHANNEL_RULES = ROOT / "dbt_project" / "seeds" / "channel_rules.csv"
GENERATED = ROOT / "dbt_project" / "models" / "intermediate" / "_visit_rules__unit_tests.yml"

# The visit settings a case may set, with sites.yml's defaults (allowed lateness is the
# engine's alone: a case marks a late hit itself).
SESSION_DEFAULTS = SessionRules().model_dump(exclude={"allowed_lateness_hours"})
SOURCE_FIELDS = (
    "referrer_medium", "referrer_host", "campaign_source", "campaign_medium", "campaign_name",
)  # fmt: skip
HIT_FIELDS = {"id", "at", "site", "device", "type", "late", "superseded", *SOURCE_FIELDS}
CHANNEL_FIELDS = {"campaign_medium", "campaign_source", "referrer_medium", "channel"}
NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class CaseError(ValueError):
    """A case the table cannot hold: names the case and what is wrong."""


@dataclass(frozen=True)
class Hit:
    id: str
    at: datetime
    site: str
    device: str
    type: str
    late: bool
    superseded: bool
    source: dict[str, str]  # the traffic source fields given (SOURCE_FIELDS)

    @property
    def held_out(self) -> bool:
        """Late or superseded: the warehouse puts it in no visit."""
        return self.late or self.superseded

    @property
    def order(self) -> tuple:
        """The warehouse's order of a device's events: time, then event id."""
        return self.at, self.id


@dataclass(frozen=True)
class Case:
    name: str
    sites: dict[str, dict]  # site id → timezone and sessions settings (defaults filled in)
    hits: list[Hit]
    visits: list[list[str]]  # hit ids of each visit, in time order

    def visit_of(self) -> dict[str, tuple[str, datetime] | None]:
        """hit id → (session id, start) of its visit; None for a hit in no visit."""
        by_id = {hit.id: hit for hit in self.hits}
        found: dict[str, tuple[str, datetime] | None] = dict.fromkeys(by_id)
        for visit in self.visits:
            first = by_id[visit[0]]
            name = session_id(first.site, first.device, first.id)
            for hit_id in visit:
                found[hit_id] = (name, first.at)
        return found


def session_id(site: str, device: str, first_event_id: str) -> str:
    """md5(site | device | first event id), as int_events_sessionised names a visit."""
    return hashlib.md5(f"{site}|{device}|{first_event_id}".encode()).hexdigest()


def utc(text: str) -> datetime:
    return datetime.fromisoformat(str(text)).replace(tzinfo=UTC)


def load_cases(path: Path = CASES) -> tuple[list[Case], list[dict]]:
    """The table's visit cases and channel cases, checked."""
    table = yaml.safe_load(path.read_text())
    cases = [_case(raw) for raw in table["cases"]]
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise CaseError(f"{path.name}: two cases share a name; names must be unique")
    for name in names:
        if not NAME.match(name):
            raise CaseError(
                f"{path.name}: case {name!r}: a name is lower-case letters, digits and _, "
                "at most 63 characters (dbt makes a PostgreSQL relation of it)"
            )
    channels = table.get("channels", [])
    for number, row in enumerate(channels):
        unknown = set(row) - CHANNEL_FIELDS
        if unknown or "channel" not in row:
            raise CaseError(
                f"{path.name}: channels[{number}]: needs `channel` and may have only "
                f"{', '.join(sorted(CHANNEL_FIELDS))}; got {', '.join(sorted(row))}"
            )
    return cases, channels


def _case(raw: dict) -> Case:
    name = raw.get("name", "?")
    where = f"case {name!r}"
    sites = {}
    for site_id, settings in raw["sites"].items():
        sessions = {k: v for k, v in settings.items() if k != "timezone"}
        unknown = set(sessions) - set(SESSION_DEFAULTS)
        if unknown:
            raise CaseError(f"{where}: site {site_id!r}: unknown setting(s) {sorted(unknown)}")
        checked = SessionRules.model_validate(sessions).model_dump(include=set(SESSION_DEFAULTS))
        sites[site_id] = {"timezone": settings.get("timezone", "UTC"), **checked}
    hits = []
    for given in raw["hits"]:
        unknown = set(given) - HIT_FIELDS
        if unknown:
            raise CaseError(f"{where}: hit {given.get('id')!r}: unknown field(s) {sorted(unknown)}")
        site = given.get("site") or (next(iter(sites)) if len(sites) == 1 else None)
        if site not in sites:
            raise CaseError(f"{where}: hit {given['id']!r}: `site` must be one of {list(sites)}")
        hits.append(
            Hit(
                id=str(given["id"]),
                at=utc(given["at"]),
                site=site,
                device=str(given.get("device", "v")),
                type=given.get("type", "page_view"),
                late=bool(given.get("late")),
                superseded=bool(given.get("superseded")),
                source={f: str(given[f]) for f in SOURCE_FIELDS if given.get(f) is not None},
            )
        )
    by_id = {hit.id: hit for hit in hits}
    if len(by_id) != len(hits):
        raise CaseError(f"{where}: two hits share an id")
    visits = [[str(hit_id) for hit_id in visit] for visit in raw["visits"]]
    listed = [hit_id for visit in visits for hit_id in visit]
    if len(set(listed)) != len(listed) or not set(listed) <= set(by_id):
        raise CaseError(f"{where}: `visits` must list known hits, each at most once")
    missing = sorted(h.id for h in hits if not h.held_out and h.id not in listed)
    if missing or any(by_id[hit_id].held_out for hit_id in listed):
        raise CaseError(
            f"{where}: every hit that is not late or superseded is in one visit, and only "
            f"those; not placed: {missing}"
        )
    for visit in visits:
        members = [by_id[hit_id] for hit_id in visit]
        if len({(h.site, h.device) for h in members}) != 1:
            raise CaseError(f"{where}: visit {visit} spans devices or sites")
        if [h.id for h in sorted(members, key=lambda h: h.order)] != visit:
            raise CaseError(f"{where}: visit {visit}: list its hits in time (then id) order")
    return Case(name=name, sites=sites, hits=hits, visits=visits)


# -- the dbt unit tests -----------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f").rstrip("0").rstrip(".") + "+00"


def _interval(value: float, unit: str) -> str:
    return f"{float(value):g} {unit}"


def _flow(row: dict) -> str:
    """One YAML flow mapping per line, as the hand-written unit tests are."""
    text = yaml.safe_dump(row, default_flow_style=True, sort_keys=False, width=10_000)
    return text.strip()


def _visit_unit_test(case: Case) -> list[str]:
    lines = [
        f"  - name: {case.name}",
        "    model: int_events_sessionised",
        "    overrides:",
        "      macros:",
        "        is_incremental: false",
        "    given:",
        "      - input: ref('int_events_unified')",
        "        rows:",
    ]
    for hit in case.hits:
        row = {
            "event_id": hit.id, "site_id": hit.site, "device_key": hit.device,
            "event_type": hit.type, "occurred_at": _time(hit.at),
            "is_superseded": hit.superseded, "is_late": hit.late, **hit.source,
        }  # fmt: skip
        lines.append(f"          - {_flow(row)}")
    lines += ["      - input: ref('stg_config__sites')", "        rows:"]
    for site_id, settings in case.sites.items():
        row = {
            "site_id": site_id,
            "site_timezone": settings["timezone"],
            "inactivity_timeout": _interval(settings["inactivity_timeout_minutes"], "minutes"),
            "split_at_midnight": settings["split_at_midnight"],
            "new_session_on_campaign_change": settings["new_session_on_campaign_change"],
            "max_session_length": _interval(settings["max_session_hours"], "hours"),
        }
        lines.append(f"          - {_flow(row)}")
    lines += ["    expect:", "      rows:"]
    visits = case.visit_of()
    for hit in case.hits:
        visit = visits[hit.id]
        row = {
            "event_id": hit.id,
            "session_id": visit[0] if visit else None,
            "session_started_at": _time(visit[1]) if visit else None,
        }
        lines.append(f"        - {_flow(row)}")
    return lines


def _channel_unit_test(channels: list[dict], rules: list[dict]) -> list[str]:
    """int_sessions' channels for the table's channel cases, one visit each, with the seed's
    rules as they are in channel_rules.csv."""
    lines = [
        "  - name: channels_follow_the_seed_channel_rules",
        "    model: int_sessions",
        "    overrides:",
        "      macros:",
        "        is_incremental: false",
        "    given:",
        "      - input: ref('int_events_sessionised')",
        "        rows:",
    ]
    for number, case in enumerate(channels, start=1):
        row = {
            "event_id": f"e{number:02d}", "session_id": f"visit_{number:02d}", "site_id": "s",
            "device_key": f"v{number:02d}", "event_type": "page_view",
            "occurred_at": "2026-01-05 10:00:00+00", "is_bot": False,
            **{f: case[f] for f in ("campaign_medium", "campaign_source", "referrer_medium")
               if case.get(f) is not None},
        }  # fmt: skip
        lines.append(f"          - {_flow(row)}")
    lines += [
        "      - input: ref('stg_config__sites')",
        "        rows:",
        "          - {site_id: s, site_timezone: UTC}",
        "      - input: ref('int_orders')",
        "        rows: []",
        "      - input: ref('channel_rules')",
        "        rows:",
    ]
    for rule in rules:
        row = {
            "match_kind": rule["match_kind"],
            "match_value": rule["match_value"] or None,
            "channel_id": rule["channel_id"],
        }
        lines.append(f"          - {_flow(row)}")
    lines += ["    expect:", "      rows:"]
    for number, case in enumerate(channels, start=1):
        row = {"session_id": f"visit_{number:02d}", "channel_id": case["channel"]}
        lines.append(f"        - {_flow(row)}")
    return lines


def render(cases_path: Path = CASES, rules_path: Path = CHANNEL_RULES) -> str:
    """The dbt unit-test file the table and seed channel_rules make."""
    cases, channels = load_cases(cases_path)
    with open(rules_path, newline="") as fh:
        rules = list(csv.DictReader(fh))
    lines = [
        f"# generated from tests/cases/{cases_path.name} and seeds/{rules_path.name} by",
        "# tests/cases/generate.py (`make cases`); do not edit.",
        "version: 2",
        "",
        "unit_tests:",
    ]
    for case in cases:
        lines += [*_visit_unit_test(case), ""]
    lines += _channel_unit_test(channels, rules)
    return "\n".join(lines) + "\n"


def main() -> int:
    text = render()
    if GENERATED.exists() and GENERATED.read_text() == text:
        print(f"{GENERATED.relative_to(ROOT)} is up to date")
        return 0
    GENERATED.write_text(text)
    print(f"wrote {GENERATED.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
