import json

import pytest

from expectations import SUITES_DIR, load_suites


def test_suites_cover_raw_and_mart_tables_and_load():
    suites = {s.name: s for s in load_suites()}
    assert {"raw_collector.events", "raw_logfiles.hits", "web.fct_sessions",
            "web.fct_transactions", "crm.customers"} <= set(suites)  # fmt: skip
    events = suites["raw_collector.events"]
    assert events.asset_key == ["raw_collector", "events"] and events.blocking is True
    assert all(e["type"].startswith("expect_") for s in suites.values()
               for e in s.definition["expectations"])  # fmt: skip
    assert len(list(SUITES_DIR.glob("*.json"))) == len(suites)


def test_a_suite_without_schema_qualified_table_is_refused(tmp_path):
    (tmp_path / "x.json").write_text(
        json.dumps({"name": "x", "meta": {"table": "events"}, "expectations": []})
    )
    with pytest.raises(ValueError, match=r"x\.json: meta\.table must be '<schema>\.<table>'"):
        load_suites(tmp_path)
