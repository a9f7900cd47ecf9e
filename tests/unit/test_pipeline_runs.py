"""What a pipeline run returns (orchestration/pipeline.py), from real in-process Dagster runs."""

import dagster as dg
import pytest

from ingestion.core.errors import SitelineError
from orchestration.pipeline import JobRun, PipelineResult, job_run, select_assets


@dg.asset
def visits() -> int:
    return 3


@dg.asset(deps=[visits])
def broken() -> None:
    raise ValueError("no sessions table\nsecond line")


@dg.asset_check(asset=visits)
def visits_positive() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=True)


@dg.asset_check(asset=visits)
def visits_above_ten() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False)


def test_a_selection_is_checked_against_the_known_assets():
    known = ["web/fct_sessions", "config/sites", "web/fct_page_views"]
    assert select_assets(known, None) == known
    assert select_assets(known, ["config/sites"]) == ["config/sites"]
    with pytest.raises(SitelineError) as refused:
        select_assets(known, ["web/nope", "config/sites"])
    assert str(refused.value) == (
        "unknown asset web/nope; known assets: config/sites, web/fct_page_views, web/fct_sessions"
    )


def test_a_run_reports_its_assets_and_checks():
    result = dg.materialize([visits, visits_positive, visits_above_ten], raise_on_error=False)
    run = job_run(result, None, 2.5)
    assert run.run_id == result.run_id and run.job == "__ephemeral_asset_job__"
    assert run.success is True and run.seconds == 2.5 and run.partition is None
    assert run.materialised == frozenset({"visits"})
    assert run.checks == 2 and run.failed_checks == ("visits:visits_above_ten",)
    assert run.failed_steps == ()
    assert run.ok is False  # a failed check fails the run's report
    assert PipelineResult(log_path=None, runs=[run]).ok is False


def test_a_failed_step_is_named_with_the_first_line_of_its_message():
    result = dg.materialize([visits, broken, visits_positive], raise_on_error=False)
    run = job_run(result, "shop.access", 1.0)
    assert run.success is False and run.ok is False
    assert run.materialised == frozenset({"visits"})
    assert run.checks == 1 and run.failed_checks == ()
    # Dagster's message's first line; the error itself is in the run's log
    assert run.failed_steps == (("broken", 'Execution of step "broken" failed.'),)
    assert run.name == "__ephemeral_asset_job__ [shop.access]"


def test_a_pipeline_is_ok_when_every_run_is():
    ok = JobRun("r1", "__ASSET_JOB", None, True, 1.0, frozenset({"a"}), 1)
    failed = JobRun("r2", "pull_logfiles", "shop.access", False, 1.0, frozenset(), 0)
    assert PipelineResult(log_path=None, runs=[ok]).ok is True
    assert PipelineResult(log_path=None, runs=[ok, failed]).ok is False
    assert PipelineResult(log_path=None).ok is True  # nothing to run
