"""What several domains share for dlt: one resource instance (so their Definitions merge),
the translator that keys dlt tables like dbt sources, and the pipeline factory. No
Definitions are built here, so importing it has no side effects."""

import os

import dagster as dg
import dlt
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

dlt_resource = DagsterDltResource()


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


def logfile_pipeline(key: str) -> dlt.Pipeline:
    """One dlt pipeline (so one pull state) per ``<site>.<source>``; all load raw_logfiles."""
    return siteline_pipeline(f"logs_{key.replace('.', '_')}", "raw_logfiles")
