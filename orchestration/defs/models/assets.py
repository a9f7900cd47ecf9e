"""dbt models as Dagster assets; dbt tests become asset checks."""

import shutil
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)

from orchestration.dbt_paths import PIPELINE_BUILD
from orchestration.defs.models.project import dbt_project, ensure_manifest


class SitelineDbtTranslator(DagsterDbtTranslator):
    """Groups by layer: staging, intermediate, web, crm."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest["nodes"].get(unique_id) or manifest["sources"].get(unique_id) or {}
        if node.get("resource_type") == "model":
            fqn = node["fqn"]
            layer = fqn[-2] if len(fqn) >= 3 and fqn[1] == "marts" else fqn[1]
            return spec.replace_attributes(group_name=layer)
        return spec


def ensure_alerts_tables() -> None:
    """The alert evaluator's tables, created when missing (orchestration/alerts/store.py,
    idempotent), before dbt builds the alerts marts over them. Else a build before the
    first evaluation (every fresh installation's first run: the evaluation needs the marts)
    makes views over empty stand-ins, which show nothing the evaluation then writes until
    dbt builds them again."""
    from ingestion.core.warehouse import connect, warehouse_url
    from orchestration.alerts.store import ensure_schema

    with connect(warehouse_url(), autocommit=True) as conn:
        ensure_schema(conn)


translator = SitelineDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=translator,
    name="dbt_models",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """``dbt build`` of the selected models (without dbt's unit tests: PIPELINE_BUILD): run,
    then their tests as asset checks."""
    ensure_alerts_tables()
    invocation = dbt.cli([*PIPELINE_BUILD], context=context)
    try:
        yield from invocation.stream()
    finally:
        # Each run gets its own target folder (~6 MB of compiled SQL and artifacts); what
        # matters is in Dagster's event log, so the folder does not outlive the run.
        shutil.rmtree(invocation.target_path, ignore_errors=True)
