"""Logfile pulls as one partitioned dlt asset: a partition per configured source
(``<site>.<source>`` from sites.yml), a schedule per source from its cron."""

import dagster as dg
from dagster_dlt import DagsterDltResource, dlt_assets

from ingestion.core.sites import load_sites
from ingestion.logfiles import finish_interrupted_load, logfiles
from orchestration.defs.resources import SitelineDltTranslator, logfile_pipeline


def configured_sources() -> dict[str, str]:
    """``<site>.<source>`` → cron schedule, for every logfile source in sites.yml."""
    return {
        f"{site.id}.{source.name}": source.schedule
        for site in load_sites().sites
        for source in site.logfiles
    }


SOURCES = configured_sources()
partitions = dg.StaticPartitionsDefinition(sorted(SOURCES))


def build_assets():
    if not SOURCES:
        return None
    first = sorted(SOURCES)[0]

    @dlt_assets(
        dlt_source=logfiles(*first.split(".", 1)),
        dlt_pipeline=logfile_pipeline(first),
        name="logfiles",
        partitions_def=partitions,
        dagster_dlt_translator=SitelineDltTranslator(),
    )
    def logfile_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource):
        """Pull the new part of one source's logfiles into raw_logfiles.*."""
        site_id, source_name = context.partition_key.split(".", 1)
        pipeline = logfile_pipeline(context.partition_key)
        if (removed := finish_interrupted_load(pipeline)) is not None:
            context.log.warning(f"finished the load an earlier run left unfinished: {removed}")
        yield from dlt.run(
            context=context, dlt_source=logfiles(site_id, source_name), dlt_pipeline=pipeline
        )

    return logfile_assets


logfile_assets = build_assets()


def build_schedules(job) -> list[dg.ScheduleDefinition]:
    schedules = []
    for key, cron in sorted(SOURCES.items()):

        def request(context, key=key):
            return dg.RunRequest(partition_key=key, tags={"siteline/logfile_source": key})

        schedules.append(
            dg.ScheduleDefinition(
                name=f"pull_logs_{key.replace('.', '_')}",
                cron_schedule=cron,
                job=job,
                execution_fn=request,
                default_status=dg.DefaultScheduleStatus.RUNNING,
                description=f"Pull the new lines of logfile source {key} ({cron}).",
            )
        )
    return schedules
