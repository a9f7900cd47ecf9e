"""Alert evaluation as a Dagster asset: one materialisation per evaluation cycle, one asset
check per rule (a broken rule fails its own check, the others pass and notify), and a sensor
that runs it after the marts are built and when a period closes."""

import dagster as dg
from pydantic import Field

from ingestion.core.metrics import METRICS
from ingestion.core.sites import load_sites

# The marts the catalogue's metrics read: upstream of the evaluation in the asset graph.
MARTS = [
    ["web", "fct_sessions"], ["web", "fct_page_views"], ["web", "fct_transactions"],
    ["web", "fct_goal_conversions"], ["web", "fct_funnel_steps"], ["crm", "customers"],
]  # fmt: skip
EVALUATION = dg.AssetKey(["alerts", "evaluation"])


def _rules() -> list[str]:
    return [r.id for r in load_sites().alerts.rules if not METRICS[r.metric].realtime]


RULES = _rules()


class EvaluationConfig(dg.Config):
    """A run's options (the launchpad's config; none needed for a normal run)."""

    at: str | None = Field(
        None, description="Evaluate as if it were this time (ISO 8601; UTC without an offset)."
    )
    backfill: str | None = Field(
        None, description="New instances start this far back and notify what they find (7d)."
    )


@dg.asset(
    key=EVALUATION,
    group_name="alerts",
    deps=[dg.AssetKey(key) for key in MARTS],
    check_specs=[
        dg.AssetCheckSpec(f"rule_{rule_id}", asset=EVALUATION, description=f"Alert rule {rule_id}")
        for rule_id in RULES
    ],
    description="Evaluate every alert rule of sites.yml on the periods whose data is complete; "
    "store states and transitions in alerts.*, queue and send notifications.",
)
def alert_evaluation(context: dg.AssetExecutionContext, config: EvaluationConfig):
    from datetime import UTC, datetime, timedelta

    from ingestion.core.alert_config import parse_duration
    from ingestion.core.warehouse import connect, warehouse_url
    from orchestration.alerts.evaluate import run_cycle

    at = datetime.fromisoformat(config.at) if config.at else None
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    backfill = timedelta(seconds=parse_duration(config.backfill)) if config.backfill else None
    with connect(warehouse_url(), autocommit=True) as conn:
        result = run_cycle(conn, load_sites(), now=at, kind="dagster", backfill=backfill)
    checks = []
    evaluated = {o.rule_id for o in result.outcomes}
    for rule_id in RULES:
        if rule_id not in evaluated:  # disabled (or gone from sites.yml since the code loaded)
            checks.append(dg.AssetCheckResult(check_name=f"rule_{rule_id}", passed=True,
                                              metadata={"evaluated": "no: disabled"}))  # fmt: skip
    for outcome in result.outcomes:
        if outcome.rule_id not in RULES:
            continue
        firing = sorted(k for k, v in outcome.states.items() if v == "firing")
        metadata = {
            "instances": outcome.instances,
            "periods evaluated": outcome.periods,
            "firing": ", ".join(firing) or "none",
        }
        if outcome.waiting:
            metadata["waiting for data"] = "; ".join(
                f"{k}: {v}" for k, v in outcome.waiting.items()
            )
        if outcome.error:
            metadata["error"] = outcome.error
            context.log.error(f"alert rule {outcome.rule_id}: {outcome.error}")
        checks.append(
            dg.AssetCheckResult(
                check_name=f"rule_{outcome.rule_id}",
                passed=outcome.error is None,
                metadata=metadata,
            )
        )
    firing = sum(1 for o in result.outcomes for v in o.states.values() if v == "firing")
    return dg.MaterializeResult(
        metadata={
            "evaluation_id": result.evaluation_id,
            "rules": len(result.outcomes),
            "instances": sum(o.instances for o in result.outcomes),
            "firing": firing,
            "errors": len(result.errors),
            "news queued": len(result.news),
        },
        check_results=checks,
    )


evaluate_alerts_job = dg.define_asset_job(
    "evaluate_alerts",
    selection=dg.AssetSelection.assets(EVALUATION),
    description="Evaluate the alert rules on complete data and notify.",
    executor_def=dg.in_process_executor,
)


@dg.sensor(
    job=evaluate_alerts_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def alerts_after_marts(context: dg.SensorEvaluationContext):
    """Requests an evaluation when the marts were built since the last one, and at least
    once an hour (a period closes, and its data may be complete, without any new load)."""
    from datetime import UTC, datetime

    event = context.instance.get_latest_materialization_event(dg.AssetKey(["web", "fct_sessions"]))
    built = str(event.storage_id) if event else "never"
    hour = datetime.now(UTC).strftime("%Y%m%d%H")
    cursor = f"{built}:{hour}"
    if cursor == context.cursor:
        return dg.SkipReason("no new marts and no new hour since the last evaluation")
    context.update_cursor(cursor)
    return dg.RunRequest(run_key=f"alerts:{cursor}")
