"""The Superset bundle against what links to it and what it may read: every dashboard an
alert links to exists, and every dataset reads only what bi_reader may read."""

import re

import yaml

from ingestion.core.home import PROJECT_ROOT
from ingestion.core.metrics import METRICS
from ingestion.core.warehouse import ALERTS_SCHEMA, BI_SCHEMAS

BUNDLE = PROJECT_ROOT / "superset_config" / "bundle"
ALERTS_MARTS = PROJECT_ROOT / "dbt_project" / "models" / "marts" / "alerts"


def bundle(kind: str) -> list[dict]:
    return [yaml.safe_load(p.read_text()) for p in sorted((BUNDLE / kind).rglob("*.yaml"))]


def test_every_dashboard_an_alert_links_to_is_in_the_bundle():
    slugs = {d["slug"] for d in bundle("dashboards")}
    assert "alerts" in slugs
    assert {m.dashboard for m in METRICS.values()} <= slugs
    assert {m.name for m in METRICS.values() if m.dashboard == "alerts"} == {
        m.name for m in METRICS.values() if m.realtime
    }


def test_every_dataset_reads_only_what_bi_reader_may_read():
    """The web and crm marts, and of the alerts schema only its marts (the dbt views), never
    the evaluator's tables beside them."""
    views = {p.stem for p in ALERTS_MARTS.glob("*.sql")}
    assert views == {"fct_alert_evaluations", "dim_alert_instances", "fct_alert_notifications"}
    read = set()
    for dataset in bundle("datasets"):
        assert dataset["schema"] in (*BI_SCHEMAS, ALERTS_SCHEMA), dataset["table_name"]
        read |= set(re.findall(r"\b(?:from|join)\s+([a-z_]+)\.([a-z_]+)", dataset["sql"]))
    assert {schema for schema, _ in read} == {*BI_SCHEMAS, ALERTS_SCHEMA}
    assert {table for schema, table in read if schema == ALERTS_SCHEMA} == views
