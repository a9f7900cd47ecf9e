"""Superset, run from Siteline: its own virtual environment, configuration and provisioning.

Superset's pins conflict with the rest of Siteline, so it lives in ``.superset-venv``
(``make install`` creates it from ``superset_config/requirements.lock``). Everything here
talks to it through subprocesses: ``superset_config/provision.py`` (migrate, roles, admin
user, import or export of the dashboards-as-code bundle) and gunicorn serving the UI.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT, remembered_secret, siteline_home
from ingestion.core.settings import settings

SUPERSET_DIR = PROJECT_ROOT / "superset_config"
BUNDLE = SUPERSET_DIR / "bundle"


def venv() -> Path:
    """Superset's virtual environment: ``SITELINE_SUPERSET_VENV`` or ``.superset-venv``."""
    return settings().superset_venv or PROJECT_ROOT / ".superset-venv"


def default_port() -> int:
    """Superset's port: ``SITELINE_SUPERSET_PORT``, default 8088."""
    return settings().superset_port


def superset_bin(name: str = "python") -> Path:
    path = venv() / "bin" / name
    if not path.exists():
        raise SitelineError(
            f"Superset is not installed ({path} is missing); `make install` creates its "
            "virtual environment from superset_config/requirements.lock"
        )
    return path


def admin_password() -> str:
    """``SUPERSET_ADMIN_PASSWORD``, else generated once and remembered under the data dir."""
    return remembered_secret("superset-admin-password", "SUPERSET_ADMIN_PASSWORD")


def admin_password_is_generated() -> bool:
    return not os.environ.get("SUPERSET_ADMIN_PASSWORD")


def secret_key() -> str:
    """``SUPERSET_SECRET_KEY`` as given (superset_config.py rejects a weak one), else a
    generated 43-character key remembered under the data directory."""
    if "SUPERSET_SECRET_KEY" in os.environ:
        return os.environ["SUPERSET_SECRET_KEY"]
    return remembered_secret("superset-secret-key", None, nbytes=32)


def metadata_url() -> str | None:
    """``SUPERSET_METADATA_URL``; the value ``warehouse`` means a database
    ``<warehouse database>_superset`` on the warehouse server, created when missing.
    Unset: SQLite under the data directory."""
    value = os.environ.get("SUPERSET_METADATA_URL", "")
    if value != "warehouse":
        return value or None
    from urllib.parse import urlsplit

    from ingestion.core.warehouse import ensure_database, warehouse_url, with_database

    warehouse = warehouse_url()
    url = with_database(warehouse, urlsplit(warehouse).path.lstrip("/") + "_superset")
    ensure_database(url)
    return url.replace("postgresql://", "postgresql+psycopg2://", 1)


def environment(warehouse_dsn: str | None = None) -> dict[str, str]:
    """The environment Superset runs in. The warehouse DSN (bi_reader, with its password)
    is only needed by provisioning."""
    env = {
        **os.environ,
        "SUPERSET_CONFIG_PATH": str(SUPERSET_DIR / "superset_config.py"),
        "SUPERSET_SECRET_KEY": secret_key(),
        "SUPERSET_ADMIN_PASSWORD": admin_password(),
        "SITELINE_HOME": str(siteline_home()),
        "FLASK_APP": "superset",
        "PYTHONWARNINGS": "ignore",
    }
    if warehouse_dsn:
        env["SITELINE_SUPERSET_WAREHOUSE_URL"] = warehouse_dsn
    metadata = metadata_url()
    if metadata:
        env["SUPERSET_METADATA_URL"] = metadata
    else:
        (siteline_home() / "superset").mkdir(mode=0o700, parents=True, exist_ok=True)
    return env


def _run_provision(action: str, bundle: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(superset_bin()), str(SUPERSET_DIR / "provision.py"), action, "--bundle", str(bundle)],
        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    lines = [line for line in result.stdout.splitlines() if line.startswith("superset: ")]
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SitelineError(f"Superset {action} failed: {tail}")
    return "\n".join(lines)


def provision(bundle: Path = BUNDLE) -> str:
    """Migrate Superset's metadata, set up roles and the admin user, import the bundle with
    the warehouse connected as bi_reader. Idempotent: a re-import updates, never duplicates."""
    from ingestion.core.warehouse import ensure_bi_reader

    dsn = ensure_bi_reader()
    return _run_provision("setup", bundle, environment(dsn))


def export(bundle: Path = BUNDLE) -> str:
    """Write every dashboard, chart, dataset and database of Superset into ``bundle``."""
    return _run_provision("export", bundle, environment())


def serve_command(host: str, port: int, workers: int = 2) -> list[str]:
    return [
        str(superset_bin("gunicorn")),
        "--bind", f"{host}:{port}",
        "--workers", str(workers),
        "--worker-class", "gthread",
        "--threads", "4",
        "--timeout", "120",
        "--limit-request-line", "0",
        "--limit-request-field_size", "0",
        "--log-level", "warning",
        "superset.app:create_app()",
    ]  # fmt: skip


def login(port: int) -> str:
    """Superset's address and login, as ``siteline up`` and ``siteline superset`` print them."""
    who = "admin / $SUPERSET_ADMIN_PASSWORD"
    if admin_password_is_generated():
        who = f"admin / {admin_password()}  (generated; set SUPERSET_ADMIN_PASSWORD)"
    return f"http://127.0.0.1:{port}  ({who})"


def serve(host: str, port: int, say: Callable[[str], None], announce: Callable[[], None]):
    """``siteline superset``: provision Superset (``say`` hears each step), ``announce`` its
    address (unless ``siteline up`` runs it: that prints every address itself), then hand
    this process over to gunicorn. The process must be prepared (the warehouse running)."""
    from orchestration.supervisor import port_free

    if not port_free(port):
        raise SitelineError(f"port {port} is in use; stop what uses it or pass --port")
    for line in provision().splitlines():
        say(line)
    if not settings().up:
        announce()
    command = serve_command(host, port)
    os.execve(command[0], command, environment())
