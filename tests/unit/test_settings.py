"""The settings object: every variable read through it, its defaults, its errors, its docs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.settings import Settings, env_name, markdown_table, settings

ROOT = Path(__file__).resolve().parents[2]
# Set by Siteline for the programs it runs, not read as settings (docs/settings.md says so).
SET_FOR_CHILDREN = {
    "SITELINE_PG_",
    "SITELINE_PG_HOST",
    "SITELINE_PG_PORT",
    "SITELINE_PG_USER",
    "SITELINE_PG_DBNAME",
    "SITELINE_DAGSTER_PG_URL",
    "SITELINE_DEMO_API_KEY",  # sites.yml's example of a site's api_key_env
    "SITELINE_NAME",  # the settings module's own docstring: field name -> SITELINE_NAME
}


def test_every_variable_the_code_names_is_a_setting() -> None:
    named = set()
    for package in ("ingestion", "realtime", "orchestration"):
        for path in (ROOT / package).rglob("*.py"):
            named |= set(re.findall(r"\bSITELINE_[A-Z0-9_]+", path.read_text()))
    known = {env_name(field) for field in Settings.model_fields}
    assert named - known - SET_FOR_CHILDREN == set()


def test_the_documented_table_is_the_settings_table() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    table = doc.split("<!-- settings table: start -->\n")[1].split("<!-- settings table: end -->")[
        0
    ]
    assert table == markdown_table(), (
        "run: python -m ingestion.core.settings, paste into docs/settings.md"
    )


def test_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SITELINE_RATE_LIMIT", "SITELINE_DURABLE", "WAREHOUSE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert (settings().rate_limit, settings().durable, settings().warehouse_url) == (50, True, None)
    monkeypatch.setenv("SITELINE_RATE_LIMIT", "7.5")
    monkeypatch.setenv("SITELINE_DURABLE", "0")
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://u:secret@db/x")
    monkeypatch.setenv("SITELINE_WAREHOUSE_URL", "postgresql://not-read")
    current = settings()
    assert (current.rate_limit, current.durable) == (7.5, False)
    assert current.warehouse_url == "postgresql://u:secret@db/x"
    assert "secret" not in repr(current)
    monkeypatch.setenv("SITELINE_RATE_LIMIT", "")  # empty counts as unset
    assert settings().rate_limit == 50


def test_a_bad_value_names_the_variable_the_value_and_the_rule(monkeypatch) -> None:
    monkeypatch.setenv("SITELINE_WAREHOUSE_CHECKSUMS", "maybe")
    monkeypatch.setenv("SITELINE_COLLECTOR_PORT", "70000")
    monkeypatch.setenv("SITELINE_DURABLE", "sometimes")
    monkeypatch.setenv("SITELINE_PULL_RETRIES", "four")
    current = settings()
    expected = {
        "warehouse_checksums": "SITELINE_WAREHOUSE_CHECKSUMS='maybe': Input should be 'on' or 'off'",
        "collector_port": "SITELINE_COLLECTOR_PORT='70000': Input should be less than or equal "
        "to 65535",
        "durable": "SITELINE_DURABLE='sometimes': Input should be a valid boolean, unable to "
        "interpret input; use 1 or 0 (or true/false, yes/no, on/off)",
        "pull_retries": "SITELINE_PULL_RETRIES='four': Input should be a valid integer, unable "
        "to parse string as an integer; use a whole number",
    }
    for field, message in expected.items():
        with pytest.raises(SitelineError) as caught:
            getattr(current, field)
        assert str(caught.value) == message


def test_a_bad_variable_stops_only_what_reads_it(monkeypatch) -> None:
    """A collector starts although the UI proxy's login limit is wrong, and vice versa."""
    monkeypatch.setenv("SITELINE_UI_LOGIN_LIMIT", "0")
    monkeypatch.setenv("SITELINE_RATE_LIMIT", "9")
    monkeypatch.setenv("WAREHOUSE_URL", "postgresql://u@db/x")
    current = settings()
    assert (current.rate_limit, current.warehouse_url) == (9, "postgresql://u@db/x")
    with pytest.raises(SitelineError, match="SITELINE_UI_LOGIN_LIMIT='0'"):
        assert current.ui_login_limit is None  # never reached: reading it raises


@pytest.mark.parametrize(
    ("value", "expected"),
    [("log", True), ("1", True), ("yes", True), ("0", False), ("off", False), ("False", False)],
)
def test_dlt_progress_is_on_for_any_value_but_a_no(monkeypatch, value, expected) -> None:
    monkeypatch.setenv("SITELINE_DLT_PROGRESS", value)
    assert settings().dlt_progress is expected


def test_the_table_shows_switches_as_1_or_0_and_leaves_out_internal_variables() -> None:
    table = markdown_table()
    assert (
        "| `SITELINE_DURABLE` | `1` | Answer only once the events are on disk (fsync). |" in table
    )
    assert "| `SITELINE_DEMO_PAGE` | `0` |" in table
    assert "SITELINE_UP" not in table


def test_every_default_a_doc_states_is_the_settings_default() -> None:
    """Pages that list variables with their topic's detail (realtime.md, superset.md, ...)
    state the same defaults as the settings object."""
    defaults = {env_name(name): field.default for name, field in Settings.model_fields.items()}
    row = re.compile(r"^\| `(SITELINE_[A-Z0-9_]+)` \| `([^`]*)` \|", re.M)
    checked = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name, stated in row.findall(page.read_text()):
            if defaults.get(name) is None:
                continue
            expected = defaults[name]
            expected = str(int(expected)) if isinstance(expected, bool) else str(expected)
            assert stated == expected, (
                f"{page.name}: {name} says {stated}, the default is {expected}"
            )
            checked += 1
    assert checked >= 30


def test_the_settings_copy_and_pickle(monkeypatch) -> None:
    import copy
    import pickle

    monkeypatch.setenv("SITELINE_RATE_LIMIT", "3")
    current = settings()
    assert copy.copy(current).rate_limit == 3
    assert pickle.loads(pickle.dumps(current)).rate_limit == 3
