"""The ``siteline`` command: warehouse, pipeline runs, demo traffic, services and diagnosis.

Expected failures (a :class:`SitelineError`) print one line naming the problem and the fix and
exit with status 1; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import typer
from rich.console import Console

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT, keep_data_private, siteline_home
from ingestion.core.warehouse import (
    BI_ROLE,
    connect,
    ensure_bi_reader,
    is_external,
    mask_url,
    server_version,
    warehouse_url,
)
from orchestration.warehouse import EmbeddedWarehouse, ensure_warehouse

# soft_wrap: a message stays one line, whatever the terminal width (scripts grep them).
console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    help="Siteline: warehouse-native web analytics.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
warehouse_app = typer.Typer(help="The warehouse (embedded PostgreSQL unless WAREHOUSE_URL is set).")
app.add_typer(warehouse_app, name="warehouse")
superset_app = typer.Typer(
    help="Superset dashboards over the marts (runs in its own virtual environment)."
)
app.add_typer(superset_app, name="superset")

DEMO_DAYS = 14
DEMO_VISITS_PER_DAY = 400


def _fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(1)


def main() -> None:
    try:
        keep_data_private()  # before anything is written: data files 0600, folders 0700
        app()
    except SitelineError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


# -- warehouse -----------------------------------------------------------------------------------


@warehouse_app.command("start")
def warehouse_start() -> None:
    """Start the embedded warehouse (a no-op when it already runs)."""
    if is_external():
        console.print(f"WAREHOUSE_URL is set; using {mask_url(warehouse_url())} (nothing to start)")
        return
    url = ensure_warehouse()
    console.print(f"warehouse running: {mask_url(url)}")


@warehouse_app.command("stop")
def warehouse_stop() -> None:
    """Stop the embedded warehouse."""
    if is_external():
        _fail("WAREHOUSE_URL is set: Siteline does not manage that server")
    stopped = EmbeddedWarehouse().stop()
    console.print("warehouse stopped" if stopped else "warehouse was not running")


@warehouse_app.command("status")
def warehouse_status() -> None:
    """Say whether the warehouse accepts connections (exit 1 when it does not)."""
    url = warehouse_url()
    if not is_external() and not EmbeddedWarehouse().is_running():
        _fail("embedded warehouse is not running — start it with `siteline warehouse start`")
    version = server_version(url)
    kind = "external" if is_external() else "embedded"
    console.print(f"{kind} warehouse up: PostgreSQL {version} at {mask_url(url)}")


@warehouse_app.command("url")
def warehouse_url_cmd(
    database: str = typer.Option(None, help="Another database on the same server."),
    masked: bool = typer.Option(False, help="Hide the password."),
    role: str = typer.Option(
        None, help="bi_reader: the read-only DSN for BI tools (web and crm marts only)."
    ),
) -> None:
    """Print the warehouse DSN (with the password unless --masked)."""
    if role not in (None, BI_ROLE):
        raise SitelineError(f"unknown role '{role}'; the read-only role is {BI_ROLE}")
    url = warehouse_url(database)
    if role == BI_ROLE:
        if not is_external():
            ensure_warehouse()
        url = ensure_bi_reader(url)
    print(mask_url(url) if masked else url)


@warehouse_app.command("psql", context_settings={"allow_extra_args": True})
def warehouse_psql(ctx: typer.Context) -> None:
    """Open psql on the warehouse (extra arguments go to psql)."""
    if not is_external():
        ensure_warehouse()
    from orchestration.warehouse import _bin_dir

    psql = shutil.which("psql") or str(_bin_dir() / "psql")
    os.execv(psql, [psql, warehouse_url(), *ctx.args])


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt_cmd(ctx: typer.Context) -> None:
    """Run dbt on the project with the warehouse's settings (e.g. `siteline dbt build -s
    fct_sessions+`, `siteline dbt build --full-refresh`); arguments go to dbt."""
    if not is_external():
        ensure_warehouse()
    from orchestration.runtime import configure_environment

    configure_environment()
    from orchestration.dbt_paths import DBT_DIR, DBT_EXECUTABLE, cli_target_dir

    os.environ["DBT_TARGET_PATH"] = str(cli_target_dir())
    os.chdir(DBT_DIR)
    os.execv(DBT_EXECUTABLE, [DBT_EXECUTABLE, *ctx.args])


@app.command("docs")
def docs_cmd(
    port: int = typer.Option(8080, help="Port on 127.0.0.1."),
    generate_only: bool = typer.Option(False, help="Build the site and exit (prints its path)."),
) -> None:
    """Serve the dbt documentation (models, columns, lineage) on http://127.0.0.1:PORT."""
    if not is_external():
        ensure_warehouse()
    from orchestration.runtime import configure_environment

    configure_environment()
    from orchestration.dbt_paths import DBT_DIR, DBT_EXECUTABLE, cli_target_dir

    target = cli_target_dir()
    os.environ["DBT_TARGET_PATH"] = str(target)
    generated = subprocess.run([DBT_EXECUTABLE, "docs", "generate", "--quiet"], cwd=DBT_DIR)
    if generated.returncode != 0:
        _fail("dbt docs generate failed (see the output above)")
    if generate_only:
        console.print(f"[bold]dbt docs[/] {target / 'index.html'}")
        return
    console.print(f"[bold]dbt docs[/] http://127.0.0.1:{port}  (Ctrl-C stops)")
    os.chdir(DBT_DIR)
    os.execv(
        DBT_EXECUTABLE,
        [DBT_EXECUTABLE, "docs", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--no-browser"],
    )  # fmt: skip


# -- pipeline ------------------------------------------------------------------------------------


def run_pipeline(selection: list[str] | None = None) -> bool:
    """Materialise every asset (or the selection) once, in-process, recorded in Dagster.

    Unpartitioned assets run as one run of the implicit asset job; a partitioned asset (the
    logfile pulls, a partition per source) runs once per partition.
    """
    url = ensure_warehouse()
    ensure_bi_reader(url)
    from ingestion.core.home import data_dir
    from orchestration.runtime import configure_environment

    configure_environment()
    import dagster as dg

    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    all_keys = {
        k.to_user_string(): k for k in graph.get_all_asset_keys() if graph.get(k).is_executable
    }
    if selection:
        unknown = [s for s in selection if s not in all_keys]
        if unknown:
            raise SitelineError(
                f"unknown asset {', '.join(unknown)}; known assets: {', '.join(sorted(all_keys))}"
            )
        keys = [all_keys[s] for s in selection]
    else:
        keys = list(all_keys.values())
    plain = [k for k in keys if graph.get(k).partitions_def is None]
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    runs: list[tuple[dg.JobDefinition, list, str | None]] = []
    if partitioned:
        job = defs.resolve_job_def("pull_logfiles")
        partitions_def = graph.get(partitioned[0]).partitions_def
        runs += [(job, partitioned, key) for key in partitions_def.get_partition_keys()]
    if plain:
        runs.append((defs.resolve_implicit_global_asset_job_def(), plain, None))

    log_path = data_dir("logs") / "siteline-run.log"
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    ok = True
    with dg.DagsterInstance.get() as instance:
        for job, selected, partition in runs:
            # dagster-dbt echoes every dbt event to stdout; keep it in the run log instead.
            started = time.monotonic()
            with open(log_path, "a") as log, contextlib.redirect_stdout(log):
                result = job.execute_in_process(
                    run_config=quiet, instance=instance, asset_selection=selected,
                    partition_key=partition, raise_on_error=False,
                )  # fmt: skip
            ok = _report_run(result, partition, log_path, time.monotonic() - started) and ok
    return ok


def _report_run(result, partition: str | None, log_path: Path, seconds: float) -> bool:
    from orchestration.supervisor import run_line

    events = result.all_events
    materialised = {
        e.asset_key.to_user_string()
        for e in events
        if e.event_type_value == "ASSET_MATERIALIZATION"
    }
    checks = [
        e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    failed_checks = [c for c in checks if not c.passed]
    job = result.job_def.name + (f" [{partition}]" if partition else "")
    line = run_line(result.run_id, job, "success" if result.success else "failure", seconds,
                    len(materialised))  # fmt: skip
    console.print(
        f"{line}, {len(checks) - len(failed_checks)}/{len(checks)} checks passed (log: {log_path})",
        markup=False,
    )
    for check in failed_checks:
        err.print(f"[red]check failed:[/] {check.asset_check_key.to_user_string()}")
    if not result.success:
        for event in events:
            if event.is_failure and event.step_key:
                message = (event.message or "").splitlines()
                err.print(f"[red]step failed:[/] {event.step_key}: {message[0] if message else ''}")
    return result.success and not failed_checks


@app.command("run")
def run_cmd(
    assets: list[str] = typer.Argument(
        None, help="Asset keys to materialise (e.g. web/fct_page_views); default: all."
    ),
) -> None:
    """Materialise every asset once, from the same Definitions the Dagster UI shows."""
    if not run_pipeline(assets):
        raise typer.Exit(1)


@app.command("import-logs")
def import_logs_cmd(
    location: str = typer.Argument(..., help="A path, glob or http(s)/ftp(s)/sftp/file URL."),
    site: str = typer.Option(..., "--site", help="Site id from sites.yml."),
    log_format: str = typer.Option("auto", "--format", help="auto, combined, iis, ... custom."),
    apache_format: str = typer.Option(None, "--log-format", help="Apache LogFormat (custom)."),
    regex: str = typer.Option(None, "--regex", help="Regex with named groups (custom)."),
    source: str = typer.Option("import", "--source", help="Source name: pulls resume by it."),
) -> None:
    """Import logfiles once (incrementally: a second import of the same files adds nothing)
    and print what happened to every line."""
    from dlt.pipeline.exceptions import PipelineStepFailed
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ingestion.core.sites import load_sites
    from ingestion.logfiles import finish_interrupted_load, logfiles
    from ingestion.logfiles.remote import PullError
    from ingestion.pipelines import logfile_pipeline
    from orchestration.runtime import configure_environment

    load_sites().site(site)  # unknown site: a one-line error naming the known ones
    url = location if "://" in location else f"file://{Path(location).resolve()}"
    ensure_warehouse()
    configure_environment()
    overrides = {"url": url, "format": log_format, "log_format": apache_format, "regex": regex,
                 "last_line": "read"}  # fmt: skip
    started = time.monotonic()
    columns = TextColumn("[bold]{task.fields[step]}[/] {task.fields[lines]:,} lines")
    with Progress(SpinnerColumn(), columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("import", total=None, lines=0, step="reading")
        report = {
            "progress": lambda n: bar.update(task, lines=bar.tasks[0].fields["lines"] + n),
            "read": lambda: bar.update(task, step="loading into the warehouse:"),
        }
        try:
            pipeline = logfile_pipeline(f"{site}.{source}")
            if (removed := finish_interrupted_load(pipeline)) is not None:
                again = f"; copied again: {removed}" if removed else ""
                console.print(f"finished the load an earlier import left unfinished{again}")
            pipeline.run(logfiles(site, source, overrides=overrides, report=report))
            bar.update(task, step="imported")
        except PipelineStepFailed as exc:
            cause = exc.__cause__ or exc.exception
            # dlt wraps the reason: say ours (a PullError names the source and the cause)
            while cause.__cause__ is not None and not isinstance(cause, PullError):
                cause = cause.__cause__
            _fail(f"import of {location} failed: {getattr(cause, 'args', [cause])[0]}")
    elapsed = time.monotonic() - started
    stats = report["stats"]
    if not stats:
        _fail(f"no file matches {location}")
    total = {k: sum(getattr(s, k) for s in stats) for k in
             ("lines_read", "loaded", "skipped", "rejected", "bots", "bytes_read")}  # fmt: skip
    excluded = sum((s.excluded for s in stats), start=__import__("collections").Counter())
    reasons = sum((s.rejected_reasons for s in stats), start=__import__("collections").Counter())
    console.print(f"[bold]{len(stats)} file(s)[/], {total['bytes_read']:,} new bytes, "
                  f"{total['lines_read']:,} lines in {elapsed:.1f} s "
                  f"({total['lines_read'] / max(elapsed, 1e-9):,.0f} lines/s)")  # fmt: skip
    console.print(f"  loaded    {total['loaded']:>10,}  (bots flagged: {total['bots']:,})")
    console.print(f"  skipped   {total['skipped']:>10,}  (blank lines, comments, headers)")
    console.print(f"  excluded  {sum(excluded.values()):>10,}  {dict(excluded) or ''}")
    console.print(f"  rejected  {total['rejected']:>10,}  → raw_logfiles.rejected_lines")
    for reason, count in reasons.most_common(5):
        console.print(f"            {count:>10,}  {reason}")


# -- demo traffic ----------------------------------------------------------------------------------


@app.command("simulate")
def simulate_cmd(
    out: Path = typer.Option(..., help="Output directory (landing/, logs/, truth/)."),
    days: int = typer.Option(DEMO_DAYS, min=1),
    visits_per_day: int = typer.Option(DEMO_VISITS_PER_DAY, min=1),
    events: int = typer.Option(
        0, help="Target number of tracker events; sets visits per day (≈13 events a visit)."
    ),
    seed: int = typer.Option(42),
    start: str = typer.Option("2026-11-01", help="First day (site time zone)."),
) -> None:
    """Write deterministic demo traffic: tracker events, an access log and the ground truth."""
    from ingestion.demo_traffic.simulator import SimulationConfig
    from ingestion.demo_traffic.writer import write_simulation

    if events:
        visits_per_day = max(1, round(events / 13.0 / days))
    cfg = SimulationConfig(
        days=days, visits_per_day=visits_per_day, seed=seed, start=date.fromisoformat(start)
    )
    summary = write_simulation(cfg, out)
    console.print_json(data=summary["stats"])


def prepare_demo_traffic(
    cfg, url: str, progress: bool = True, segment_events: int = 50_000
) -> dict:
    """Write the demo traffic into the local landing, replacing earlier demo traffic.

    Same settings as last time: reused as they are. Other settings: the earlier demo segments
    and the rows loaded from them are removed first, so demo traffic is never doubled.
    """
    from ingestion.core.home import data_dir, landing_dir
    from ingestion.demo_traffic.writer import write_simulation

    summary = write_simulation(
        cfg, data_dir("demo"), landing_root=landing_dir(), progress=progress,
        segment_events=segment_events,
    )  # fmt: skip
    if summary.get("replaced_segments"):
        with connect(url, autocommit=True) as conn:
            if conn.execute("select to_regclass('raw_collector.events')").fetchone()[0]:
                conn.execute(
                    "delete from raw_collector.events where segment = any(%s)",
                    (summary["replaced_segments"],),
                )
    return summary


@app.command("demo")
def demo_cmd(
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the services afterwards."),
    days: int = typer.Option(DEMO_DAYS, min=1, help="Days of demo traffic."),
    visits_per_day: int = typer.Option(DEMO_VISITS_PER_DAY, min=1),
    seed: int = typer.Option(42, help="Seed of the simulator (same seed, same traffic)."),
    segment_events: int = typer.Option(50_000, hidden=True, help="Events per landing segment."),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also copy every service's log lines to the terminal."
    ),
) -> None:
    """Warehouse, demo traffic, the whole pipeline, then the services (unless --no-serve)."""
    from orchestration.runtime import configure_environment

    url = ensure_warehouse()
    configure_environment()
    console.print(f"[bold]warehouse[/] {mask_url(url)}")
    from ingestion.demo_traffic.simulator import SimulationConfig

    summary = prepare_demo_traffic(
        SimulationConfig(days=days, visits_per_day=visits_per_day, seed=seed), url,
        segment_events=segment_events,
    )  # fmt: skip
    stats = summary["stats"]
    verb = "reusing" if summary["reused"] else "generated"
    console.print(
        f"[bold]demo traffic[/] {verb}: {stats['visits']:,} visits, {stats['events']:,} tracker "
        f"events, {stats['log_lines']:,} log lines"
    )
    if not run_pipeline():
        _fail("the pipeline run failed; open the run in the Dagster UI (`siteline up`) for details")
    with connect(url) as conn:
        rows = conn.execute("select count(*) from web.fct_page_views").fetchone()[0]
    console.print(f"[bold]web.fct_page_views[/] {rows:,} rows")
    if serve:
        up_cmd(verbose=verbose)
    else:
        _print_urls(services=False)


# -- services ------------------------------------------------------------------------------------

COLLECTOR_PORT = int(os.environ.get("SITELINE_COLLECTOR_PORT", "8000"))


@app.command("collector")
def collector_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(COLLECTOR_PORT, help="TCP port."),
    workers: int = typer.Option(1, help="Worker processes (each needs its own landing writer)."),
) -> None:
    """Run the collection server (POST /collect, /t.js, /health) in the foreground."""
    import uvicorn

    from ingestion.core.enrich import country_of
    from ingestion.core.sites import load_sites

    load_sites()  # a broken sites.yml is a one-line error here, not a traceback per worker
    country_of("127.0.0.1")  # so is a configured geo database that cannot be read
    if not _port_free(port):
        _fail(f"port {port} on {host} is in use; stop what uses it or pass --port")
    uvicorn.run(
        "realtime.collector.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        # httptools with a request head limit (431 past 32 KB; httptools itself has none).
        http="realtime.collector.headlimit:HeadLimitedHttpToolsProtocol",
        # Only the site's trusted_proxies may set the client address (enrich.client_ip);
        # uvicorn would otherwise trust X-Forwarded-For from any loopback peer.
        proxy_headers=False,
        # Open event streams (/v1/stream) end when the stop begins (server_stopping); other
        # requests get this long. `siteline up` waits longer (COLLECTOR_STOP_GRACE).
        timeout_graceful_shutdown=3,
    )


@superset_app.callback(invoke_without_command=True)
def superset_cmd(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(None, help="TCP port (default 8088, or SITELINE_SUPERSET_PORT)."),
) -> None:
    """Provision Superset (metadata, admin user, the dashboards bundle) and serve it."""
    if ctx.invoked_subcommand is not None:
        return
    from orchestration import superset
    from orchestration.runtime import configure_environment

    port = port or superset.DEFAULT_PORT
    if not _port_free(port):
        _fail(f"port {port} is in use; stop what uses it or pass --port")
    ensure_warehouse()
    configure_environment()
    for line in superset.provision().splitlines():
        console.print(line)
    if not os.environ.get("SITELINE_UP"):  # `siteline up` prints every URL itself
        _print_superset(port)
    command = superset.serve_command(host, port)
    os.execve(command[0], command, superset.environment())


@superset_app.command("export")
def superset_export_cmd(
    to: Path = typer.Option(None, help="Bundle folder (default superset_config/bundle)."),
) -> None:
    """Write the dashboards, charts and datasets edited in the UI back into the bundle."""
    from orchestration import superset

    target = (to or superset.BUNDLE).resolve()
    for line in superset.export(target).splitlines():
        console.print(line)
    console.print(f"review the change with `git diff {target}` and commit it")


def _print_superset(port: int) -> None:
    from orchestration import superset

    login = "admin / $SUPERSET_ADMIN_PASSWORD"
    if superset.admin_password_is_generated():
        login = f"admin / {superset.admin_password()}  (generated; set SUPERSET_ADMIN_PASSWORD)"
    console.print(f"[bold]superset[/]   http://127.0.0.1:{port}  ({login})")


DAGSTER_PORT = int(os.environ.get("SITELINE_DAGSTER_PORT", "3000"))


def _print_realtime() -> None:
    from ingestion.core.sites import load_sites

    sites = [site for site in load_sites().sites if site.api_key_env]
    if not sites:
        return
    console.print(
        f"[bold]real-time[/]  http://127.0.0.1:{COLLECTOR_PORT}/v1/active  "
        f"(API docs: http://127.0.0.1:{COLLECTOR_PORT}/docs; demo shop with a live panel: "
        f"http://127.0.0.1:{COLLECTOR_PORT}/demo/)"
    )
    for site in sites:
        generated = "" if os.environ.get(site.api_key_env) else "generated; "
        console.print(
            f"           site {site.id}: Authorization: Bearer $({_SITELINE} api-key {site.id})  "
            f"({generated}set {site.api_key_env})"
        )


_SITELINE = ".venv/bin/siteline"


@app.command("api-key")
def api_key_cmd(site: str = typer.Argument(..., help="Site id from sites.yml.")) -> None:
    """Print a site's real-time API key (from its api_key_env variable, else generated once)."""
    from ingestion.core.sites import load_sites, site_keys

    config = load_sites()
    config.site(site)  # an unknown site is a one-line error naming the known ones
    keys = site_keys(config)
    if site not in keys:
        _fail(f"site '{site}' has no real-time API: set api_key_env for it in sites.yml")
    print(keys[site])


def _print_urls(services: bool = True, ui_password: str | None = None) -> None:
    console.print(f"[bold]warehouse[/]  {mask_url(warehouse_url())}  (`siteline warehouse url`)")
    if services:
        from orchestration.ui_proxy import PASSWORD_ENV, USERNAME

        if ui_password:
            login = f"{USERNAME} / {ui_password}  (generated, shown once; set {PASSWORD_ENV})"
        elif os.environ.get(PASSWORD_ENV):
            login = f"{USERNAME} / ${PASSWORD_ENV}"
        else:
            login = f"{USERNAME} / the password shown at the first start; `siteline ui-password`"
        console.print(f"[bold]dagster[/]    http://127.0.0.1:{DAGSTER_PORT}  ({login})")
        console.print(
            f"[bold]collector[/]  http://127.0.0.1:{COLLECTOR_PORT}/collect  "
            f"(tracker: http://127.0.0.1:{COLLECTOR_PORT}/t.js)"
        )
        _print_realtime()
        from orchestration.superset import DEFAULT_PORT as SUPERSET_PORT

        _print_superset(SUPERSET_PORT)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _listening(where: int | Path) -> bool:
    """Whether a server accepts connections on a loopback port or a Unix socket."""
    import socket

    if isinstance(where, int):
        return not _port_free(where)
    with socket.socket(socket.AF_UNIX) as sock:
        return sock.connect_ex(str(where)) == 0


@app.command("up")
def up_cmd(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also copy every service's log lines to the terminal."
    ),
) -> None:
    """Start every service in the foreground (Ctrl-C stops them): the Dagster UI (behind a
    login) and daemon, the collector, Superset. Their logs go to $SITELINE_HOME/logs."""
    from ingestion.core.home import data_dir
    from orchestration import dagster_webserver, ui_proxy
    from orchestration.runtime import configure_environment
    from orchestration.superset import DEFAULT_PORT as SUPERSET_PORT
    from orchestration.supervisor import (
        COLLECTOR_STOP_GRACE,
        RunReporter,
        Service,
        stop_services,
    )

    ensure_warehouse()
    configure_environment()
    for port, variable in ((DAGSTER_PORT, "SITELINE_DAGSTER_PORT"),
                           (COLLECTOR_PORT, "SITELINE_COLLECTOR_PORT"),
                           (SUPERSET_PORT, "SITELINE_SUPERSET_PORT")):  # fmt: skip
        if not _port_free(port):
            _fail(f"port {port} on 127.0.0.1 is in use; stop what uses it or set {variable}")
    ui_password = ui_proxy.ensure_password()
    # The webserver itself answers only on a Unix socket in an owner-only directory, no TCP
    # port; the proxy checks Host, Origin and the login in front of it (ui_proxy.py).
    webserver_socket = dagster_webserver.socket_path()
    webserver_socket.unlink(missing_ok=True)  # left by a killed start: not ready until renewed
    bin_dir = Path(sys.executable).parent
    workspace = str(PROJECT_ROOT / "workspace.yaml")
    cli = [sys.executable, "-m", "orchestration.cli"]
    services = [
        Service("dagster-webserver", [*cli, "dagster-webserver", "--socket",
                                      str(webserver_socket), "-w", workspace]),
        Service("dagster-ui-proxy", [*cli, "dagster-ui-proxy", "--port", str(DAGSTER_PORT),
                                     "--upstream-socket", str(webserver_socket)]),
        Service("dagster-daemon", [str(bin_dir / "dagster-daemon"), "run", "-w", workspace]),
        # Its graceful stop waits up to 3 s for open requests (timeout_graceful_shutdown),
        # then closes its segments and writes the engine's snapshot: more time than that.
        Service("collector", [*cli, "collector", "--port", str(COLLECTOR_PORT)],
                signal_group=False, stop_grace=COLLECTOR_STOP_GRACE),  # its fsync helpers
        # gunicorn (exec'd by `siteline superset`): SIGINT is its quick shutdown
        Service("superset", [*cli, "superset", "--port", str(SUPERSET_PORT)], signal.SIGINT),
    ]  # fmt: skip
    log_dir = data_dir("logs")
    # The collector also serves the demo shop page (/demo/) next to the real-time API.
    env = {**os.environ, "SITELINE_UP": "1", "SITELINE_DEMO_PAGE": "1"}
    stopping = False

    def stop(*_, status: int = 0):
        nonlocal stopping
        if stopping:
            return
        stopping = True
        with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
            console.print("stopping the services ...")
        reporter.stopping.set()
        stop_services(services)
        # Tearing down the interpreter (Dagster's modules) takes seconds and has nothing to
        # save: every child is gone and the output is flushed.
        with contextlib.suppress(OSError):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)

    reporter = RunReporter(log_dir, console.print, f"http://127.0.0.1:{DAGSTER_PORT}")
    signal.signal(signal.SIGTERM, stop)
    # A closed terminal hangs up only on us (the services have sessions of their own).
    signal.signal(signal.SIGHUP, stop)
    try:
        for service in services:
            service.start(log_dir, env, PROJECT_ROOT, verbose)
        console.print(f"starting the services; their logs: {log_dir}")
        # Superset provisions (migrations, bundle import) before it listens: the slowest.
        deadline = time.monotonic() + 240
        waiting = [webserver_socket, DAGSTER_PORT, COLLECTOR_PORT, SUPERSET_PORT]
        while waiting and time.monotonic() < deadline:
            if any(s.proc.poll() is not None for s in services):
                break
            waiting = [where for where in waiting if not _listening(where)]
            time.sleep(0.5)
        if all(s.proc.poll() is None for s in services):
            _print_urls(ui_password=ui_password)
            console.print("services running; one line per pipeline run below; Ctrl-C stops them")
            reporter.start()
        while all(s.proc.poll() is None for s in services):
            time.sleep(1)
    except KeyboardInterrupt:
        stop()
    for service in services:
        if service.proc is not None and service.proc.poll() is not None:
            err.print(f"[bold red]error:[/] {service.name} exited with status "
                      f"{service.proc.returncode}; stopping the other services. "
                      f"The end of {service.log_path}:")  # fmt: skip
            for line in service.tail():
                err.print(f"  {line}", markup=False)
    stop(status=1)


@app.command("dagster-ui-proxy", hidden=True)
def ui_proxy_cmd(
    port: int = typer.Option(DAGSTER_PORT, help="The public UI port."),
    upstream_socket: Path = typer.Option(..., help="The Dagster webserver's Unix socket."),
) -> None:
    """Serve the Dagster UI's login proxy (started by `siteline up`)."""
    from orchestration import ui_proxy

    ui_proxy.serve(os.environ.get("SITELINE_UI_BIND", "127.0.0.1"), port, str(upstream_socket))


@app.command("dagster-webserver", hidden=True)
def dagster_webserver_cmd(
    socket: Path = typer.Option(..., help="The Unix socket to serve on."),
    workspace: Path = typer.Option(PROJECT_ROOT / "workspace.yaml", "-w", "--workspace"),
) -> None:
    """Serve the Dagster UI's webserver on a Unix socket only (started by `siteline up`)."""
    from orchestration import dagster_webserver

    dagster_webserver.serve(socket, workspace)


@app.command("ui-password")
def ui_password_cmd() -> None:
    """Set a new generated password for the Dagster UI and print it (once)."""
    from orchestration import ui_proxy

    if os.environ.get(ui_proxy.PASSWORD_ENV):
        _fail(f"{ui_proxy.PASSWORD_ENV} is set: the UI uses that password; change it there")
    password = ui_proxy.reset_password()
    console.print(f"dagster UI login: {ui_proxy.USERNAME} / {password}  (shown once; restart "
                  "`siteline up` to use it)")  # fmt: skip


# -- doctor --------------------------------------------------------------------------------------


@app.command("doctor")
def doctor_cmd() -> None:
    """Check every component; print what is wrong and how to fix it (exit 1 if anything is)."""
    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        mark = "[green]ok[/]  " if ok else "[red]FAIL[/]"
        problems += 0 if ok else 1
        console.print(f"{mark} {what}: {detail}")

    report(sys.version_info[:2] == (3, 11), "python", sys.version.split()[0])
    report(True, "data directory", str(siteline_home()))
    try:
        from ingestion.core.sites import default_config_path, load_sites

        config = load_sites()
        report(True, "sites.yml", f"{default_config_path()}: {len(config.sites)} site(s)")
    except SitelineError as exc:
        report(False, "sites.yml", str(exc))

    warehouse_ok = False
    if is_external():
        label = "warehouse (WAREHOUSE_URL)"
    else:
        label = "warehouse (embedded)"
        wh = EmbeddedWarehouse()
        if not wh.is_initialised():
            report(False, label, "not initialised — run `siteline warehouse start`")
        elif not wh.is_running():
            report(False, label, "stopped — run `siteline warehouse start`")
    if is_external() or EmbeddedWarehouse().is_running():
        try:
            version = server_version(warehouse_url())
            report(True, label, f"PostgreSQL {version} at {mask_url(warehouse_url())}")
            warehouse_ok = True
        except SitelineError as exc:
            report(False, label, str(exc))

    try:
        from orchestration.defs.models.project import ensure_manifest
        from orchestration.runtime import configure_environment

        configure_environment()
        report(True, "dbt project", f"manifest {ensure_manifest()}")
    except SitelineError as exc:
        report(False, "dbt project", str(exc))

    if warehouse_ok:
        from ingestion.core.warehouse import dagster_storage_url

        try:
            with connect(dagster_storage_url()) as conn:
                conn.execute("select 1")
            report(True, "dagster storage", mask_url(dagster_storage_url()))
        except SitelineError as exc:
            report(False, "dagster storage", str(exc))
        with connect(warehouse_url()) as conn:
            for table in ("raw_collector.events", "web.fct_page_views"):
                exists = conn.execute("select to_regclass(%s)", (table,)).fetchone()[0]
                if exists:
                    n = conn.execute(f"select count(*) from {table}").fetchone()[0]
                    report(True, table, f"{n:,} rows")
                else:
                    report(False, table, "missing — run `siteline run` (or `siteline demo`)")
    from orchestration.superset import DEFAULT_PORT as SUPERSET_PORT

    for name, port in (("dagster UI", DAGSTER_PORT), ("collector", COLLECTOR_PORT),
                       ("superset", SUPERSET_PORT)):  # fmt: skip
        up = not _port_free(port)
        console.print(
            f"{'[green]ok[/]  ' if up else '[yellow]--[/]  '} {name}: "
            + (f"http://127.0.0.1:{port}" if up else "not running (`siteline up`)")
        )
    if problems:
        err.print(f"[red]{problems} problem(s) found[/]")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")


if __name__ == "__main__":
    main()
