"""Write the first version of the dashboards-as-code bundle (``superset_config/bundle``).

The bundle is the source of truth: ``siteline superset`` imports it, and dashboards edited in
the UI go back into it with ``siteline superset export``. This script wrote its first
version, and stays here as the readable definition of the datasets, metrics and charts it
started from. Running it again overwrites UI edits, so it refuses to unless ``--force``.

Its output is then put in Superset's own layout by a round trip: ``siteline superset``
imports it, ``siteline superset export`` writes it back (what is committed).

It reads column names and types from the warehouse the marts are built in (``siteline demo``
first). UUIDs derive from names (uuid5), so a rewrite keeps every UUID stable.

    python superset_config/scaffold.py [--force]
    python superset_config/scaffold.py --only alerts   # one dashboard, into bundle-alerts/
"""

from __future__ import annotations

import json
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml

BUNDLE = Path(__file__).resolve().parent / "bundle"
NAMESPACE = uuid.UUID("6f1d3c52-3f0e-4a8e-9c1b-51e7e11e0001")
DATABASE_NAME = "Siteline warehouse"
DATABASE_FILE = "databases/Siteline_warehouse.yaml"
# The host, port and database are replaced at import by those of the running warehouse,
# the password by the bi_reader password; the bundle never holds either.
DATABASE_URI = "postgresql+psycopg2://bi_reader:XXXXXXXXXX@127.0.0.1:5432/siteline"
NO_FILTER = "No filter"


def uid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


# -- datasets ------------------------------------------------------------------------------------


@dataclass
class Dataset:
    name: str
    description: str
    time_column: str
    sql: str
    metrics: dict[str, tuple[str, str, str]]  # name -> (expression, label, d3 format)
    labels: dict[str, str] = field(default_factory=dict)
    schema: str = "web"

    @property
    def uuid(self) -> str:
        return uid("dataset", self.name)


DATASETS = [
    Dataset(
        "fct_sessions",
        "One row per visit (web.fct_sessions) with channel and country names.",
        "started_at",
        """select
    s.session_id, s.site_id, s.started_at, s.session_date, s.ended_at,
    s.visitor_id, s.customer_key, s.user_id is not null as is_identified, s.event_source,
    coalesce(ch.channel_name, 'Other') as channel,
    s.campaign_name, s.campaign_source, s.campaign_medium,
    s.referrer_host, s.referrer_medium, s.landing_page_path, s.exit_page_path,
    s.device_type, s.browser, s.os, s.country_code, g.country_name,
    s.duration_seconds, s.page_views, s.custom_events, s.engaged_seconds, s.is_bounce,
    s.goal_conversions, s.goal_value, s.transactions, s.revenue
from web.fct_sessions as s
left join web.dim_channels as ch on ch.channel_id = s.channel_id
left join web.dim_geography as g on g.country_code = s.country_code""",
        {
            "sessions": ("COUNT(*)", "Sessions", ",d"),
            "visitors": ("COUNT(DISTINCT visitor_id)", "Visitors", ",d"),
            "page_views": ("SUM(page_views)", "Page views", ",d"),
            "pages_per_session": (
                "SUM(page_views) * 1.0 / NULLIF(COUNT(*), 0)",
                "Pages per session",
                ",.2f",
            ),
            "bounce_rate": ("AVG(CASE WHEN is_bounce THEN 1.0 ELSE 0.0 END)", "Bounce rate", ".1%"),
            "conversion_rate": (
                "AVG(CASE WHEN goal_conversions > 0 THEN 1.0 ELSE 0.0 END)",
                "Conversion rate",
                ".1%",
            ),
            "avg_engaged_seconds": ("AVG(engaged_seconds)", "Engaged time per session (s)", ",.0f"),
            "avg_duration_seconds": ("AVG(duration_seconds)", "Visit duration (s)", ",.0f"),
            "goal_conversions": ("SUM(goal_conversions)", "Goal conversions", ",d"),
            "transactions": ("SUM(transactions)", "Transactions", ",d"),
            "revenue": ("SUM(revenue)", "Revenue", ",.2f"),
        },
    ),
    Dataset(
        "fct_page_views",
        "One row per page view (web.fct_page_views) with its page label and timings.",
        "viewed_at",
        """select
    pv.page_view_id, pv.site_id, pv.viewed_at, pv.viewed_date, pv.session_id, pv.visitor_id,
    pv.page_host, pv.page_path, coalesce(p.page_label, '(unlabelled)') as page_label,
    pv.page_title, pv.event_source, pv.is_entry, pv.is_exit,
    pv.time_on_page_seconds, pv.engaged_seconds, pv.http_status,
    pv.dns_ms, pv.connect_ms, pv.ttfb_ms, pv.dom_interactive_ms, pv.page_load_ms,
    coalesce(ch.channel_name, 'Other') as channel, pv.device_type, pv.country_code
from web.fct_page_views as pv
left join web.dim_pages as p on p.page_sk = pv.page_sk
left join web.dim_channels as ch on ch.channel_id = pv.channel_id""",
        {
            "page_views": ("COUNT(*)", "Page views", ",d"),
            "unique_page_views": (
                "COUNT(DISTINCT session_id || '|' || page_path)",
                "Unique page views",
                ",d",
            ),
            "entrances": ("SUM(CASE WHEN is_entry THEN 1 ELSE 0 END)", "Entrances", ",d"),
            "exits": ("SUM(CASE WHEN is_exit THEN 1 ELSE 0 END)", "Exits", ",d"),
            "exit_rate": ("AVG(CASE WHEN is_exit THEN 1.0 ELSE 0.0 END)", "Exit rate", ".1%"),
            "avg_time_on_page": ("AVG(time_on_page_seconds)", "Time on page (s)", ",.0f"),
            "avg_engaged_seconds": ("AVG(engaged_seconds)", "Engaged time per view (s)", ",.1f"),
            "page_load_ms": ("AVG(page_load_ms)", "Page load time (ms)", ",.0f"),
            "page_load_p75_ms": (
                "PERCENTILE_CONT(0.75) WITHIN GROUP (ORDER BY page_load_ms)",
                "Page load time, 75th percentile (ms)",
                ",.0f",
            ),
            "ttfb_ms": ("AVG(ttfb_ms)", "Time to first byte (ms)", ",.0f"),
            "dns_ms": ("AVG(dns_ms)", "DNS lookup (ms)", ",.0f"),
            "connect_ms": ("AVG(connect_ms)", "Connect (ms)", ",.0f"),
            "dom_interactive_ms": ("AVG(dom_interactive_ms)", "DOM interactive (ms)", ",.0f"),
            "timed_views": ("COUNT(page_load_ms)", "Page views with timings", ",d"),
        },
    ),
    Dataset(
        "fct_transactions",
        "One row per order (web.fct_transactions) with first- and last-touch channels.",
        "ordered_at",
        """select
    t.transaction_id, t.site_id, t.order_id, t.ordered_at, t.order_date, t.session_id,
    t.visitor_id, t.customer_key, t.revenue, t.shipping, t.tax, t.subtotal, t.currency,
    t.item_lines, t.quantity,
    coalesce(ch.channel_name, 'Other') as channel,
    coalesce(ft.channel_name, 'Other') as first_touch_channel, t.first_touch_campaign,
    coalesce(lt.channel_name, 'Other') as last_touch_channel, t.last_touch_campaign,
    d.device_type, d.browser, d.os
from web.fct_transactions as t
left join web.dim_channels as ch on ch.channel_id = t.channel_id
left join web.dim_channels as ft on ft.channel_id = t.first_touch_channel_id
left join web.dim_channels as lt on lt.channel_id = t.last_touch_channel_id
left join web.dim_devices as d on d.device_sk = t.device_sk""",
        {
            "transactions": ("COUNT(*)", "Transactions", ",d"),
            "revenue": ("SUM(revenue)", "Revenue", ",.2f"),
            "average_order_value": (
                "SUM(revenue) / NULLIF(COUNT(*), 0)",
                "Average order value",
                ",.2f",
            ),
            "items_sold": ("SUM(quantity)", "Items sold", ",d"),
            "buyers": ("COUNT(DISTINCT customer_key)", "Buyers", ",d"),
        },
    ),
    Dataset(
        "fct_transaction_items",
        "One row per order line (web.fct_transaction_items).",
        "ordered_at",
        """select
    i.transaction_item_id, i.site_id, i.transaction_id, i.order_id, i.ordered_at,
    i.order_date, i.sku, i.product_name, i.product_category, i.price, i.quantity,
    i.line_revenue, coalesce(ch.channel_name, 'Other') as channel, d.device_type
from web.fct_transaction_items as i
inner join web.fct_transactions as t on t.transaction_id = i.transaction_id
left join web.dim_channels as ch on ch.channel_id = t.channel_id
left join web.dim_devices as d on d.device_sk = t.device_sk""",
        {
            "units_sold": ("SUM(quantity)", "Units sold", ",d"),
            "product_revenue": ("SUM(line_revenue)", "Product revenue", ",.2f"),
            "orders": ("COUNT(DISTINCT transaction_id)", "Orders", ",d"),
            "average_price": (
                "SUM(line_revenue) / NULLIF(SUM(quantity), 0)",
                "Average price",
                ",.2f",
            ),
        },
    ),
    Dataset(
        "fct_goal_conversions",
        "One row per goal conversion (web.fct_goal_conversions).",
        "converted_at",
        """select
    gc.conversion_id, gc.site_id, gc.goal_id, gc.goal_name, gc.converted_at,
    gc.conversion_date, gc.session_id, gc.visitor_id, gc.customer_key, gc.page_path,
    gc.goal_value, coalesce(ch.channel_name, 'Other') as channel, s.device_type
from web.fct_goal_conversions as gc
left join web.dim_channels as ch on ch.channel_id = gc.channel_id
left join web.fct_sessions as s on s.session_id = gc.session_id""",
        {
            "conversions": ("COUNT(*)", "Conversions", ",d"),
            "converting_visitors": ("COUNT(DISTINCT visitor_id)", "Converting visitors", ",d"),
            "converting_sessions": ("COUNT(DISTINCT session_id)", "Converting sessions", ",d"),
            "goal_value": ("SUM(goal_value)", "Goal value", ",.2f"),
        },
    ),
    Dataset(
        "fct_funnel_steps",
        "One row per session and funnel step reached (web.fct_funnel_steps).",
        "reached_at",
        """select
    f.funnel_step_id, f.site_id, f.funnel_id, f.funnel_name, f.step_number, f.step_name,
    f.step_number || '. ' || f.step_name as step, f.steps_in_funnel, f.session_id,
    f.visitor_id, f.reached_at, f.reached_date, f.reached_next_step, f.is_completion,
    coalesce(ch.channel_name, 'Other') as channel, d.device_type
from web.fct_funnel_steps as f
left join web.dim_channels as ch on ch.channel_id = f.channel_id
left join web.dim_devices as d on d.device_sk = f.device_sk""",
        {
            "sessions_reaching": ("COUNT(DISTINCT session_id)", "Sessions reaching the step", ",d"),
            "sessions_continuing": (
                "COUNT(DISTINCT CASE WHEN reached_next_step THEN session_id END)",
                "Sessions going on to the next step",
                ",d",
            ),
            "drop_off_rate": (
                "1 - COUNT(DISTINCT CASE WHEN reached_next_step OR is_completion "
                "THEN session_id END) * 1.0 / NULLIF(COUNT(DISTINCT session_id), 0)",
                "Drop-off rate",
                ".1%",
            ),
        },
    ),
    Dataset(
        "customers",
        "One row per customer (crm.customers): identified user, else anonymous visitor.",
        "first_seen_at",
        """select
    c.site_id, c.customer_key, c.is_identified, c.user_id, c.visitor_ids, c.first_seen_at,
    c.last_seen_at, c.visits, c.page_views, c.engaged_seconds, c.goal_conversions,
    c.transactions, c.revenue, c.average_order_value, c.days_since_last_visit,
    c.recency_score, c.frequency_score, c.monetary_score, c.rfm_segment,
    coalesce(ft.channel_name, 'Other') as channel, c.first_touch_campaign,
    coalesce(lt.channel_name, 'Other') as last_touch_channel, c.last_touch_campaign,
    c.last_device_type as device_type, c.last_country_code as country_code
from crm.customers as c
left join web.dim_channels as ft on ft.channel_id = c.first_touch_channel_id
left join web.dim_channels as lt on lt.channel_id = c.last_touch_channel_id""",
        {
            "customers": ("COUNT(*)", "Customers", ",d"),
            "identified_customers": (
                "SUM(CASE WHEN is_identified THEN 1 ELSE 0 END)",
                "Identified customers",
                ",d",
            ),
            "buyers": ("SUM(CASE WHEN transactions > 0 THEN 1 ELSE 0 END)", "Buyers", ",d"),
            "lifetime_value": ("AVG(revenue)", "Lifetime value per customer", ",.2f"),
            "total_revenue": ("SUM(revenue)", "Lifetime revenue", ",.2f"),
            "avg_visits": ("AVG(visits)", "Visits per customer", ",.2f"),
            "avg_days_since_last_visit": (
                "AVG(days_since_last_visit)",
                "Days since last visit",
                ",.1f",
            ),
        },
        schema="crm",
    ),
    Dataset(
        "agg_daily_site_kpis",
        "One row per site and day (web.agg_daily_site_kpis), including data-quality counts.",
        "kpi_date",
        """select
    k.site_id, k.kpi_date, k.visits, k.visitors, k.visits_from_logs, k.page_views,
    k.bounce_rate, k.conversion_rate, k.revenue, k.bot_visits, k.bot_page_views, k.log_hits,
    k.bot_log_hits, k.static_log_hits, k.rejected_log_lines, k.late_events,
    k.quarantined_payloads
from web.agg_daily_site_kpis as k""",
        {
            "visits": ("SUM(visits)", "Visits", ",d"),
            "bot_visits": ("SUM(bot_visits)", "Bot visits (excluded)", ",d"),
            "log_hits": ("SUM(log_hits)", "Logfile hits", ",d"),
            "bot_log_hits": ("SUM(bot_log_hits)", "Bot logfile hits", ",d"),
            "rejected_log_lines": ("SUM(rejected_log_lines)", "Rejected log lines", ",d"),
            "late_events": ("SUM(late_events)", "Late events (not sessionised)", ",d"),
            "quarantined_payloads": ("SUM(quarantined_payloads)", "Quarantined payloads", ",d"),
        },
    ),
]
# The alerts marts (dbt_project/models/marts/alerts/): views over the alert evaluator's tables.
# Their metrics aggregate one series at a time in the series chart (grouped by alert_series),
# so MAX/MIN of a period's single value is that value.
ALERT_DATASETS = [
    Dataset(
        "fct_alert_evaluations",
        "One row per alert rule instance and evaluated period (alerts.fct_alert_evaluations).",
        "period_start",
        """select
    e.instance_id, e.rule_id, e.rule_name, e.site_id, e.severity, e.metric, e.condition_type,
    e.grain, e.dimension, e.dimension_value, e.alert_series, e.period_start, e.period_end,
    e.period_start_utc, e.value, e.volume, e.baseline, e.lower_bound, e.upper_bound,
    e.verdict, e.is_breach, e.detail, e.state, e.is_fired, e.is_resolved, e.fired_value,
    e.evaluated_at
from alerts.fct_alert_evaluations as e""",
        {
            "value": ("MAX(value)", "Value", ",.2f"),
            "baseline": ("MAX(baseline)", "Baseline", ",.2f"),
            "lower_bound": ("MIN(lower_bound)", "Band, lower edge", ",.2f"),
            "upper_bound": ("MAX(upper_bound)", "Band, upper edge", ",.2f"),
            "fired_value": ("MAX(fired_value)", "Fired", ",.2f"),
            "evaluations": ("COUNT(*)", "Evaluated periods", ",d"),
            "breaches": ("SUM(CASE WHEN is_breach THEN 1 ELSE 0 END)", "Breaching periods", ",d"),
            "alerts_fired": ("SUM(CASE WHEN is_fired THEN 1 ELSE 0 END)", "Alerts fired", ",d"),
            "alerts_resolved": (
                "SUM(CASE WHEN is_resolved THEN 1 ELSE 0 END)",
                "Alerts resolved",
                ",d",
            ),
        },
        schema="alerts",
    ),
    Dataset(
        "dim_alert_instances",
        "One row per alert rule instance with its current state (alerts.dim_alert_instances).",
        "state_since",
        """select
    i.instance_id, i.rule_id, i.rule_name, i.site_id, i.severity, i.metric, i.condition_type,
    i.grain, i.dimension, i.dimension_value, i.alert_series, i.state, i.is_firing,
    i.state_since, i.breaching_periods, i.last_period_start, i.last_evaluated_at,
    i.last_value, i.last_notified_at, i.is_waiting_for_data, i.waiting_reason, i.error,
    i.times_fired, i.last_fired_at
from alerts.dim_alert_instances as i""",
        {
            "instances": ("COUNT(*)", "Rule instances", ",d"),
            "firing_instances": (
                "SUM(CASE WHEN is_firing THEN 1 ELSE 0 END)",
                "Alerts firing now",
                ",d",
            ),
            "times_fired": ("SUM(times_fired)", "Times fired", ",d"),
            "last_value": ("MAX(last_value)", "Last value", ",.2f"),
        },
        schema="alerts",
    ),
    Dataset(
        "fct_alert_notifications",
        "One row per notification of the alerts outbox (alerts.fct_alert_notifications).",
        "created_at",
        """select
    n.notification_id, n.contact_point, n.evaluation_id, n.subject, n.status, n.attempts,
    n.has_error, n.created_at, n.next_attempt_at, n.sent_at, n.seconds_to_send, n.items,
    n.firing_items, n.resolved_items, n.repeat_items, n.silenced_items, n.rule_ids,
    n.site_ids
from alerts.fct_alert_notifications as n""",
        {
            "notifications": ("COUNT(*)", "Notifications", ",d"),
            "sent_notifications": (
                "SUM(CASE WHEN status = 'sent' THEN 1 ELSE 0 END)",
                "Notifications sent",
                ",d",
            ),
            "delivery_attempts": ("SUM(attempts)", "Delivery attempts", ",d"),
            "seconds_to_send": ("AVG(seconds_to_send)", "Seconds to send", ",.1f"),
        },
        schema="alerts",
    ),
]
DATASETS += ALERT_DATASETS
# Charts below name datasets by their short names.
BY_NAME = {d.name: d for d in DATASETS} | {
    d.name.removeprefix("fct_").removeprefix("agg_"): d for d in DATASETS
}


def column_types(conn, sql: str) -> list[tuple[str, str]]:
    cur = conn.execute(f"select * from ({sql}) as q limit 0")
    oids = [c.type_code for c in cur.description]
    names = dict(
        conn.execute(
            "select oid::int, format_type(oid, null) from pg_type where oid = any(%s)", (oids,)
        ).fetchall()
    )
    return [(c.name, names[c.type_code].upper()) for c in cur.description]


def dataset_yaml(ds: Dataset, columns: list[tuple[str, str]]) -> dict:
    temporal = ("TIMESTAMP", "DATE")
    return {
        "table_name": ds.name,
        "main_dttm_col": ds.time_column,
        "description": ds.description,
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "catalog": None,
        "schema": ds.schema,
        "sql": ds.sql,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": ds.uuid,
        "metrics": [
            {
                "metric_name": name,
                "verbose_name": label,
                "metric_type": None,
                "expression": expression,
                "description": None,
                "d3format": fmt,
                "currency": None,
                "extra": None,
                "warning_text": None,
            }
            for name, (expression, label, fmt) in ds.metrics.items()
        ],
        "columns": [
            {
                "column_name": name,
                "verbose_name": ds.labels.get(name),
                "is_dttm": type_.startswith(temporal),
                "is_active": True,
                "type": type_,
                "advanced_data_type": None,
                "groupby": True,
                "filterable": True,
                "expression": None,
                "description": None,
                "python_date_format": None,
                "extra": None,
            }
            for name, type_ in columns
        ],
        "version": "1.0.0",
        "database_uuid": uid("database", DATABASE_NAME),
    }


# -- charts --------------------------------------------------------------------------------------


@dataclass
class Chart:
    name: str
    dataset: str
    viz: str
    width: int = 4
    height: int = 50
    metrics: list[str] = field(default_factory=list)
    groupby: list[str] = field(default_factory=list)
    x_axis: str | None = None  # a temporal x axis for timeseries charts, else a category
    columns: list[str] = field(default_factory=list)  # pivot table columns
    time_grain: str | None = "P1D"  # None: the time column's own values (an alert's periods)
    row_limit: int = 100
    fmt: str | None = None
    not_null: list[str] = field(default_factory=list)  # columns whose empty group is left out
    true: list[str] = field(default_factory=list)  # boolean columns a row must have true
    extra: dict = field(default_factory=dict)

    @property
    def uuid(self) -> str:
        return uid("chart", self.name)


def _temporal_filter(ds: Dataset) -> dict:
    return {
        "clause": "WHERE",
        "comparator": NO_FILTER,
        "expressionType": "SIMPLE",
        "operator": "TEMPORAL_RANGE",
        "subject": ds.time_column,
    }


def chart_params(chart: Chart) -> dict:
    ds = BY_NAME[chart.dataset]
    params: dict = {
        "datasource": "1__table",
        "viz_type": chart.viz,
        "adhoc_filters": [_temporal_filter(ds)]
        + [
            {
                "clause": "WHERE",
                "expressionType": "SIMPLE",
                "subject": column,
                "operator": "IS NOT NULL",
                "comparator": None,
            }
            for column in chart.not_null
        ]
        + [
            {
                "clause": "WHERE",
                "expressionType": "SIMPLE",
                "subject": column,
                "operator": "IS TRUE",
                "comparator": None,
            }
            for column in chart.true
        ],
        "extra_form_data": {},
        "row_limit": chart.row_limit,
    }
    metric = chart.metrics[0] if chart.metrics else None
    fmt = chart.fmt or ds.metrics[metric][2] if metric else None
    if chart.viz == "big_number_total":
        params.update(metric=metric, header_font_size=0.4, subheader_font_size=0.15,
                      y_axis_format=fmt)  # fmt: skip
    elif chart.viz in ("echarts_timeseries_line", "echarts_timeseries_bar"):
        params.update(
            x_axis=chart.x_axis, time_grain_sqla=chart.time_grain if chart.x_axis ==
            ds.time_column else None, metrics=chart.metrics, groupby=chart.groupby,
            order_desc=True, show_legend=True, legendOrientation="top", legendType="scroll",
            rich_tooltip=True, y_axis_format=fmt, x_axis_time_format="smart_date",
            truncate_metric=True, show_empty_columns=True, comparison_type="values",
            annotation_layers=[], forecastPeriods=10, forecastInterval=0.8, zoomable=False,
            color_scheme="supersetColors", only_total=True, sort_series_type="sum",
        )  # fmt: skip
        if chart.x_axis != ds.time_column:
            params.update(x_axis_sort="", x_axis_sort_asc=False, orientation="vertical")
            if chart.metrics:
                params.update(x_axis_sort=chart.metrics[0])
    elif chart.viz == "pie":
        params.update(metric=metric, groupby=chart.groupby, show_legend=True,
                      show_labels=True, labels_outside=True, label_type="key_percent",
                      number_format=fmt or "SMART_NUMBER", sort_by_metric=True,
                      color_scheme="supersetColors", donut=True, innerRadius=40,
                      outerRadius=70)  # fmt: skip
    elif chart.viz == "table":
        params.update(query_mode="aggregate", groupby=chart.groupby, metrics=chart.metrics,
                      all_columns=[], percent_metrics=[], order_desc=True,
                      timeseries_limit_metric=metric, include_search=True,
                      server_pagination=False, show_cell_bars=True, table_timestamp_format=
                      "smart_date", allow_render_html=False)  # fmt: skip
    elif chart.viz == "pivot_table_v2":
        # Totals only where they mean something: a sum of counts, not a sum of averages.
        expression = ds.metrics[metric][0]
        additive = expression == "COUNT(*)" or (
            expression.startswith("SUM(") and "/" not in expression
        )
        params.update(groupbyRows=chart.groupby, groupbyColumns=chart.columns,
                      metrics=chart.metrics, aggregateFunction="Sum", rowTotals=additive,
                      colTotals=additive, rowSubTotals=False, colSubTotals=False,
                      transposePivot=False, combineMetric=False, valueFormat=fmt or
                      "SMART_NUMBER", metricsLayout="COLUMNS", rowOrder="key_a_to_z",
                      colOrder="key_a_to_z", date_format="smart_date")  # fmt: skip
    elif chart.viz == "funnel":
        params.update(metric=metric, groupby=chart.groupby, sort_by_metric=True,
                      show_legend=True, show_labels=True, label_type="key_value_percent",
                      number_format=fmt or "SMART_NUMBER", color_scheme="supersetColors",
                      legendOrientation="top")  # fmt: skip
    else:
        raise ValueError(f"no parameters for {chart.viz}")
    params.update(chart.extra)
    return params


def query_context(chart: Chart, params: dict) -> str:
    """What the chart asks of the warehouse, saved with it so `GET /api/v1/chart/{id}/data`
    (and the integration test) can run it without a browser."""
    ds = BY_NAME[chart.dataset]
    columns: list = []
    if chart.viz in ("echarts_timeseries_line", "echarts_timeseries_bar"):
        if chart.x_axis == ds.time_column:
            axis = {"timeGrain": chart.time_grain, "columnType": "BASE_AXIS",
                    "sqlExpression": chart.x_axis, "label": chart.x_axis,
                    "expressionType": "SQL"}  # fmt: skip
            if chart.time_grain is None:
                del axis["timeGrain"]
            columns.append(axis)
        else:
            columns.append(chart.x_axis)
        columns += chart.groupby
    elif chart.viz == "pivot_table_v2":
        columns = chart.groupby + chart.columns
    else:
        columns = list(chart.groupby)
    metrics = chart.metrics
    query = {
        "filters": [{"col": ds.time_column, "op": "TEMPORAL_RANGE", "val": NO_FILTER}]
        + [{"col": column, "op": "IS NOT NULL"} for column in chart.not_null]
        + [{"col": column, "op": "IS TRUE"} for column in chart.true],
        "extras": {"having": "", "where": ""},
        "applied_time_extras": {},
        "columns": columns,
        "metrics": metrics,
        "orderby": [[metrics[0], False]] if metrics and chart.viz != "pivot_table_v2" else [],
        "annotation_layers": [],
        "row_limit": chart.row_limit,
        "series_limit": 0,
        "order_desc": True,
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
    }
    return json.dumps(
        {
            "datasource": {"id": 1, "type": "table"},
            "force": False,
            "queries": [query],
            "form_data": params,
            "result_format": "json",
            "result_type": "full",
        }
    )


def chart_yaml(chart: Chart) -> dict:
    params = chart_params(chart)
    return {
        "slice_name": chart.name,
        "description": None,
        "certified_by": None,
        "certification_details": None,
        "viz_type": chart.viz,
        "params": params,
        "query_context": query_context(chart, params),
        "cache_timeout": None,
        "uuid": chart.uuid,
        "version": "1.0.0",
        "dataset_uuid": BY_NAME[chart.dataset].uuid,
    }


def big(name: str, dataset: str, metric: str, width: int = 3) -> Chart:
    return Chart(name, dataset, "big_number_total", width=width, height=25, metrics=[metric])


def daily(name, dataset, metrics, groupby=(), viz="echarts_timeseries_line", width=8, **kw):
    ds = BY_NAME[dataset]
    return Chart(name, dataset, viz, width=width, metrics=list(metrics), groupby=list(groupby),
                 x_axis=ds.time_column, **kw)  # fmt: skip


def table(name, dataset, groupby, metrics, width=6, height=60, row_limit=50, not_null=(),
          true=()):  # fmt: skip
    return Chart(name, dataset, "table", width=width, height=height, groupby=list(groupby),
                 metrics=list(metrics), row_limit=row_limit, not_null=list(not_null),
                 true=list(true))  # fmt: skip


def pivot(name, dataset, rows, columns, metrics, width=12, height=60):
    # One metric: the totals add up the values of every metric shown, whatever their unit.
    assert len(metrics) == 1, name
    return Chart(name, dataset, "pivot_table_v2", width=width, height=height, groupby=list(rows),
                 columns=list(columns), metrics=list(metrics), row_limit=10000)  # fmt: skip


def bars(name, dataset, category, metric, width=4, height=50, row_limit=20):
    return Chart(name, dataset, "echarts_timeseries_bar", width=width, height=height,
                 x_axis=category, metrics=[metric], row_limit=row_limit)  # fmt: skip


def pie(name, dataset, groupby, metric, width=4, row_limit=10, not_null=()):
    return Chart(name, dataset, "pie", width=width, groupby=[groupby], metrics=[metric],
                 row_limit=row_limit, not_null=list(not_null))  # fmt: skip


# Each dashboard: title, slug, the dataset its filters read their values from, rows of charts.
DASHBOARDS: list[tuple[str, str, str, list[list[Chart]]]] = [
    ("Traffic overview", "traffic", "sessions", [
        [big("Sessions", "sessions", "sessions"), big("Visitors", "sessions", "visitors"),
         big("Page views", "sessions", "page_views"),
         big("Bounce rate", "sessions", "bounce_rate")],
        [daily("Sessions and visitors per day", "sessions", ["sessions", "visitors"]),
         pie("Sessions by device type", "sessions", "device_type", "sessions")],
        [table("Sessions by country", "sessions", ["country_name"],
               ["sessions", "visitors", "bounce_rate", "avg_engaged_seconds"]),
         table("Engagement by device and browser", "sessions", ["device_type", "browser"],
               ["sessions", "pages_per_session", "avg_duration_seconds",
                "avg_engaged_seconds"])],
        [pivot("Sessions by channel and device (pivot)", "sessions", ["channel"],
               ["device_type"], ["sessions"])],
    ]),
    ("Acquisition", "acquisition", "sessions", [
        [daily("Sessions per day by channel", "sessions", ["sessions"], ["channel"],
               viz="echarts_timeseries_bar", width=12, extra={"stack": "Stack"})],
        [table("Channels", "sessions", ["channel"],
               ["sessions", "visitors", "bounce_rate", "conversion_rate", "revenue"], width=7),
         pie("Top referrers", "sessions", "referrer_host", "sessions", width=5,
             not_null=["referrer_host"])],
        [table("Campaigns", "sessions",
               ["campaign_name", "campaign_source", "campaign_medium"],
               ["sessions", "conversion_rate", "transactions", "revenue"], width=12,
               not_null=["campaign_name"])],
        [pivot("Channel by referrer medium (pivot)", "sessions", ["channel"],
               ["referrer_medium"], ["sessions"])],
    ]),
    ("Content", "content", "page_views", [
        [big("Page views (content)", "page_views", "page_views"),
         big("Unique page views", "page_views", "unique_page_views"),
         big("Exit rate", "page_views", "exit_rate"),
         big("Time on page", "page_views", "avg_time_on_page")],
        [table("Top pages", "page_views", ["page_path", "page_label"],
               ["page_views", "unique_page_views", "avg_time_on_page", "exit_rate"],
               width=8),
         bars("Page views by page label", "page_views", "page_label", "page_views")],
        [table("Entry pages", "sessions", ["landing_page_path"],
               ["sessions", "bounce_rate", "conversion_rate"]),
         table("Exit pages", "sessions", ["exit_page_path"], ["sessions"])],
        [pivot("Page label by device (pivot)", "page_views", ["page_label"], ["device_type"],
               ["page_views"])],
    ]),
    ("Goals and funnels", "goals", "goal_conversions", [
        [big("Conversions", "goal_conversions", "conversions"),
         big("Converting visitors", "goal_conversions", "converting_visitors"),
         big("Conversion rate", "sessions", "conversion_rate"),
         big("Goal value", "goal_conversions", "goal_value")],
        [daily("Conversions per day by goal", "goal_conversions", ["conversions"],
               ["goal_name"], viz="echarts_timeseries_bar", extra={"stack": "Stack"}),
         table("Goals", "goal_conversions", ["goal_name"],
               ["conversions", "converting_visitors", "goal_value"], width=4)],
        [Chart("Checkout funnel", "funnel_steps", "funnel", width=6, height=60,
               metrics=["sessions_reaching"], groupby=["step"], row_limit=20),
         table("Funnel steps", "funnel_steps", ["funnel_name", "step"],
               ["sessions_reaching", "sessions_continuing", "drop_off_rate"])],
        [pivot("Goals by channel (pivot)", "goal_conversions", ["goal_name"], ["channel"],
               ["conversions"])],
    ]),
    ("E-commerce", "ecommerce", "transactions", [
        [big("Revenue", "transactions", "revenue"),
         big("Transactions", "transactions", "transactions"),
         big("Average order value", "transactions", "average_order_value"),
         big("Items sold", "transactions", "items_sold")],
        [daily("Revenue per day", "transactions", ["revenue"], viz="echarts_timeseries_bar"),
         bars("Revenue by product category", "transaction_items", "product_category",
              "product_revenue")],
        [table("Top products", "transaction_items", ["product_name", "product_category"],
               ["units_sold", "orders", "product_revenue", "average_price"]),
         table("Revenue by last-touch channel", "transactions", ["last_touch_channel"],
               ["transactions", "revenue", "average_order_value"])],
        [pivot("First touch by last touch (pivot)", "transactions", ["first_touch_channel"],
               ["last_touch_channel"], ["revenue"])],
    ]),
    ("Customers", "customers", "customers", [
        [big("Customers", "customers", "customers"),
         big("Identified customers", "customers", "identified_customers"),
         big("Buyers", "customers", "buyers"),
         big("Lifetime value", "customers", "lifetime_value")],
        [bars("Customers by segment", "customers", "rfm_segment", "customers", width=6),
         table("Segments", "customers", ["rfm_segment"],
               ["customers", "lifetime_value", "total_revenue", "avg_visits",
                "avg_days_since_last_visit"])],
        [table("Top customers", "customers",
               ["customer_key", "is_identified", "rfm_segment", "visits", "transactions",
                "revenue"], ["total_revenue"], width=12, row_limit=25)],
        [pivot("Recency by frequency score (pivot)", "customers", ["recency_score"],
               ["frequency_score"], ["customers"])],
    ]),
    ("Site performance", "performance", "page_views", [
        [big("Page load time", "page_views", "page_load_ms"),
         big("Page load time, 75th percentile", "page_views", "page_load_p75_ms"),
         big("Time to first byte", "page_views", "ttfb_ms"),
         big("Page views with timings", "page_views", "timed_views")],
        [daily("Load timings per day", "page_views",
               ["page_load_ms", "dom_interactive_ms", "ttfb_ms"]),
         bars("Page load time by device", "page_views", "device_type", "page_load_ms")],
        [table("Slowest pages", "page_views", ["page_path"],
               ["page_load_ms", "page_load_p75_ms", "ttfb_ms", "timed_views"], width=12)],
        [pivot("Load time by page label and device (pivot)", "page_views", ["page_label"],
               ["device_type"], ["page_load_ms"], width=6),
         table("Data collection health per day", "daily_site_kpis", ["kpi_date"],
               ["visits", "bot_visits", "log_hits", "rejected_log_lines", "late_events",
                "quarantined_payloads"], width=6)],
    ]),
    # The alerts marts. The series chart draws each instance's periods as evaluated (hours or
    # days: no time grain); pick a rule and a site to see one series with its band.
    ("Alerts", "alerts", "alert_evaluations", [
        [big("Alerts firing now", "dim_alert_instances", "firing_instances"),
         big("Alerts fired", "alert_evaluations", "alerts_fired"),
         big("Alerts resolved", "alert_evaluations", "alerts_resolved"),
         big("Notifications sent", "alert_notifications", "sent_notifications")],
        [daily("Alert series: value, baseline band and fired points", "alert_evaluations",
               ["value", "baseline", "lower_bound", "upper_bound", "fired_value"],
               ["alert_series"], width=12, height=60, time_grain=None, row_limit=10000,
               extra={"markerEnabled": True, "markerSize": 8})],
        [table("Firing alerts", "dim_alert_instances", ["alert_series", "severity",
               "state_since"], ["times_fired", "last_value"], true=["is_firing"]),
         table("Fired alerts by rule and site", "alert_evaluations", ["rule_name", "site_id"],
               ["alerts_fired", "alerts_resolved", "breaches", "evaluations"])],
        [daily("Notifications per day by status", "alert_notifications", ["notifications"],
               ["status"], viz="echarts_timeseries_bar", extra={"stack": "Stack"}),
         pivot("Notifications by contact point and status (pivot)", "alert_notifications",
               ["contact_point"], ["status"], ["notifications"], width=4)],
    ]),
]  # fmt: skip
# The dashboard filters besides Date: (key, name, column); every dashboard over the web and
# crm marts has Site, Channel and Device, the Alerts dashboard Site, Rule and Severity.
FILTERS = [("site", "Site", "site_id"), ("channel", "Channel", "channel"),
           ("device", "Device", "device_type")]  # fmt: skip
DASHBOARD_FILTERS = {
    "alerts": [("site", "Site", "site_id"), ("rule", "Rule", "rule_name"),
               ("severity", "Severity", "severity")],
}  # fmt: skip


def native_filters(slug: str, dataset: Dataset) -> list[dict]:
    def flt(key: str, name: str, kind: str, column: str | None) -> dict:
        item = {
            "id": f"NATIVE_FILTER-{slug}-{key}",
            "name": name,
            "filterType": kind,
            "type": "NATIVE_FILTER",
            "description": "",
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "controlValues": {"enableEmptyFilter": False},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
            "targets": [{}],
        }
        if kind == "filter_time":
            item["defaultDataMask"] = {
                "extraFormData": {"time_range": NO_FILTER},
                "filterState": {"value": NO_FILTER},
                "ownState": {},
            }
        if column:
            item["targets"] = [{"column": {"name": column}, "datasetUuid": dataset.uuid}]
            item["controlValues"] = {"enableEmptyFilter": False, "multiSelect": True,
                                     "searchAllOptions": False, "inverseSelection": False,
                                     "defaultToFirstItem": False}  # fmt: skip
        return item

    return [flt("date", "Date", "filter_time", None)] + [
        flt(key, name, "filter_select", column)
        for key, name, column in DASHBOARD_FILTERS.get(slug, FILTERS)
    ]


def dashboard_yaml(title: str, slug: str, dataset: str, rows: list[list[Chart]],
                   chart_ids: dict[str, int]) -> dict:  # fmt: skip
    position: dict = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": title}},
    }
    for r, row in enumerate(rows):
        row_id = f"ROW-{slug}-{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        for c, chart in enumerate(row):
            chart_id = f"CHART-{slug}-{r}-{c}"
            position[row_id]["children"].append(chart_id)
            position[chart_id] = {
                "type": "CHART",
                "id": chart_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "chartId": chart_ids[chart.uuid],
                    "uuid": chart.uuid,
                    "sliceName": chart.name,
                    "width": chart.width,
                    "height": chart.height,
                },
            }
    return {
        "dashboard_title": title,
        "description": None,
        "css": "",
        "slug": slug,
        "certified_by": "",
        "certification_details": "",
        "published": True,
        "uuid": uid("dashboard", title),
        "position": position,
        "metadata": {
            "color_scheme": "supersetColors",
            "refresh_frequency": 0,
            "expanded_slices": {},
            "label_colors": {},
            "timed_refresh_immune_slices": [],
            "cross_filters_enabled": True,
            "default_filters": "{}",
            "chart_configuration": {},
            "global_chart_configuration": {
                "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
                "chartsInScope": [],
            },
            "native_filter_configuration": native_filters(slug, BY_NAME[dataset]),
        },
        "version": "1.0.0",
    }


def database_yaml() -> dict:
    return {
        "database_name": DATABASE_NAME,
        "sqlalchemy_uri": DATABASE_URI,
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "extra": {
            "allows_virtual_table_explore": True,
            "metadata_params": {},
            "engine_params": {},
            "schemas_allowed_for_file_upload": [],
        },
        "uuid": uid("database", DATABASE_NAME),
        "version": "1.0.0",
    }


def file_name(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_")


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))


def main(force: bool, only: str | None = None) -> None:
    """Write the whole bundle, or with ``only`` (a dashboard's slug) that dashboard with its
    charts and datasets into ``out`` (then imported and exported, and the export's files
    of it added to the bundle: how the Alerts dashboard joined the bundle)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ingestion.core.warehouse import connect, warehouse_url

    bundle = BUNDLE
    dashboards = DASHBOARDS
    datasets = DATASETS
    if only:
        dashboards = [d for d in DASHBOARDS if d[1] == only]
        if not dashboards:
            raise SystemExit(f"no dashboard with slug '{only}'")
        used = {chart.dataset for _, _, _, rows in dashboards for row in rows for chart in row}
        used.add(dashboards[0][2])
        datasets = [ds for ds in DATASETS if ds.name in {BY_NAME[name].name for name in used}]
        bundle = BUNDLE.parent / f"bundle-{only}"
        shutil.rmtree(bundle, ignore_errors=True)
    elif BUNDLE.exists():
        if not force:
            raise SystemExit(f"{BUNDLE} exists; --force overwrites it (and any UI edits in it)")
        shutil.rmtree(BUNDLE)
    write(
        bundle / "metadata.yaml",
        {"version": "1.0.0", "type": "assets", "timestamp": "2026-11-26T00:00:00+00:00"},
    )
    write(bundle / DATABASE_FILE, database_yaml())  # fmt: skip
    with connect(warehouse_url()) as conn:
        for ds in datasets:
            folder = bundle / "datasets" / file_name(DATABASE_NAME)
            write(folder / f"{ds.name}.yaml", dataset_yaml(ds, column_types(conn, ds.sql)))
    charts = [chart for _, _, _, rows in dashboards for row in rows for chart in row]
    names = [c.name for c in charts]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise SystemExit(f"chart names must be unique: {sorted(duplicates)}")
    chart_ids = {chart.uuid: i for i, chart in enumerate(charts, start=1)}
    for chart in charts:
        write(bundle / "charts" / f"{file_name(chart.name)}.yaml", chart_yaml(chart))
    for title, slug, dataset, rows in dashboards:
        write(bundle / "dashboards" / f"{file_name(title)}.yaml",
              dashboard_yaml(title, slug, dataset, rows, chart_ids))  # fmt: skip
    print(f"wrote {len(datasets)} datasets, {len(charts)} charts, {len(dashboards)} dashboards "
          f"to {bundle}")  # fmt: skip


if __name__ == "__main__":
    args = sys.argv[1:]
    main(force="--force" in args, only=args[args.index("--only") + 1] if "--only" in args else None)
