"""``siteline alerts ...``: list the rules and their instances, check a rule (a dry run that
prints value, baseline and verdict), backtest it, read the history, silence it, evaluate now
(``test-notify`` and ``deliver`` are the outbox's: orchestration/alerts/cli_delivery.py)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import UTC, datetime

import typer
from rich.console import Console

from ingestion.core.alert_config import parse_duration
from ingestion.core.errors import SitelineError
from ingestion.core.metrics import METRICS

console = Console(highlight=False, soft_wrap=True)
app = typer.Typer(help="Business alerts: KPI rules from sites.yml (docs/alerts.md).")


@contextmanager
def _warehouse():
    from ingestion.core.sites import load_sites
    from ingestion.core.warehouse import connect
    from orchestration.alerts.store import ensure_schema
    from orchestration.runtime import prepare

    url = prepare(warehouse="ready")
    config = load_sites()
    with connect(url, autocommit=True) as conn:
        ensure_schema(conn)
        yield conn, config


def _at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise SitelineError(
            f"--at: '{value}' is not a time (write e.g. 2026-12-07T09:00 or 2026-12-07T09:00+01:00)"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _rule(config, rule_id: str):
    try:
        return config.alerts.rule(rule_id)
    except KeyError as exc:
        raise SitelineError(exc.args[0]) from None


@app.command("list")
def list_cmd() -> None:
    """Every rule, its sites, and each instance's state (waiting for data, or the error)."""
    with _warehouse() as (conn, config):
        rows = conn.execute(
            "select rule_id, instance_id, state, state_since, last_period_start, last_value,"
            " waiting_for_data, waiting_reason, error from alerts.instances"
            " order by rule_id, instance_id"
        ).fetchall()
        by_rule: dict[str, list] = {}
        for row in rows:
            by_rule.setdefault(row[0], []).append(row)
        silenced = {
            r[0]: r[1]
            for r in conn.execute(
                "select rule_id, max(ends_at) from alerts.silences where ends_at > now()"
                " group by rule_id"
            ).fetchall()
        }
        for rule in config.alerts.rules:
            m = METRICS[rule.metric]
            when = f"window {rule.window // 60}m" if m.realtime else f"per {rule.grain}"
            sites = "all sites" if rule.sites == "all" else ", ".join(rule.sites)
            flags = "" if rule.enabled else " (disabled)"
            if rule.id in silenced:
                flags += f" (silenced until {silenced[rule.id]:%Y-%m-%d %H:%M %Z})"
            console.print(
                f"{rule.id}{flags}: {m.label} {when}, {rule.condition.type}, {rule.severity},"
                f" {sites} -> {', '.join(rule.contact_points) or 'no contact point'}"
            )
            for row in by_rule.get(rule.id, []):
                _, iid, state, since, period, value, waiting, why, error = row
                line = f"  {iid}: {state} since {since:%Y-%m-%d %H:%M}"
                if period is not None:
                    line += f", last period {period:%Y-%m-%d %H:%M} value {value}"
                if waiting:
                    line += f"; waiting for data: {why}"
                if error:
                    line += f"; error: {error}"
                console.print(line, markup=False)


@app.command("check")
def check_cmd(
    rule_id: str = typer.Argument(None, help="A rule id (default: every rule)."),
    at: str = typer.Option(None, "--at", help="Evaluate as if it were this time (ISO 8601)."),
) -> None:
    """A dry run: the latest complete period's value, baseline and verdict (writes nothing,
    notifies no one); says when a period waits for data, and why."""
    from orchestration.alerts.evaluate import run_cycle

    with _warehouse() as (conn, config):
        if rule_id:
            _rule(config, rule_id)
        for rule in config.alerts.rules:
            if METRICS[rule.metric].realtime and rule_id in (None, rule.id):
                console.print(
                    f"{rule.id}: a real-time rule, judged every few seconds by the alerts-live "
                    "service of `siteline up` on the engine's windows; its state: "
                    "`siteline alerts list`",
                    markup=False,
                )
        result = run_cycle(
            conn, config, now=_at(at), rule_ids=[rule_id] if rule_id else None, dry_run=True,
            kind="check",
        )  # fmt: skip
    for outcome in result.outcomes:
        for line in outcome.lines:
            console.print(line, markup=False)
        if outcome.error:
            console.print(f"{outcome.rule_id}: error: {outcome.error}", markup=False)
        elif not outcome.lines:
            console.print(f"{outcome.rule_id}: no complete period to evaluate", markup=False)
    if result.errors:
        raise typer.Exit(1)


@app.command("evaluate")
def evaluate_cmd(
    at: str = typer.Option(None, "--at", help="Evaluate as if it were this time (ISO 8601)."),
    rule_id: list[str] = typer.Option(None, "--rule", help="Only these rules."),
    backfill: str = typer.Option(
        None, "--backfill", help="New instances start this far back, e.g. 7d (and notify)."
    ),
) -> None:
    """Evaluate the rules now (what Dagster's sensor runs after the marts are built): store
    the states and notify."""
    from datetime import timedelta

    from orchestration.alerts.evaluate import run_cycle

    try:
        since = None if backfill is None else timedelta(seconds=parse_duration(backfill))
    except ValueError as exc:
        raise SitelineError(f"--backfill: {exc}") from None
    with _warehouse() as (conn, config):
        result = run_cycle(conn, config, now=_at(at), rule_ids=rule_id or None, kind="cli",
                           backfill=since)  # fmt: skip
    for outcome in result.outcomes:
        states = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.states.items()))
        line = f"{outcome.rule_id}: {outcome.periods} periods evaluated; {states or 'no instance'}"
        for site, why in outcome.waiting.items():
            line += f"; {site} waiting for data: {why}"
        if outcome.error:
            line += f"; error: {outcome.error}"
        console.print(line, markup=False)
    console.print(f"{len(result.news)} news queued in the outbox")
    if result.errors:
        raise typer.Exit(1)


@app.command("backtest")
def backtest_cmd(
    rule_id: str = typer.Argument(..., help="A rule id."),
    days: int = typer.Option(90, "--days", min=1, max=3660, help="Days to replay."),
    at: str = typer.Option(None, "--at", help="Replay up to this time (ISO 8601)."),
) -> None:
    """What the rule would have fired over the last DAYS days (nothing is written or sent)."""
    from orchestration.alerts.backtest import backtest
    from orchestration.alerts.series import SeriesError

    with _warehouse() as (conn, config):
        rule = _rule(config, rule_id)
        if METRICS[rule.metric].realtime:
            raise SitelineError(
                f"{rule_id} is a real-time rule: its windows live in the engine, not in the "
                "marts, so there is no history to replay"
            )
        try:
            result = backtest(conn, config, rule, days=days, now=_at(at))
        except SeriesError as exc:
            raise SitelineError(str(exc)) from None
    console.print(
        f"{rule_id}: {result.periods} periods replayed, {result.breaches} breaching,"
        f" {len(result.episodes)} alerts would have fired"
    )
    for e in result.episodes:
        until = f"resolved {e.resolved:%Y-%m-%d %H:%M}" if e.resolved else "still firing"
        console.print(f"  {e.instance_id}: fired {e.fired:%Y-%m-%d %H:%M}, {until}: {e.detail}",
                      markup=False)  # fmt: skip


@app.command("history")
def history_cmd(
    rule_id: str = typer.Argument(None, help="Only this rule."),
    limit: int = typer.Option(50, "--limit", min=1, help="Most recent transitions to show."),
) -> None:
    """State transitions (newest first) and what was sent for them."""
    with _warehouse() as (conn, _):
        rows = conn.execute(
            "select t.at, t.instance_id, t.from_state, t.to_state, t.period_start, t.value,"
            " t.reason, (select string_agg(i.contact_point || ':' || n.status, ', ')"
            "   from alerts.notification_items as i join alerts.notifications as n"
            "   using (notification_id) where i.transition_id = t.transition_id)"
            " from alerts.transitions as t where %(rule)s::text is null or t.rule_id = %(rule)s"
            " order by t.at desc, t.transition_id desc limit %(limit)s",
            {"rule": rule_id, "limit": limit},
        ).fetchall()
    for at, iid, before, after, period, value, reason, sent in rows:
        period_text = f" period {period:%Y-%m-%d %H:%M}" if period else ""
        console.print(
            f"{at:%Y-%m-%d %H:%M:%S} {iid}: {before} -> {after}{period_text} value {value}:"
            f" {reason}" + (f" [{sent}]" if sent else ""),
            markup=False,
        )


@app.command("silences")
def silences_cmd() -> None:
    """The silences in force (and those to come), with their ids."""
    with _warehouse() as (conn, _):
        rows = conn.execute(
            "select silence_id, rule_id, site_id, starts_at, ends_at, reason, created_by"
            " from alerts.silences where ends_at > now() order by starts_at, silence_id"
        ).fetchall()
    if not rows:
        console.print("no silence in force")
    for silence_id, rule_id, site, starts, ends, reason, who in rows:
        console.print(
            f"silence {silence_id}: {rule_id}{' on ' + site if site else ''} from "
            f"{starts:%Y-%m-%d %H:%M %Z} until {ends:%Y-%m-%d %H:%M %Z} by {who}: {reason}",
            markup=False,
        )


@app.command("silence")
def silence_cmd(
    rule_id: str = typer.Argument(None, help="The rule to silence."),
    duration: str = typer.Option(None, "--for", help="How long, e.g. 30m, 2h, 1d."),
    reason: str = typer.Option(None, "--reason", help="Why (stored and shown)."),
    site: str = typer.Option(None, "--site", help="Only this site's instances."),
    end: int = typer.Option(None, "--end", help="End the silence with this id now."),
) -> None:
    """Hold back the rule's notifications for a while (states are still evaluated and
    stored); `--end ID` ends one (`siteline alerts silences` lists them)."""
    from orchestration.alerts import outbox

    if end is not None:
        with _warehouse() as (conn, _):
            ended = outbox.end_silence(conn, end)
        if not ended:
            raise SitelineError(f"--end: no silence {end} in force (siteline alerts silences)")
        console.print(f"silence {end} ended")
        return
    if not (rule_id and duration and reason):
        raise SitelineError("give RULE, --for and --reason (or --end ID)")
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise SitelineError(f"--for: {exc}") from None
    if seconds <= 0:
        raise SitelineError("--for: give a positive duration, e.g. 2h")
    with _warehouse() as (conn, config):
        _rule(config, rule_id)
        if site is not None:
            config.site(site)
        silence_id = outbox.add_silence(conn, rule_id, site, seconds, reason, _who())
        ends = conn.execute(
            "select ends_at from alerts.silences where silence_id = %s", (silence_id,)
        ).fetchone()[0]
    console.print(f"silence {silence_id}: {rule_id}{' on ' + site if site else ''} until {ends}")


def _who() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name (a container): the silence is still recorded
        return "unknown"
