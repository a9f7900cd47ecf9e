"""The dlt pipelines Siteline loads with: one factory, no Dagster import (so that
``siteline import-logs`` starts without loading Dagster, the slowest part of a start)."""

import os

# No usage telemetry from dlt, whoever runs a pipeline (dlt ignores DO_NOT_TRACK); set before
# dlt reads its configuration. An operator's own RUNTIME__DLTHUB_TELEMETRY wins.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt

from ingestion.core.settings import settings


def siteline_pipeline(name: str, dataset: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"siteline_{name}",
        destination=dlt.destinations.postgres(),
        dataset_name=dataset,
        pipelines_dir=settings().dlt_dir,
        progress="log" if settings().dlt_progress else None,
    )


def logfile_pipeline(key: str) -> dlt.Pipeline:
    """One dlt pipeline (so one pull state) per ``<site>.<source>``; all load raw_logfiles."""
    return siteline_pipeline(f"logs_{key.replace('.', '_')}", "raw_logfiles")
