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
- ``SUPERSET_PREVIOUS_SECRET_KEY``: the key before a rotation; ``siteline superset``
  re-encrypts the stored secrets with the new key when it finds them encrypted with this one
  (docs/operations.md). Remove it once that has run.
- ``SUPERSET_LOGIN_RATE_LIMIT``: failed logins a client address may make (form and API), as a
  flask-limiter rate (default ``10 per minute``); beyond it, logins are answered 429.
- ``SUPERSET_RATELIMIT_STORAGE_URI``: where those counts are kept (default ``memory://``, per
  worker process; ``redis://host:6379`` shares them between workers and machines).
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


# Everything this process writes (the SQLite metadata with the admin's password hash, logs)
# is for its own user only: files 0600, folders 0700. Set here so that Superset started by
# other means than `siteline superset` gets it too.
os.umask(0o077)

SECRET_KEY = _secret_key()
PREVIOUS_SECRET_KEY = os.environ.get("SUPERSET_PREVIOUS_SECRET_KEY") or None

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

# Failed logins are throttled per client address, on the login form and on the API's
# /api/v1/security/login alike (Flask-AppBuilder's own AUTH_RATE_LIMITED covers only the form
# and counts successful logins too). Once an address has used up the limit, every login from
# it is answered 429 until the window has passed. Behind a reverse proxy, set
# ENABLE_PROXY_FIX so the address is the client's, not the proxy's. No other route is
# limited (Superset's RATELIMIT_APPLICATION would also limit a dashboard's own requests).
RATELIMIT_ENABLED = True
RATELIMIT_APPLICATION = None
RATELIMIT_STORAGE_URI = os.environ.get("SUPERSET_RATELIMIT_STORAGE_URI") or "memory://"
AUTH_RATE_LIMITED = False  # replaced by the limit below
AUTH_RATE_LIMIT = os.environ.get("SUPERSET_LOGIN_RATE_LIMIT") or "10 per minute"


def _failed_login(response) -> bool:
    """A login the limit counts: the API answers a wrong password 401 (400 for a bad body);
    the form sends the browser back to the login page."""
    if response.status_code in (400, 401):
        return True
    location = response.headers.get("Location", "")
    return response.status_code in (302, 303) and location.split("?")[0].endswith("/login/")


def FLASK_APP_MUTATOR(app) -> None:
    """Put the failed-login limit on both login endpoints (the views exist by now)."""
    from flask_appbuilder.security.api import SecurityApi

    security = app.appbuilder.sm
    (api,) = [view for view in app.appbuilder.baseviews if isinstance(view, SecurityApi)]
    for blueprint in (security.auth_view.blueprint, api.blueprint):
        security.limiter.limit(AUTH_RATE_LIMIT, methods=["POST"], deduct_when=_failed_login)(
            blueprint
        )


# Charts read the marts fresh: the warehouse is local and the marts are small aggregates.
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}

LOG_LEVEL = os.environ.get("SUPERSET_LOG_LEVEL", "WARNING")
