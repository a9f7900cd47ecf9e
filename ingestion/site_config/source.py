"""dlt source: ``sites.yml`` into ``config.sites`` (replaced on every load)."""

from __future__ import annotations

import dlt

from ingestion.site_config.schema import load_sites


@dlt.source(name="site_config", max_table_nesting=0)
def site_config(sites_file: str | None = None):
    """The validated site configuration, one table per concept."""
    return sites(sites_file)


@dlt.resource(
    name="sites",
    write_disposition="replace",
    primary_key="site_id",
    columns={
        "domains": {"data_type": "json"},
        "allowed_origins": {"data_type": "json"},
        "inactivity_timeout_minutes": {"data_type": "bigint"},
        "max_session_hours": {"data_type": "double"},
    },
)
def sites(sites_file: str | None = None):
    config = load_sites(sites_file)
    for site in config.sites:
        yield {
            "site_id": site.id,
            "name": site.name or site.id,
            "domains": site.domains,
            "allowed_origins": site.origins,
            "timezone": site.timezone,
            "currency": site.currency,
            "inactivity_timeout_minutes": site.sessions.inactivity_timeout_minutes,
            "new_session_on_campaign_change": site.sessions.new_session_on_campaign_change,
            "split_at_midnight": site.sessions.split_at_midnight,
            "max_session_hours": site.sessions.max_session_hours,
            "ip_policy": site.ip_policy.mode,
            "respect_do_not_track": site.respect_do_not_track,
            "require_consent": site.require_consent,
        }
