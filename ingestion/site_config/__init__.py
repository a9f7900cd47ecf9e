"""Site configuration (``sites.yml``): the validated schema, and the dlt source for ``config.*``."""

from ingestion.site_config.schema import (
    IpPolicy,
    SessionRules,
    Site,
    SitesConfig,
    default_config_path,
    load_sites,
)

__all__ = ["IpPolicy", "SessionRules", "Site", "SitesConfig", "default_config_path", "load_sites"]
