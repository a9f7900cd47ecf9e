"""The ``alerts`` schema: the alerting system of record, written by the evaluator and the
outbox, read by the CLI, Superset (through the ``alerts`` marts of the dbt project) and the
reports.

    rule_versions       every version of a rule's definition (its canonical JSON, hashed)
    instances           one row per rule x site (x value of ``by``): its current state
    evaluations         one row per instance and evaluated period: value, baseline, band,
                        verdict, state after it - the series Superset draws
    transitions         every state change, with the period and value that caused it
    evaluation_runs     one row per evaluation cycle (Dagster run, real-time tick, CLI)
    notifications       the outbox: one message per contact point and evaluation cycle
    notification_items  what a message tells (one instance's firing/resolved/repeat);
                        unique per contact point and dedupe key: a re-run adds nothing
    delivery_attempts   every attempt to send a notification, with its error
    silences            notifications held back for a rule (and site) until a time

Created idempotently by :func:`ensure_schema` (every evaluator and the CLI call it first).
"""

from __future__ import annotations

DDL = """
create schema if not exists alerts;

create table if not exists alerts.rule_versions (
    rule_id text not null,
    rule_version text not null,
    definition jsonb not null,
    first_seen_at timestamptz not null default now(),
    primary key (rule_id, rule_version)
);

create table if not exists alerts.instances (
    instance_id text primary key,
    rule_id text not null,
    site_id text not null,
    dimension text,
    dimension_value text,
    state text not null default 'normal',
    state_since timestamptz not null default now(),
    breaching_periods integer not null default 0,
    last_period_start timestamp,
    last_evaluated_at timestamptz,
    last_value double precision,
    last_notified_at timestamptz,
    waiting_for_data boolean not null default false,
    waiting_reason text,
    error text,
    rule_version text,
    check (state in ('normal', 'pending', 'firing', 'resolved', 'nodata', 'error'))
);

create table if not exists alerts.evaluation_runs (
    evaluation_id text primary key,
    kind text not null,
    started_at timestamptz not null default now(),
    finished_at timestamptz,
    rules integer,
    instances integer,
    errors integer,
    detail jsonb
);

create table if not exists alerts.evaluations (
    instance_id text not null,
    period_start timestamp not null,
    period_end timestamp not null,
    period_start_utc timestamptz not null,
    value double precision,
    volume double precision,
    baseline double precision,
    lower_bound double precision,
    upper_bound double precision,
    verdict text not null,
    detail text,
    state text not null,
    evaluation_id text not null,
    rule_version text not null,
    evaluated_at timestamptz not null default now(),
    primary key (instance_id, period_start),
    check (verdict in ('ok', 'breach', 'nodata', 'error'))
);

create table if not exists alerts.transitions (
    transition_id bigserial primary key,
    instance_id text not null,
    rule_id text not null,
    site_id text not null,
    dimension_value text,
    from_state text not null,
    to_state text not null,
    period_start timestamp,
    value double precision,
    baseline double precision,
    reason text,
    evaluation_id text not null,
    at timestamptz not null default now(),
    unique (instance_id, period_start, to_state)
);

create table if not exists alerts.notifications (
    notification_id bigserial primary key,
    contact_point text not null,
    evaluation_id text not null,
    subject text not null,
    status text not null default 'pending',
    attempts integer not null default 0,
    created_at timestamptz not null default now(),
    next_attempt_at timestamptz not null default now(),
    sent_at timestamptz,
    last_error text,
    -- recipients an earlier attempt reached (an SMS goes to each number alone): a retry
    -- skips them (the outbox, orchestration/alerts/outbox.py)
    delivered_to text[] not null default '{}',
    unique (contact_point, evaluation_id),
    check (status in ('pending', 'sending', 'sent', 'failed', 'silenced'))
);

create table if not exists alerts.notification_items (
    contact_point text not null,
    dedupe_key text not null,
    notification_id bigint not null references alerts.notifications,
    instance_id text not null,
    kind text not null,
    transition_id bigint,
    silence_id bigint,
    payload jsonb not null,
    primary key (contact_point, dedupe_key),
    check (kind in ('firing', 'resolved', 'repeat', 'test'))
);

create table if not exists alerts.delivery_attempts (
    notification_id bigint not null references alerts.notifications,
    attempt integer not null,
    attempted_at timestamptz not null default now(),
    ok boolean not null,
    error text,
    duration_ms double precision,
    primary key (notification_id, attempt)
);

-- what the deliverers ask every few seconds, and what history joins: indexed, as the outbox
-- only grows
create index if not exists notifications__due on alerts.notifications (next_attempt_at)
    where status in ('pending', 'sending');
create index if not exists notification_items__notification
    on alerts.notification_items (notification_id);
create index if not exists notification_items__transition
    on alerts.notification_items (transition_id) where transition_id is not null;
create index if not exists transitions__rule_at on alerts.transitions (rule_id, at);

create table if not exists alerts.silences (
    silence_id bigserial primary key,
    rule_id text not null,
    site_id text,
    starts_at timestamptz not null default now(),
    ends_at timestamptz not null,
    reason text not null,
    created_by text,
    created_at timestamptz not null default now(),
    check (ends_at > starts_at)
);
"""


def ensure_schema(conn) -> None:
    """Create the ``alerts`` schema and its tables when missing (idempotent; one transaction
    under an advisory lock, so two evaluators starting together do not race)."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('siteline.alerts.schema'))")
        conn.execute(DDL)
