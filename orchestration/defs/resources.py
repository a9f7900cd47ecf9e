"""What several domains share for dlt: one resource instance (so their Definitions merge),
the translator that keys dlt tables like dbt sources, and the pipeline factories (from
:mod:`ingestion.pipelines`). No Definitions are built here, so importing it has no side
effects."""

import dagster as dg
from dagster_dlt import DagsterDltResource, DagsterDltTranslator
from dagster_dlt.translator import DltResourceTranslatorData

from ingestion.pipelines import logfile_pipeline, siteline_pipeline

__all__ = ["SitelineDltTranslator", "dlt_resource", "logfile_pipeline", "siteline_pipeline"]

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
