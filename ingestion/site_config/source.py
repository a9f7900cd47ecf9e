"""dlt source: ``sites.yml`` into ``config.*`` (every table replaced on every load).

One table per concept, so the dbt models join rules to data without parsing YAML:
``sites``, ``page_labels``, ``campaign_parameters``, ``goals`` and ``funnel_steps``. A table
is created even when no site defines any row of it, so the models never meet a missing table.
"""

from __future__ import annotations

import math

import dlt

from ingestion.core.sites import Match, SitesConfig, load_sites


def _text(*names: str) -> dict:
    return {name: {"data_type": "text"} for name in names}


MATCH_COLUMNS = _text("match_type", "path_regex", "event_category", "event_action")


def _match(rule: Match) -> dict:
    return {
        "match_type": rule.type,
        "path_regex": rule.path,
        "event_category": rule.category,
        "event_action": rule.action,
    }


@dlt.source(name="site_config", max_table_nesting=0)
def site_config(sites_file: str | None = None):
    """The validated site configuration, one table per concept."""
    config = load_sites(sites_file)
    return [
        sites(config),
        page_labels(config),
        campaign_parameters(config),
        goals(config),
        funnel_steps(config),
    ]


@dlt.resource(
    name="sites",
    write_disposition="replace",
    primary_key="site_id",
    columns={
        "domains": {"data_type": "json"},
        "allowed_origins": {"data_type": "json"},
        "inactivity_timeout_minutes": {"data_type": "bigint"},
        "inactivity_timeout_seconds": {"data_type": "bigint"},
        "max_session_hours": {"data_type": "double"},
        "allowed_lateness_hours": {"data_type": "bigint"},
    },
)
def sites(config: SitesConfig):
    for site in config.sites:
        yield {
            "site_id": site.id,
            "name": site.name or site.id,
            "domains": site.domains,
            "allowed_origins": site.origins,
            "timezone": site.timezone,
            "currency": site.currency,
            # Whole minutes for readers of the first version; seconds carry fractions.
            "inactivity_timeout_minutes": math.ceil(site.sessions.inactivity_timeout_minutes),
            "inactivity_timeout_seconds": round(site.sessions.inactivity_timeout_minutes * 60),
            "new_session_on_campaign_change": site.sessions.new_session_on_campaign_change,
            "split_at_midnight": site.sessions.split_at_midnight,
            "max_session_hours": site.sessions.max_session_hours,
            "allowed_lateness_hours": site.sessions.allowed_lateness_hours,
            "ip_policy": site.ip_policy.mode,
            "respect_do_not_track": site.respect_do_not_track,
            "require_consent": site.require_consent,
        }


@dlt.resource(
    name="page_labels",
    write_disposition="replace",
    primary_key=["site_id", "position"],
    columns={**_text("site_id", "label", "path_regex"), "position": {"data_type": "bigint"}},
)
def page_labels(config: SitesConfig):
    """Page groups by path regex; the lowest position that matches wins."""
    yield dlt.mark.materialize_table_schema()
    for site in config.sites:
        for position, rule in enumerate(site.page_labels, start=1):
            yield {"site_id": site.id, "position": position, "label": rule.label,
                   "path_regex": rule.path}  # fmt: skip


@dlt.resource(
    name="campaign_parameters",
    write_disposition="replace",
    primary_key=["site_id", "field", "position"],
    columns={**_text("site_id", "field", "parameter"), "position": {"data_type": "bigint"}},
)
def campaign_parameters(config: SitesConfig):
    """Which query parameter fills which campaign field; the lowest position present wins."""
    yield dlt.mark.materialize_table_schema()
    for site in config.sites:
        for field, names in site.campaign_parameters.model_dump().items():
            for position, name in enumerate(names, start=1):
                yield {"site_id": site.id, "field": field, "position": position,
                       "parameter": name}  # fmt: skip


@dlt.resource(
    name="goals",
    write_disposition="replace",
    primary_key=["site_id", "goal_id"],
    columns={
        **_text("site_id", "goal_id", "goal_name"),
        **MATCH_COLUMNS,
        "goal_value": {"data_type": "double"},
    },
)
def goals(config: SitesConfig):
    yield dlt.mark.materialize_table_schema()
    for site in config.sites:
        for goal in site.goals:
            yield {"site_id": site.id, "goal_id": goal.id, "goal_name": goal.name or goal.id,
                   **_match(goal), "goal_value": goal.value}  # fmt: skip


@dlt.resource(
    name="funnel_steps",
    write_disposition="replace",
    primary_key=["site_id", "funnel_id", "step_number"],
    columns={
        **_text("site_id", "funnel_id", "funnel_name", "step_name"),
        **MATCH_COLUMNS,
        "step_number": {"data_type": "bigint"},
    },
)
def funnel_steps(config: SitesConfig):
    yield dlt.mark.materialize_table_schema()
    for site in config.sites:
        for funnel in site.funnels:
            for number, step in enumerate(funnel.steps, start=1):
                yield {"site_id": site.id, "funnel_id": funnel.id,
                       "funnel_name": funnel.name or funnel.id, "step_number": number,
                       "step_name": step.name, **_match(step)}  # fmt: skip
