"""Provision Superset for Siteline; runs in Superset's own virtual environment.

    python provision.py setup  --bundle DIR   # migrate, init, admin user, import the bundle
    python provision.py export --bundle DIR   # write every dashboard, chart, dataset back

``siteline superset`` calls it with the environment set (see superset_config.py):
``SUPERSET_ADMIN_PASSWORD`` and ``SITELINE_SUPERSET_WAREHOUSE_URL`` (the bi_reader DSN with
its password; only the password is injected at import, never written to the bundle).

Everything happens in one process: each ``superset`` CLI command would import Superset again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections import Counter
from pathlib import Path
from urllib.parse import unquote, urlsplit

import yaml

# Superset's SQLAlchemy 1.4 warns about its own flush events on every import; not ours to fix.
warnings.filterwarnings("ignore")

DATABASE_PREFIX = "databases/"
# The bundle's database URI keeps only the driver and the user: host, port, database name
# and password are those of the running warehouse, set at import.
BUNDLE_HOST = "127.0.0.1:5432"
BUNDLE_DB = "/siteline"
MASK = "XXXXXXXXXX"


def log(message: str) -> None:
    print(f"superset: {message}", flush=True)


def _app():
    from superset.app import create_app

    return create_app()


def _migrate() -> bool:
    """Upgrade the metadata database; True when it was not already at the head revision."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from flask import current_app
    from flask_migrate import upgrade
    from superset.extensions import db

    migrate = current_app.extensions["migrate"]
    script = ScriptDirectory.from_config(migrate.migrate.get_config(migrate.directory))
    with db.engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    if current == script.get_current_head():
        return False
    started = time.monotonic()
    upgrade(directory=migrate.directory)
    log(f"metadata database migrated in {time.monotonic() - started:.0f} s")
    return True


def _undecryptable(migrator) -> list[str]:
    """The ``table.column`` of every stored secret the current SECRET_KEY cannot decrypt."""
    from sqlalchemy import text
    from superset.extensions import db

    failing = set()
    dialect = db.engine.url.get_dialect()
    with db.engine.connect() as conn:
        for table, columns in migrator.discover_encrypted_fields().items():
            rows = conn.execute(text(f"select {', '.join(columns)} from {table}"))
            for row in rows:
                for name, column_type in columns.items():
                    value = migrator._read_bytes(name, row._mapping[name])
                    if value is None:
                        continue
                    try:
                        column_type.process_result_value(value, dialect)
                    except Exception:  # "Invalid decryption key", or a padding error
                        failing.add(f"{table}.{name}")
    return sorted(failing)


def _secrets_migrator(previous_key: str):
    """Superset's SecretsMigrator (what `superset re-encrypt-secrets` runs), finding the
    encrypted columns where Superset's models are: Superset 6.1 looks in ``db.metadata``,
    which holds none of them, so its command re-encrypts nothing (apache/superset#39391)."""
    from flask_appbuilder import Model
    from superset.utils.encrypt import EncryptedType, SecretsMigrator

    class Migrator(SecretsMigrator):
        def discover_encrypted_fields(self) -> dict:
            found = {}
            for name, table in Model.metadata.tables.items():
                columns = {
                    column_name: column.type
                    for column_name, column in table.columns.items()
                    if isinstance(column.type, EncryptedType)
                }
                if columns:
                    found[name] = columns
            return found

    return Migrator(previous_secret_key=previous_key)


def _check_secret_key() -> None:
    """Superset encrypts the secrets it stores (the warehouse connection's password) with
    SECRET_KEY; with another key every import and every query fails with "Invalid decryption
    key". Say so, with the way out, or re-encrypt them when the previous key is given."""
    from flask import current_app

    previous = current_app.config.get("PREVIOUS_SECRET_KEY")
    migrator = _secrets_migrator(previous or "")
    failing = _undecryptable(migrator)
    if not failing:
        return
    if not previous:
        raise SystemExit(
            f"superset: SUPERSET_SECRET_KEY is not the key Superset's stored secrets "
            f"({', '.join(failing)}) were encrypted with: set SUPERSET_SECRET_KEY back to the "
            "previous key (a generated one is kept in $SITELINE_HOME/secrets/"
            "superset-secret-key), or keep the new key and set SUPERSET_PREVIOUS_SECRET_KEY to "
            "the previous one to re-encrypt them (docs/operations.md)"
        )
    # when neither key decrypts a value it raises, and nothing is changed (one transaction)
    with contextlib.suppress(Exception):
        migrator.run()
    still = _undecryptable(migrator)
    if still:
        raise SystemExit(
            f"superset: neither SUPERSET_SECRET_KEY nor SUPERSET_PREVIOUS_SECRET_KEY decrypts "
            f"Superset's stored secrets ({', '.join(still)}): set SUPERSET_PREVIOUS_SECRET_KEY "
            "to the key they were encrypted with"
        )
    log(
        f"stored secrets ({', '.join(failing)}) re-encrypted with the new SUPERSET_SECRET_KEY; "
        "SUPERSET_PREVIOUS_SECRET_KEY can be removed"
    )


def _init_roles(force: bool) -> None:
    from superset import appbuilder, security_manager
    from superset.extensions import db

    admin = security_manager.find_role("Admin")
    if not force and admin is not None and admin.permissions:
        return
    started = time.monotonic()
    appbuilder.add_permissions(update_perms=True)
    security_manager.sync_role_definitions()
    db.session.commit()
    log(f"roles and permissions initialised in {time.monotonic() - started:.0f} s")


def _admin(password: str) -> None:
    """The `admin` user, with the password set from the environment at every start."""
    from superset import security_manager
    from superset.extensions import db

    user = security_manager.find_user(username="admin")
    if user is None:
        role = security_manager.find_role("Admin")
        created = security_manager.add_user(
            "admin", "Siteline", "Admin", "admin@localhost", role, password=password
        )
        if not created:
            raise SystemExit("superset: could not create the admin user")
        log("admin user created")
    else:
        security_manager.reset_password(user.id, password)
    db.session.commit()


def read_bundle(bundle: Path) -> dict[str, str]:
    contents = {
        path.relative_to(bundle).as_posix(): path.read_text()
        for path in sorted(bundle.rglob("*.yaml"))
    }
    if "metadata.yaml" not in contents:
        raise SystemExit(f"superset: {bundle} is not an asset bundle (no metadata.yaml)")
    return contents


def _import(bundle: Path, warehouse_url: str) -> dict[str, str]:
    from superset.commands.importers.v1.assets import ImportAssetsCommand

    target = urlsplit(warehouse_url)
    contents = read_bundle(bundle)
    passwords: dict[str, str] = {}
    for name in [n for n in contents if n.startswith(DATABASE_PREFIX)]:
        config = yaml.safe_load(contents[name])
        uri = urlsplit(config["sqlalchemy_uri"])
        netloc = f"{uri.username}:{MASK}@{target.hostname}:{target.port or 5432}"
        config["sqlalchemy_uri"] = uri._replace(netloc=netloc, path=target.path).geturl()
        contents[name] = yaml.safe_dump(config, sort_keys=False)
        passwords[name] = unquote(target.password or "")
    try:
        ImportAssetsCommand(contents, passwords=passwords).run()
    except Exception as exc:  # Superset wraps the cause in "Import failed for an unknown reason"
        cause = exc.__cause__ or exc
        detail = getattr(cause, "normalized_messages", lambda: None)() or cause
        raise SystemExit(f"superset: importing {bundle} failed: {detail}") from exc
    return contents


def setup(bundle: Path) -> None:
    password = os.environ.get("SUPERSET_ADMIN_PASSWORD", "")
    warehouse_url = os.environ.get("SITELINE_SUPERSET_WAREHOUSE_URL", "")
    if not password:
        raise SystemExit("superset: SUPERSET_ADMIN_PASSWORD is not set")
    if not warehouse_url:
        raise SystemExit("superset: SITELINE_SUPERSET_WAREHOUSE_URL is not set")
    app = _app()
    with app.app_context():
        migrated = _migrate()
        _check_secret_key()
        _init_roles(force=migrated)
        _admin(password)
        started = time.monotonic()
        from superset import security_manager
        from superset.utils.core import override_user

        # Imported assets are owned by the admin user, as with `superset import-directory`.
        with override_user(security_manager.find_user(username="admin")):
            imported = _import(bundle, warehouse_url)
        log(f"bundle imported ({_summary(imported)}) in {time.monotonic() - started:.1f} s")


def _summary(names) -> str:
    """`58 charts, 7 dashboards, ...` from bundle file names (metadata.yaml not counted)."""
    kinds = Counter(name.split("/", 1)[0] for name in names if "/" in name)
    return ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))


def _clean_name(name: str) -> str:
    """`charts/Sessions_12.yaml` -> `charts/Sessions.yaml`: file names without database ids,
    so an export changes only what was edited."""
    return re.sub(r"_\d+(\.yaml)$", r"\1", name)


def _stable_chart(config: dict) -> dict:
    """Drop the database ids a chart export carries: the import sets them from the dataset
    UUID, and without them an export shows only what was edited."""
    params = config.get("params") or {}
    for key in ("datasource", "slice_id", "dashboards"):
        params.pop(key, None)
    if config.get("query_context"):
        context = json.loads(config["query_context"])
        context["datasource"] = None
        context.get("form_data", {}).pop("datasource", None)
        context.get("form_data", {}).pop("slice_id", None)
        for query in context.get("queries", []):
            query.pop("datasource", None)
        config["query_context"] = json.dumps(context, sort_keys=True)
    return config


def _stable_dashboard(config: dict) -> dict:
    """Renumber the chart ids of a dashboard export 1..n in UUID order. The import maps them
    to the new database ids through the position's UUIDs, so any numbering works; a stable
    one keeps the bundle's diff to what was edited."""
    position = config.get("position") or {}
    charts = sorted(
        (
            item
            for item in position.values()
            if isinstance(item, dict) and item.get("type") == "CHART"
        ),
        key=lambda item: item["meta"]["uuid"],
    )
    ids = {item["meta"]["chartId"]: n for n, item in enumerate(charts, start=1)}

    def renumber(values):
        return [ids[v] for v in values if v in ids] if isinstance(values, list) else values

    for item in charts:
        item["meta"]["chartId"] = ids[item["meta"]["chartId"]]
    meta = config.get("metadata") or {}
    # Written by the dashboard page itself when it is first viewed (the colors it assigned);
    # the colors a user sets are in `label_colors`, which is kept.
    for derived in ("color_scheme_domain", "shared_label_colors", "map_label_colors"):
        meta.pop(derived, None)
    chart_configuration = {}
    for key, value in (meta.get("chart_configuration") or {}).items():
        if int(key) not in ids:
            continue
        value["id"] = ids[int(key)]
        cross = value.get("crossFilters") or {}
        cross["chartsInScope"] = renumber(cross.get("chartsInScope"))
        chart_configuration[str(ids[int(key)])] = value
    meta["chart_configuration"] = chart_configuration
    scoped = [meta.get("global_chart_configuration") or {}]
    scoped += meta.get("native_filter_configuration") or []
    for item in scoped:
        if "chartsInScope" in item:
            item["chartsInScope"] = renumber(item["chartsInScope"])
        if "excluded" in item.get("scope", {}) and isinstance(item["scope"], dict):
            item["scope"]["excluded"] = renumber(item["scope"]["excluded"])
    meta["timed_refresh_immune_slices"] = renumber(meta.get("timed_refresh_immune_slices", []))
    meta["expanded_slices"] = {
        str(ids[int(k)]): v for k, v in (meta.get("expanded_slices") or {}).items() if int(k) in ids
    }
    return config


def export(bundle: Path) -> None:
    app = _app()
    with app.app_context():
        # Superset's models can only be imported once the app exists.
        from superset import security_manager
        from superset.commands.export.assets import ExportAssetsCommand
        from superset.utils.core import override_user

        files: dict[str, str] = {}
        with override_user(security_manager.find_user(username="admin")):
            # The command yields lazy contents: render them while the user is set.
            exported = [
                (name, content() if callable(content) else content)
                for name, content in ExportAssetsCommand().run()
            ]
        for name, text in exported:
            if name.startswith(DATABASE_PREFIX):
                config = yaml.safe_load(text)
                uri = urlsplit(config["sqlalchemy_uri"])
                netloc = f"{uri.username}:{MASK}@{BUNDLE_HOST}"
                config["sqlalchemy_uri"] = uri._replace(netloc=netloc, path=BUNDLE_DB).geturl()
                text = yaml.safe_dump(config, sort_keys=False)
            elif name.startswith("charts/"):
                text = yaml.safe_dump(_stable_chart(yaml.safe_load(text)), sort_keys=False)
            elif name.startswith("dashboards/"):
                text = yaml.safe_dump(_stable_dashboard(yaml.safe_load(text)), sort_keys=False)
            elif name == "metadata.yaml" and (bundle / name).exists():
                continue  # only a timestamp: the bundle keeps its own
            clean = _clean_name(name)
            # Two objects with one name (possible in the UI) keep their ids, not one file.
            files[name if clean in files else clean] = text
    for folder in ("databases", "datasets", "charts", "dashboards", "queries"):
        shutil.rmtree(bundle / folder, ignore_errors=True)
    for name, text in files.items():
        path = bundle / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    log(f"exported to {bundle}: {_summary(files)}")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="provision.py")
    parser.add_argument("action", choices=["setup", "export"])
    parser.add_argument("--bundle", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.action == "setup":
        setup(args.bundle)
    else:
        args.bundle.mkdir(parents=True, exist_ok=True)
        export(args.bundle)


if __name__ == "__main__":
    main(sys.argv[1:])
