"""The delivery side's commands, for ``orchestration/cli.py`` to register:

    siteline mail-sink                 the demo's SMTP sink (mails -> $SITELINE_HOME/mail)
    siteline alerts test-notify NAME   a test message through a contact point, now
    siteline alerts deliver            send what the outbox holds that is due (retries too)

``register(app, alerts_app)`` adds them (``alerts_app``: the ``siteline alerts`` group; None
adds only ``mail-sink``). Each command does its work through the outbox's functions and
prints what they return.
"""

from __future__ import annotations

import typer
from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def mail_sink_cmd(
    port: int = typer.Option(None, help="Loopback port (default 2525, SITELINE_MAIL_SINK_PORT)."),
) -> None:
    """Run the demo's mail sink: an SMTP server on 127.0.0.1 that keeps each mail as an .eml
    file under $SITELINE_HOME/mail (point an email contact point at smtp_port 2525)."""
    from ingestion.core.settings import settings
    from orchestration.alerts import mail_sink

    mail_sink.serve(port or settings().mail_sink_port or 2525, say=console.print)


def _connection():
    from ingestion.core.warehouse import connect
    from orchestration.alerts.store import ensure_schema
    from orchestration.runtime import prepare

    conn = connect(prepare(warehouse="ready"), autocommit=True)
    ensure_schema(conn)
    return conn


def _print(report) -> None:
    for attempt in report.attempts:
        mark = "[green]sent[/]" if attempt.ok else f"[red]{attempt.status}[/]"
        line = f"notification {attempt.notification_id} -> {attempt.contact_point}: {mark}"
        line += f" ({attempt.duration_ms:,.0f} ms)" if attempt.ok else f": {attempt.error}"
        console.print(line)
    console.print(report.summary())


def test_notify_cmd(
    contact_point: str = typer.Argument(..., help="A contact point of sites.yml."),
) -> None:
    """Send a test message through a contact point (by the outbox; recorded like others)."""
    from ingestion.core.sites import load_sites
    from orchestration.alerts.outbox import test_notify

    config = load_sites()
    with _connection() as conn:
        report = test_notify(conn, config, contact_point)
    _print(report)
    if not report.sent:
        raise typer.Exit(1)


def deliver_cmd() -> None:
    """Send the outbox's due notifications now (first sends and retries)."""
    from ingestion.core.sites import load_sites
    from orchestration.alerts.outbox import deliver

    config = load_sites()
    with _connection() as conn:
        report = deliver(conn, config)
    _print(report)


def register(app: typer.Typer, alerts_app: typer.Typer | None = None) -> None:
    """Add the commands to ``siteline`` (and its ``alerts`` group)."""
    app.command("mail-sink")(mail_sink_cmd)
    if alerts_app is not None:
        alerts_app.command("test-notify")(test_notify_cmd)
        alerts_app.command("deliver")(deliver_cmd)
