import dagster as dg

from orchestration.defs.logfiles.assets import build_schedules, logfile_assets, partitions
from orchestration.defs.resources import dlt_resource

if logfile_assets is None:  # no logfile source configured
    defs = dg.Definitions()
else:
    pull_logfiles = dg.define_asset_job(
        "pull_logfiles",
        selection=dg.AssetSelection.assets(logfile_assets),
        partitions_def=partitions,
        description="Pull one logfile source (the partition) into raw_logfiles.*.",
    )
    defs = dg.Definitions(
        assets=[logfile_assets],
        jobs=[pull_logfiles],
        schedules=build_schedules(pull_logfiles),
        resources={"dlt": dlt_resource},
    )
