{#- Every unified event with the visit (session) it belongs to. Incremental and correct
    under late data, in the manner of the Snowplow web packages. The query has two parts:

    * The rows of this run (`batch`). A run that sessionises everything (`whole`, decided
      below) reads the whole unified stream, int_events_unified. Any other reads the rows
      of the dlt loads it has not read yet (by load id: intermediate.loads_read,
      macros/sessionised_configs.sql), decides again which log hits tracker page views
      supersede wherever those rows can change it (a new view may take a hit, or a closer
      one, releasing a hit for another view), and for every device (tracker visitor id, or
      keyed hash of IP + user agent for log hits) with a changed row re-reads its events
      from the start of the inactivity-delimited run that holds its earliest change. Those
      steps read this model's own table, so they are a macro, not a model of their own:
      macros/sessionisation/rows_of_this_run.sql.
    * The visit rules, in this file (`eligible` .. `final`). A visit ends after the site's
      inactivity timeout, at local midnight when the site asks, and when a page view brings
      a different campaign or external referrer than the visit's previous ones (optional);
      a visit longer than max_session_hours is cut into pieces of that length (bot guard).
      Superseded log hits and late events keep a null session_id.

    An incremental run replaces the rows it changes (delete+insert on event_id), stamped with
    the run's time (sessionised_at), except re-read rows whose visit did not change: the
    models above rebuild the devices it logs (int_visitors_changed_this_run).
    `dbt build --full-refresh` gives the same rows as any sequence of incremental runs. -#}
{#- what unified_events() reads in the incremental branch, declared to dbt's parser (only
    there: a unit test gives the full branch's inputs alone) -#}
{%- if not execute %}
{%- do ref('stg_collector__events') %}{% do ref('stg_logfiles__hits') %}
{%- do ref('stg_collector__loads') %}{% do ref('stg_logfiles__loads') %}
{%- do ref('stg_config__campaign_parameters') %}{% do ref('referrer_hosts') %}
{%- endif %}
{#- Built whole - the full query, replacing every row (delete+insert) - when the run's plan
    says so (int_incremental_this_run.whole_because): e.g. when the configuration read here
    (visit rules, campaign parameters, referrer classes) changed since the last run, so the
    history is sessionised again under the new rules; or when it has recorded no load it read
    (whole_until_loads_recorded: a table built before loads were recorded by id). -#}
{%- set whole = built_whole() %}
{{ config(
    materialized='incremental',
    unique_key='event_id',
    incremental_strategy='delete+insert',
    on_schema_change='append_new_columns',
    indexes=[
        {'columns': ['event_id'], 'unique': True},
        {'columns': ['site_id', 'device_key', 'gap_started_at']},
        {'columns': ['site_id', 'page_path', 'occurred_at']},
        {'columns': ['sessionised_at']},
    ],
    meta={
        'scope': 'loads',
        'configs': ['stg_config__sites', 'stg_config__campaign_parameters', 'referrer_hosts'],
        'whole_until_loads_recorded': true,
    },
    pre_hook="{{ sessionised_start() }}",
    post_hook="{{ sessionised_done() }}",
) }}

with

sites as (

    select * from {{ ref('stg_config__sites') }}

),

{% if whole %}

batch as (

    -- the whole unified stream, sessionised again
    select {{ unified_columns() }} from {{ ref('int_events_unified') }}

),

{% else %}

-- The rows of this run, as CTEs ending in `batch`: the new rows of the loads not read
-- yet, the log hits whose superseding they change, and the rows re-read from each
-- changed device's restart (macros/sessionisation/rows_of_this_run.sql).
{{ rows_of_this_run() }},

{% endif %}

eligible as (

    -- Every row goes through the visit rules with all of its columns: one sort, and no
    -- copy of the stream nor join back (at 10M events such a copy is tens of GB on disk).
    -- Superseded log hits and late events go through in partitions of their own
    -- (is_held_out) and come out without a visit.
    select
        {{ unified_columns('batch.') }},
        {%- if not whole %}
        -- a re-read row's visit as it was (null for a changed row), for final
        batch.previous_session_id,
        batch.previous_gap_started_at,
        batch.previous_session_started_at,
        {%- endif %}
        batch.is_superseded or batch.is_late as is_held_out,
        sites.inactivity_timeout,
        sites.split_at_midnight,
        sites.new_session_on_campaign_change,
        sites.max_session_length,
        (batch.occurred_at at time zone sites.site_timezone)::date as local_date,
        case
            when batch.event_type <> 'page_view' then null
            -- the fields as a JSON array: a field left out stays in its place as null
            -- (concat_ws skipped nulls: source x and medium x were the same campaign)
            when coalesce(batch.campaign_source, batch.campaign_medium, batch.campaign_name) is not null
                then 'campaign|' || json_build_array(
                    batch.campaign_source, batch.campaign_medium, batch.campaign_name
                )::text
            when batch.referrer_medium <> 'internal' then 'referrer|' || batch.referrer_host
        end as touch_key
    from batch
    inner join sites on batch.site_id = sites.site_id

),

-- The visit rules in one sort: every step below is a window over the same order (device,
-- time, event id), so PostgreSQL sorts the rows once and streams them through the steps.
-- "The latest X before this row" is a running max over a key that only grows along that
-- order (the run or visit number, zero-padded, then the value).

gaps as (

    select
        *,
        case
            when previous_at is null then 1
            when occurred_at - previous_at > inactivity_timeout then 1
            when split_at_midnight and local_date <> previous_local_date then 1
            else 0
        end as is_gap_start
    from (
        select
            eligible.*,
            lag(eligible.occurred_at) over device_time as previous_at,
            lag(eligible.local_date) over device_time as previous_local_date
        from eligible
        window device_time as (
            partition by device_key, site_id, is_held_out order by occurred_at, event_id
        )
    ) as ordered

),

gap_runs as (

    -- gap_run numbers the inactivity-delimited runs of a device; gap_started_at is the
    -- start of the row's run; touch_number counts the touches so far
    select
        *,
        sum(is_gap_start) over device_time as gap_run,
        max(case when is_gap_start = 1 then occurred_at end) over device_time as gap_started_at,
        count(touch_key) over device_time as touch_number
    from gaps
    window device_time as (
        partition by device_key, site_id, is_held_out order by occurred_at, event_id
        rows between unbounded preceding and current row
    )

),

earlier_touches as (

    -- the gap run of the latest earlier page view, and the latest earlier touch (campaign or
    -- external referrer of a page view) with its gap run
    select
        *,
        max(case when event_type = 'page_view' then gap_run end) over before_row
            as previous_page_view_run,
        max(case when touch_key is not null then gap_run end) over before_row
            as previous_touch_run,
        max(case when touch_key is not null then lpad(touch_number::text, 12, '0') || touch_key end)
            over before_row as previous_touch
    from gap_runs
    window before_row as (
        partition by device_key, site_id, is_held_out order by occurred_at, event_id
        rows between unbounded preceding and 1 preceding
    )

),

splits as (

    select
        *,
        case
            when is_gap_start = 1 then 1
            -- a page view that is not its run's first, bringing another touch than the
            -- run's previous one (none counts as another)
            when
                new_session_on_campaign_change
                and touch_key is not null
                and previous_page_view_run = gap_run
                and case
                    when previous_touch_run = gap_run then substr(previous_touch, 13)
                    else ''
                end <> touch_key
                then 1
            else 0
        end as is_session_start
    from earlier_touches

),

numbered as (

    select
        *,
        sum(is_session_start) over device_time as session_number,
        max(case when is_session_start = 1 then occurred_at end) over device_time as visit_started_at
    from splits
    window device_time as (
        partition by device_key, site_id, is_held_out order by occurred_at, event_id
        rows between unbounded preceding and current row
    )

),

capped as (

    -- a visit longer than max_session_length is cut into pieces of that length
    select
        *,
        floor(
            extract(epoch from occurred_at - visit_started_at) / extract(epoch from max_session_length)
        )::bigint as session_piece
    from numbered

),

pieces as (

    select
        *,
        case
            when is_session_start = 1 then 1
            when session_piece <> lag(session_piece) over device_time then 1
            else 0
        end as is_piece_start
    from capped
    window device_time as (
        partition by device_key, site_id, is_held_out order by occurred_at, event_id
    )

),

assignments as (

    -- a visit (piece) is named after its first event and starts at its time
    select
        *,
        md5(site_id || '|' || device_key || '|' || substr(max(
            case
                when is_piece_start = 1
                    then
                        lpad(session_number::text, 12, '0') || lpad(session_piece::text, 12, '0')
                        || event_id
            end
        ) over device_time, 25)) as assigned_session_id,
        max(case when is_piece_start = 1 then occurred_at end) over device_time as assigned_started_at
    from pieces
    window device_time as (
        partition by device_key, site_id, is_held_out order by occurred_at, event_id
        rows between unbounded preceding and current row
    )

),

final as (

    select
        {{ unified_columns() }},
        case when not is_held_out then gap_started_at end as gap_started_at,
        case when not is_held_out then assigned_session_id end as session_id,
        case when not is_held_out then assigned_started_at end as session_started_at,
        now() as sessionised_at
    from assignments
    {%- if not whole %}
    -- a row re-read from the restart whose visit did not change stays as it is (not deleted
    -- and written again: most rows of a device that only got newer events)
    where
        previous_session_id is null
        or is_held_out
        or previous_session_id <> assigned_session_id
        or previous_gap_started_at is distinct from gap_started_at
        or previous_session_started_at is distinct from assigned_started_at
    {%- endif %}

)

select * from final
