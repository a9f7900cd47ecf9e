import dagster as dg

from orchestration.defs.quality.checks import great_expectations_checks

defs = dg.Definitions(asset_checks=great_expectations_checks)
