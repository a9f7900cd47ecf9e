"""dlt loads as Dagster assets, keyed ``<dataset>/<table>`` like the dbt sources that read them."""

import os

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from ingestion.collector_events import collector_events
from ingestion.site_config.source import site_config


class SitelineDltTranslator(DagsterDltTranslator):
    """Asset key = [dataset, table]: the key dagster-dbt gives the matching dbt source."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> dg.AssetSpec:
        spec = super().get_asset_spec(data)
        dataset = data.pipeline.dataset_name if data.pipeline else "raw"
        return spec.replace_attributes(
            key=dg.AssetKey([dataset, data.resource.name]),
            deps=[],
            group_name="ingestion",
        )


def siteline_pipeline(name: str, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"siteline_{name}",
        destination=dlt.destinations.postgres(),
        dataset_name=dataset,
        pipelines_dir=os.environ.get("SITELINE_DLT_DIR"),
        progress="log" if os.environ.get("SITELINE_DLT_PROGRESS") else None,
    )


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
