"""Superset's configuration for Siteline: everything comes from the environment.

Superset imports this file (``SUPERSET_CONFIG_PATH``) in its own virtual environment, so it
uses only the standard library. ``siteline superset`` sets every variable below; an operator
running Superset by other means sets them the same way.

- ``SUPERSET_SECRET_KEY`` (required): signs sessions and encrypts the stored database password.
  Superset refuses to start without one, or with a well-known default, or with one shorter
  than 32 characters. The demo generates one and remembers it under ``$SITELINE_HOME``.
- ``SUPERSET_METADATA_URL``: Superset's own metadata database. Default: SQLite in
  ``$SITELINE_HOME/superset/superset.db`` (the demo); any SQLAlchemy URL otherwise.
  (``siteline superset`` turns the value ``warehouse`` into the URL of a database on the
  warehouse server before Superset reads it.)
- ``SUPERSET_ROW_LIMIT``: the most rows a chart or CSV export returns (default 50,000).
"""

from __future__ import annotations

import os
from pathlib import Path

# Defaults published in Superset's docs and examples: a key anyone can read is no key.
_KNOWN_DEFAULTS = {
    "CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET",
    "CHANGE_ME_SECRET_KEY",
    "thisISaSECRET_1234",
    "YOUR_OWN_RANDOM_GENERATED_SECRET_KEY",
    "TEST_NON_DEV_SECRET",
    "\2\1thisismyscretkey\1\2\\e\\y\\y\\h",
}
MIN_SECRET_LENGTH = 32


def _secret_key() -> str:
    key = os.environ.get("SUPERSET_SECRET_KEY", "")
    if not key.strip():
        raise RuntimeError(
            "SUPERSET_SECRET_KEY is not set: Superset will not start without a secret key "
            "(generate one with `python -c 'import secrets; print(secrets.token_urlsafe(42))'`)"
        )
    if key in _KNOWN_DEFAULTS:
        raise RuntimeError(
            "SUPERSET_SECRET_KEY is a published default; set it to a random secret of your own"
        )
    if len(key) < MIN_SECRET_LENGTH:
        raise RuntimeError(
            f"SUPERSET_SECRET_KEY has {len(key)} characters; use at least {MIN_SECRET_LENGTH}"
        )
    return key


SECRET_KEY = _secret_key()

_home = Path(os.environ.get("SITELINE_HOME") or Path(__file__).resolve().parents[1] / ".siteline")
_default_metadata = _home / "superset" / "superset.db"
SQLALCHEMY_DATABASE_URI = os.environ.get("SUPERSET_METADATA_URL") or (
    f"sqlite:///{_default_metadata}"
)

APP_NAME = "Siteline"
ROW_LIMIT = int(os.environ.get("SUPERSET_ROW_LIMIT", "50000"))
SQL_MAX_ROW = ROW_LIMIT
SUPERSET_WEBSERVER_TIMEOUT = 120

# Plain HTTP on loopback for the demo; put a TLS proxy in front for anything else and set
# SUPERSET_COOKIE_SECURE=true.
SESSION_COOKIE_SECURE = os.environ.get("SUPERSET_COOKIE_SECURE", "false").lower() == "true"
SESSION_COOKIE_SAMESITE = "Lax"
WTF_CSRF_ENABLED = True

FEATURE_FLAGS = {
    "DASHBOARD_RBAC": False,
    # Jinja in SQL would let a chart author template queries; the marts need none.
    "ENABLE_TEMPLATE_PROCESSING": False,
    "ALERT_REPORTS": False,
}

# Rate limits of the login endpoint, kept in process memory (one machine).
RATELIMIT_STORAGE_URI = "memory://"

# Charts read the marts fresh: the warehouse is local and the marts are small aggregates.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}

LOG_LEVEL = os.environ.get("SUPERSET_LOG_LEVEL", "WARNING")
