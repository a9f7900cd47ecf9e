import dagster as dg

from orchestration.defs.alerts.assets import (
    alert_evaluation,
    alerts_after_marts,
    evaluate_alerts_job,
)

defs = dg.Definitions(
    assets=[alert_evaluation], jobs=[evaluate_alerts_job], sensors=[alerts_after_marts]
)
