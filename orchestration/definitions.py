"""Siteline's Dagster code location. It only assembles the domains' own Definitions."""

import dagster as dg

from orchestration.runtime import configure_environment

configure_environment()

from orchestration.defs import alerts, ingestion, logfiles, models, quality  # noqa: E402  (env)

defs = dg.Definitions.merge(ingestion.defs, logfiles.defs, models.defs, quality.defs, alerts.defs)
