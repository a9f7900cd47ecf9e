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
    "SITELINE_UP",
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
    with pytest.raises(SitelineError) as caught:
        settings()
    message = str(caught.value)
    assert "SITELINE_WAREHOUSE_CHECKSUMS='maybe': Input should be 'on' or 'off'" in message
    assert "SITELINE_COLLECTOR_PORT='70000': Input should be less than or equal to 65535" in message
