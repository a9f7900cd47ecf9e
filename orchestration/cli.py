"""The ``siteline`` command: each command reads its arguments, calls the one function of the
module that does the work, and prints what it returns.

``runtime.prepare`` makes the process ready once (the environment dlt, dbt and Dagster read;
the warehouse for the commands that need it). Expected failures (a :class:`SitelineError`)
print one line naming the problem and the fix and exit with status 1; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import typer
from rich.console import Console

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT, keep_data_private
from ingestion.core.settings import settings
from ingestion.core.warehouse import BI_ROLE, ensure_bi_reader, is_external, mask_url, warehouse_url
from orchestration.alerts.commands import app as alerts_app
from orchestration.demo import DEMO_DAYS, DEMO_SEED, DEMO_VISITS_PER_DAY, SEGMENT_EVENTS
from orchestration.runtime import prepare

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
app.add_typer(alerts_app, name="alerts")

_SITELINE = ".venv/bin/siteline"


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
    from orchestration.warehouse import ensure_warehouse

    url = ensure_warehouse()  # the command's own work, not the preparation of another
    console.print(f"warehouse running: {mask_url(url)}")


@warehouse_app.command("stop")
def warehouse_stop() -> None:
    """Stop the embedded warehouse."""
    from orchestration.warehouse import EmbeddedWarehouse

    if is_external():
        _fail("WAREHOUSE_URL is set: Siteline does not manage that server")
    stopped = EmbeddedWarehouse().stop()
    console.print("warehouse stopped" if stopped else "warehouse was not running")


@warehouse_app.command("status")
def warehouse_status() -> None:
    """Say whether the warehouse accepts connections (exit 1 when it does not)."""
    from orchestration.doctor import warehouse_status

    status = warehouse_status()
    if status.state in ("not initialised", "stopped"):
        _fail("embedded warehouse is not running — start it with `siteline warehouse start`")
    if not status.up:
        _fail(status.detail)
    console.print(f"{'external' if status.external else 'embedded'} warehouse up: {status.detail}")


@warehouse_app.command("url")
def warehouse_url_cmd(
    database: str = typer.Option(None, help="Another database on the same server."),
    masked: bool = typer.Option(False, help="Hide the password."),
    role: str = typer.Option(
        None, help="bi_reader: the read-only DSN for BI tools (the web, crm and alerts marts only)."
    ),
) -> None:
    """Print the warehouse DSN (with the password unless --masked)."""
    if role not in (None, BI_ROLE):
        raise SitelineError(f"unknown role '{role}'; the read-only role is {BI_ROLE}")
    url = warehouse_url(database)
    if role == BI_ROLE:
        prepare(warehouse="started")
        url = ensure_bi_reader(url)
    print(mask_url(url) if masked else url)


@warehouse_app.command("psql", context_settings={"allow_extra_args": True})
def warehouse_psql(ctx: typer.Context) -> None:
    """Open psql on the warehouse (extra arguments go to psql)."""
    prepare(warehouse="started")
    from orchestration.warehouse import exec_psql

    exec_psql(ctx.args)


@app.command("dbt", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def dbt_cmd(ctx: typer.Context) -> None:
    """Run dbt on the project with the warehouse's settings (e.g. `siteline dbt build -s
    fct_sessions+`, `siteline dbt build --full-refresh`); arguments go to dbt."""
    prepare(warehouse="started")
    from orchestration.dbt_paths import exec_dbt

    exec_dbt(ctx.args)


@app.command("docs")
def docs_cmd(
    port: int = typer.Option(8080, help="Port on 127.0.0.1."),
    generate_only: bool = typer.Option(False, help="Build the site and exit (prints its path)."),
) -> None:
    """Serve the dbt documentation (models, columns, lineage) on http://127.0.0.1:PORT."""
    prepare(warehouse="started")
    from orchestration.dbt_paths import exec_docs_server, generate_docs

    index = generate_docs()
    if generate_only:
        console.print(f"[bold]dbt docs[/] {index}")
        return
    console.print(f"[bold]dbt docs[/] http://127.0.0.1:{port}  (Ctrl-C stops)")
    exec_docs_server(port)


# -- pipeline ------------------------------------------------------------------------------------


def run_pipeline(selection: list[str] | None = None) -> bool:
    """Materialise every asset (or the selection) once, in-process, recorded in Dagster, and
    print a line per run (``orchestration.pipeline``); True when every run and check passed."""
    prepare(warehouse="ready")
    from orchestration.pipeline import run_assets

    return run_assets(selection, on_run=_print_run).ok


def _print_run(run) -> None:
    from orchestration.pipeline import run_log
    from orchestration.supervisor import run_line

    line = run_line(run.run_id, run.name, "success" if run.success else "failure", run.seconds,
                    len(run.materialised))  # fmt: skip
    passed = run.checks - len(run.failed_checks)
    console.print(f"{line}, {passed}/{run.checks} checks passed (log: {run_log()})", markup=False)
    for check in run.failed_checks:
        err.print(f"[red]check failed:[/] {check}")
    for step, message in run.failed_steps:
        err.print(f"[red]step failed:[/] {step}: {message}")


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
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ingestion.core.sites import load_sites
    from ingestion.logfiles.importer import import_logs

    load_sites().site(site)  # unknown site: a one-line error before the warehouse starts
    prepare(warehouse="ready")
    columns = TextColumn("[bold]{task.fields[step]}[/] {task.fields[lines]:,} lines")
    with Progress(SpinnerColumn(), columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("import", total=None, lines=0, step="reading")
        summary = import_logs(
            location, site, source=source, log_format=log_format, apache_format=apache_format,
            regex=regex, say=console.print,
            progress=lambda n: bar.update(task, lines=bar.tasks[0].fields["lines"] + n),
            read=lambda: bar.update(task, step="loading into the warehouse:"),
        )  # fmt: skip
        bar.update(task, step="imported")
    total, elapsed = summary.totals, summary.seconds
    console.print(f"[bold]{summary.files} file(s)[/], {total['bytes_read']:,} new bytes, "
                  f"{total['lines_read']:,} lines in {elapsed:.1f} s "
                  f"({total['lines_read'] / max(elapsed, 1e-9):,.0f} lines/s)")  # fmt: skip
    console.print(f"  loaded    {total['loaded']:>10,}  (bots flagged: {total['bots']:,})")
    console.print(f"  skipped   {total['skipped']:>10,}  (blank lines, comments, headers)")
    excluded = summary.excluded
    console.print(f"  excluded  {sum(excluded.values()):>10,}  {dict(excluded) or ''}")
    console.print(f"  rejected  {total['rejected']:>10,}  → raw_logfiles.rejected_lines")
    for reason, count in summary.rejected_reasons.most_common(5):
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
    seed: int = typer.Option(DEMO_SEED),
    start: str = typer.Option("2026-11-01", help="First day (site time zone)."),
) -> None:
    """Write deterministic demo traffic: tracker events, an access log and the ground truth."""
    from ingestion.demo_traffic.simulator import SimulationConfig, visits_for_events
    from ingestion.demo_traffic.writer import write_simulation

    if events:
        visits_per_day = visits_for_events(events, days)
    cfg = SimulationConfig(
        days=days, visits_per_day=visits_per_day, seed=seed, start=date.fromisoformat(start)
    )
    summary = write_simulation(cfg, out)
    console.print_json(data=summary["stats"])


@app.command("demo")
def demo_cmd(
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Start the services afterwards."),
    days: int = typer.Option(DEMO_DAYS, min=1, help="Days of demo traffic."),
    visits_per_day: int = typer.Option(DEMO_VISITS_PER_DAY, min=1),
    seed: int = typer.Option(DEMO_SEED, help="Seed of the simulator (same seed, same traffic)."),
    segment_events: int = typer.Option(
        SEGMENT_EVENTS, hidden=True, help="Events per landing segment."
    ),
    verbose: bool = typer.Option(
        False, "--verbose", help="Also copy every service's log lines to the terminal."
    ),
) -> None:
    """Warehouse, demo traffic, the whole pipeline, then the services (unless --no-serve)."""
    from orchestration.demo import run_demo

    result = run_demo(
        days, visits_per_day, seed, segment_events, on_warehouse=_print_warehouse,
        on_traffic=_print_traffic, on_run=_print_run,
    )  # fmt: skip
    if not result.ok:
        _fail("the pipeline run failed; open the run in the Dagster UI (`siteline up`) for details")
    console.print(f"[bold]web.fct_page_views[/] {result.page_views:,} rows")
    _print_alerts(result)
    if serve:
        _up(verbose)
    else:
        _print_urls(services=False)


def _print_alerts(result) -> None:
    console.print(f"[bold]alerts[/] {len(result.alerts)} fired over the demo's days "
                  "(docs/alerts.md; `siteline alerts history`):")  # fmt: skip
    for line in result.alerts:
        console.print(f"  {line}", markup=False)
    if result.mail_folder is not None:
        mails = sorted(result.mail_folder.glob("*.eml"))
        if mails:
            console.print(f"[bold]alert mails[/] {len(mails)} in {result.mail_folder}")


def _print_warehouse(url: str) -> None:
    console.print(f"[bold]warehouse[/] {mask_url(url)}")


def _print_traffic(summary: dict) -> None:
    stats = summary["stats"]
    verb = "reusing" if summary["reused"] else "generated"
    console.print(
        f"[bold]demo traffic[/] {verb}: {stats['visits']:,} visits, {stats['events']:,} tracker "
        f"events, {stats['log_lines']:,} log lines"
    )


# -- services ------------------------------------------------------------------------------------


@app.command("collector")
def collector_cmd(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(None, help="TCP port (default 8000, or SITELINE_COLLECTOR_PORT)."),
    workers: int = typer.Option(1, help="Worker processes (each needs its own landing writer)."),
) -> None:
    """Run the collection server (POST /collect, /t.js, /health) in the foreground."""
    from orchestration.supervisor import exec_collector

    exec_collector(host, port, workers)


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

    port = port or superset.default_port()
    prepare(warehouse="ready")
    superset.serve(host, port, say=console.print, announce=lambda: _print_superset(port))


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

    console.print(f"[bold]superset[/]   {superset.login(port)}")


def _print_live_api() -> None:
    from ingestion.core.sites import load_sites

    sites = [site for site in load_sites().sites if site.api_key_env]
    if not sites:
        return
    port = settings().collector_port
    console.print(
        f"[bold]real-time[/]  http://127.0.0.1:{port}/v1/active  "
        f"(API docs: http://127.0.0.1:{port}/docs; demo shop with a live panel: "
        f"http://127.0.0.1:{port}/demo/)"
    )
    for site in sites:
        generated = "" if os.environ.get(site.api_key_env) else "generated; "
        console.print(
            f"           site {site.id}: Authorization: Bearer $({_SITELINE} api-key {site.id})  "
            f"({generated}set {site.api_key_env})"
        )


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

        config = settings()
        if ui_password:
            login = f"{USERNAME} / {ui_password}  (generated, shown once; set {PASSWORD_ENV})"
        elif config.ui_password:
            login = f"{USERNAME} / ${PASSWORD_ENV}"
        else:
            login = f"{USERNAME} / the password shown at the first start; `siteline ui-password`"
        console.print(f"[bold]dagster[/]    http://127.0.0.1:{config.dagster_port}  ({login})")
        console.print(
            f"[bold]collector[/]  http://127.0.0.1:{config.collector_port}/collect  "
            f"(tracker: http://127.0.0.1:{config.collector_port}/t.js)"
        )
        _print_live_api()
        _print_superset(config.superset_port)


def _service_exited(message: str, log_tail: list[str]) -> None:
    err.print(f"[bold red]error:[/] {message}")
    for line in log_tail:
        err.print(f"  {line}", markup=False)


@app.command("up")
def up_cmd(
    verbose: bool = typer.Option(
        False, "--verbose", help="Also copy every service's log lines to the terminal."
    ),
) -> None:
    """Start every service in the foreground (Ctrl-C stops them): the Dagster UI (behind a
    login) and daemon, the collector, Superset. Their logs go to $SITELINE_HOME/logs."""
    prepare(warehouse="ready")
    _up(verbose)


def _up(verbose: bool) -> None:
    from orchestration import supervisor

    supervisor.up(
        verbose, say=console.print, failed=_service_exited,
        ready=lambda ui_password: _print_urls(ui_password=ui_password),
    )  # fmt: skip


@app.command("dagster-ui-proxy", hidden=True)
def ui_proxy_cmd(
    port: int = typer.Option(
        None, help="The public UI port (default 3000, or SITELINE_DAGSTER_PORT)."
    ),
    upstream_socket: Path = typer.Option(..., help="The Dagster webserver's Unix socket."),
) -> None:
    """Serve the Dagster UI's login proxy (started by `siteline up`)."""
    from orchestration import ui_proxy

    config = settings()
    ui_proxy.serve(config.ui_bind, port or config.dagster_port, str(upstream_socket))


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

    if settings().ui_password:
        _fail(f"{ui_proxy.PASSWORD_ENV} is set: the UI uses that password; change it there")
    password = ui_proxy.reset_password()
    console.print(f"dagster UI login: {ui_proxy.USERNAME} / {password}  (shown once; restart "
                  "`siteline up` to use it)")  # fmt: skip


# -- doctor --------------------------------------------------------------------------------------

_MARKS = {True: "[green]ok[/]  ", False: "[red]FAIL[/]", None: "[yellow]--[/]  "}


@app.command("doctor")
def doctor_cmd() -> None:
    """Check every component; print what is wrong and how to fix it (exit 1 if anything is)."""
    from orchestration.doctor import run_checks

    problems = 0
    for check in run_checks():
        problems += check.problem
        console.print(f"{_MARKS[check.ok]} {check.name}: {check.detail}")
    if problems:
        err.print(f"[red]{problems} problem(s) found[/]")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")


# -- alert delivery: `siteline mail-sink`, `alerts test-notify`, `alerts deliver` live in
# orchestration/alerts/cli_delivery.py -----------------------------------------------------

from orchestration.alerts.cli_delivery import register as _register_delivery  # noqa: E402

_register_delivery(app, alerts_app)

if __name__ == "__main__":
    main()
