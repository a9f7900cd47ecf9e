"""Great Expectations suites run as Dagster asset checks; a blocking failure stops the models."""

import dagster as dg
import pytest

from ingestion.core.warehouse import connect

pytestmark = pytest.mark.integration

BAD_ID = "00000000-0000-4000-8000-00000000bad1"


# The load, its check, and the first models built from it (a dbt subset keeps this quick).
SELECTION = ["raw_collector/events", "raw_collector/bad_events", "staging/stg_collector__events",
             "staging/stg_collector__loads"]  # fmt: skip


def run_all():
    from orchestration.cli import run_pipeline
    from orchestration.definitions import defs

    assert run_pipeline(["config/sites"]) is True  # creates tables, loads sites.yml
    keys = [dg.AssetKey.from_user_string(k) for k in SELECTION]
    with dg.DagsterInstance.get() as instance:
        return defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=keys, raise_on_error=False
        )


def evaluation(result, key: str):
    wanted = dg.AssetCheckKey(dg.AssetKey.from_user_string(key), "great_expectations")
    found = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == wanted]
    assert found, f"no Great Expectations check ran on {key}"
    return found[0]


def test_every_suite_is_a_check_on_its_table(warehouse):
    from orchestration.definitions import defs

    checks = {c.to_user_string() for c in defs.resolve_asset_graph().asset_check_keys}
    for key in ("raw_collector/events", "raw_logfiles/hits", "web/fct_sessions",
                "web/fct_transactions", "crm/customers"):  # fmt: skip
        assert f"{key}:great_expectations" in checks


def test_bad_raw_data_stops_the_models_and_says_why(warehouse):
    first = run_all()
    assert first.success
    assert evaluation(first, "raw_collector/events").passed
    with connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "insert into raw_collector.events (event_id, type, site_id, received_at, "
            "occurred_at, visitor_id, segment, segment_line, _dlt_load_id, _dlt_id) values "
            "(%s, 'teleport', 'demo', now(), now(), 'v', 'manual', 1, '0', 'manual-bad-row')",
            (BAD_ID,),
        )
    try:
        second = run_all()
        check = evaluation(second, "raw_collector/events")
        assert not check.passed
        failures = check.metadata["failures"].value
        assert "expect_column_values_to_be_in_set(column='type'" in failures
        assert "1 of" in failures and "teleport" in failures
        # Blocking: the dbt models were not built on the bad row.
        built = {e.asset_key.to_user_string() for e in second.get_asset_materialization_events()}
        assert "raw_collector/events" in built
        assert "staging/stg_collector__events" not in built
    finally:
        with connect(warehouse, autocommit=True) as conn:
            conn.execute("delete from raw_collector.events where event_id = %s", (BAD_ID,))
    third = run_all()
    assert third.success and evaluation(third, "raw_collector/events").passed
    built = {e.asset_key.to_user_string() for e in third.get_asset_materialization_events()}
    assert "staging/stg_collector__events" in built
