import dagster as dg
from dagster_dlt import DagsterDltResource

from orchestration.defs.ingestion.assets import collector_events_assets, site_config_assets

defs = dg.Definitions(
    assets=[collector_events_assets, site_config_assets],
    resources={"dlt": DagsterDltResource()},
)
