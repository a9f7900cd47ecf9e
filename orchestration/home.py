"""Where Siteline keeps its local state, and the one error type the CLI shows without a traceback.

Everything a running Siteline writes (embedded warehouse data, Dagster instance, landing
segments, demo traffic, generated secrets) lives under ``SITELINE_HOME``, by default the
``.siteline`` folder of the project checkout. This module imports nothing heavy: the
collector and the real-time engine use it too and must not pull in Dagster.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]


class SitelineError(Exception):
    """An expected failure with a message that names the problem and the fix.

    The CLI prints these as one line and exits non-zero; anything else is a bug and keeps
    its traceback.
    """


def siteline_home() -> Path:
    """The data directory: ``$SITELINE_HOME`` or ``<project>/.siteline``."""
    home = Path(os.environ.get("SITELINE_HOME") or PROJECT_ROOT / ".siteline").expanduser()
    return home.resolve()


def ensure_home() -> Path:
    home = siteline_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
    except PermissionError as exc:
        raise SitelineError(
            f"cannot create the data directory {home}: permission denied; "
            "set SITELINE_HOME to a directory you can write"
        ) from exc
    if not os.access(home, os.W_OK):
        raise SitelineError(
            f"the data directory {home} is not writable by this user; "
            "run as its owner or set SITELINE_HOME to a directory you can write"
        )
    return home


def remembered_secret(name: str, env_var: str | None = None, nbytes: int = 24) -> str:
    """A secret from ``env_var`` if set, else generated once and kept under the data directory.

    Generated secrets are written with mode 0600 in ``$SITELINE_HOME/secrets/`` (never in the
    repository) so that restarts keep working with the same password.
    """
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    folder = ensure_home() / "secrets"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / name
    if path.exists():
        return path.read_text().strip()
    value = secrets.token_urlsafe(nbytes)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value
