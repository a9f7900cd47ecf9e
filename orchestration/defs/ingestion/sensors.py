"""Load collector events as soon as the collector closes new landing segments."""

import os

import dagster as dg

from ingestion.collector_events import Landing
from orchestration.defs.ingestion.assets import collector_events_assets, site_config_assets
from orchestration.defs.models.assets import dbt_models

# The events, sites.yml and every dbt model: on a fresh installation the sensor may run
# before anything else has, and a model (or a relationship test) must never meet a missing
# parent. The alerts marts are among them: they are views over the evaluator's tables, and
# the first build after those tables appear replaces the empty stand-ins of their staging
# views, which drops the views built on them (dbt drops a replaced view with cascade) until
# they are built again, in the same run. Selected as dbt's assets, not by the key prefix
# `alerts`, which the evaluator's own assets may share. The logfile loads keep their own
# schedules.
collector_events_job = dg.define_asset_job(
    "load_collector_events",
    selection=dg.AssetSelection.assets(collector_events_assets, site_config_assets, dbt_models),
    description="Load new landing segments, then rebuild what depends on them.",
    # One process, steps in order: a load is small, and starting a process per step (every
    # Great Expectations check) would cost more than the work on a 2-core machine.
    executor_def=dg.in_process_executor,
)


@dg.sensor(
    job=collector_events_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def new_landing_segments(context: dg.SensorEvaluationContext):
    """Requests a load when the landing manifests list segments not seen before."""
    landing = Landing(
        os.environ["SOURCES__COLLECTOR_EVENTS__LANDING_DIR"],
        os.environ.get("SOURCES__COLLECTOR_EVENTS__LANDING_TOKEN"),
    )
    try:
        latest = {
            stream: [s.name for s in landing.manifest(stream)]
            for stream in ("events", "bad_events")
        }
    except Exception as exc:  # an unreachable remote collector: say so, try again later
        return dg.SkipReason(f"cannot read the landing manifest: {exc}")
    cursor = "|".join(
        f"{stream}:{len(names)}:{names[-1] if names else ''}" for stream, names in latest.items()
    )
    if cursor == context.cursor:
        return dg.SkipReason("no new landing segments")
    context.update_cursor(cursor)
    new = sum(len(names) for names in latest.values())
    return dg.RunRequest(run_key=cursor, tags={"siteline/segments": str(new)})
