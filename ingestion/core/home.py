"""Where Siteline keeps its local state, and the secrets it generates for itself.

Everything a running Siteline writes (embedded warehouse data, Dagster instance, landing
segments, demo traffic, generated secrets) lives under ``SITELINE_HOME``, by default the
``.siteline`` folder of the project checkout. This module imports nothing heavy: the
collector and the real-time engine use it too and must not pull in Dagster.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from ingestion.core.errors import SitelineError
from ingestion.core.settings import settings

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def siteline_home() -> Path:
    """The data directory: ``$SITELINE_HOME`` or ``<project>/.siteline``."""
    home = (settings().home or PROJECT_ROOT / ".siteline").expanduser()
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


def data_dir(*parts: str) -> Path:
    """A folder under the data directory, created if missing."""
    path = ensure_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def landing_dir() -> Path:
    """Where the local collector lands events (and the demo writes its traffic)."""
    return settings().landing_dir or data_dir("landing")


# Written once the data of an install made before files were private has been tightened.
PRIVATE_MARK = ".private"


def keep_data_private() -> None:
    """Make what Siteline writes readable by its own user only, from here on and before.

    The data holds visitor and user ids (landing, engine snapshot), Superset's admin hash
    and generated secrets. The process umask 077 makes every file this process and its
    children (collector, Dagster, dbt, Superset) create 0600 and every directory 0700. Data
    written before that (an older Siteline) is tightened once: group and other lose every
    permission on the data directory's tree and on ``SITELINE_LANDING_DIR``. The embedded
    server's cluster is left to PostgreSQL (initdb makes it 0700); under root, the server's
    own user keeps its way in (the execute bit on the directories above the cluster).
    """
    os.umask(0o077)
    home = siteline_home()
    if not home.is_dir() or (home / PRIVATE_MARK).exists():
        return
    landing = settings().landing_dir
    roots = [home, *([landing] if landing and landing.is_dir() else [])]
    pgdata = home / "warehouse" / "pgdata"
    # the directories the embedded server's user passes through when Siteline runs as root
    passed = {home, home / "warehouse"} if os.geteuid() == 0 else set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            if here == pgdata:
                dirs[:] = []
                continue
            _remove_access(here, keep=0o001 if here in passed else 0)
            for name in files:
                _remove_access(here / name)
    (home / PRIVATE_MARK).touch()


def _remove_access(path: Path, keep: int = 0) -> None:
    """Take group and other permissions away from ``path`` (except ``keep``), not following
    links. A file that vanished meanwhile (a segment closed, a temporary file) or belongs to
    another user is skipped."""
    try:
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode) or not mode & 0o077 & ~keep:
            return
        path.chmod(mode & 0o7700 | mode & keep)
    except (FileNotFoundError, PermissionError):
        pass


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
