"""dlt loads as Dagster assets, keyed ``<dataset>/<table>`` like the dbt sources that read them."""

import dagster as dg
from dagster_dlt import DagsterDltResource, dlt_assets

from ingestion.collector_events import collector_events
from ingestion.site_config.source import site_config
from orchestration.defs.resources import SitelineDltTranslator, siteline_pipeline


@dlt_assets(
    dlt_source=collector_events(),
    dlt_pipeline=siteline_pipeline("collector", "raw_collector"),
    name="collector_events",
    dagster_dlt_translator=SitelineDltTranslator(),
)
def collector_events_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource):
    """Closed landing segments → raw_collector.events (merged on event_id)."""
    # A fresh source per run: a dlt source instance keeps schema state from its last run,
    # which breaks the next run in the same process (webserver, daemon, tests).
    yield from dlt.run(
        context=context,
        dlt_source=collector_events(),
        dlt_pipeline=siteline_pipeline("collector", "raw_collector"),
    )


@dlt_assets(
    dlt_source=site_config(),
    dlt_pipeline=siteline_pipeline("config", "config"),
    name="site_config",
    dagster_dlt_translator=SitelineDltTranslator(),
)
def site_config_assets(context: dg.AssetExecutionContext, dlt: DagsterDltResource):
    """sites.yml → config.* (validated; replaced on every load)."""
    yield from dlt.run(
        context=context,
        dlt_source=site_config(),
        dlt_pipeline=siteline_pipeline("config", "config"),
    )
