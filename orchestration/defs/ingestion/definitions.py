import dagster as dg

from orchestration.defs.ingestion.assets import collector_events_assets, site_config_assets
from orchestration.defs.ingestion.sensors import collector_events_job, new_landing_segments
from orchestration.defs.resources import dlt_resource

defs = dg.Definitions(
    assets=[collector_events_assets, site_config_assets],
    jobs=[collector_events_job],
    sensors=[new_landing_segments],
    resources={"dlt": dlt_resource},
)
