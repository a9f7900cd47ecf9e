-- noqa: disable=LT02
{#- Every unified event with the visit (session) it belongs to. Incremental and correct
    under late data, in the manner of the Snowplow web packages:

    1. new rows = rows of the dlt loads it has not read yet (by load id: intermediate.
       loads_read, macros/sessionised_configs.sql), plus log hits whose
       superseded flag the new rows change (either way: a new tracker page view may take a
       hit, or a closer one, releasing a hit for another view);
    2. for every device (tracker visitor id, or keyed hash of IP + user agent for log hits)
       with new rows, re-read its events from the start of the inactivity-delimited run
       that holds its earliest new row, and sessionise them again with the new rows;
    3. replace those rows (delete+insert on event_id), stamped with the run's time
       (sessionised_at), except re-read rows whose visit did not change: the models above
       rebuild the devices it logs (int_visitors_changed_this_run).

    A visit ends after the site's inactivity timeout, at local midnight when the site asks,
    and when a page view brings a different campaign or external referrer than the visit's
    previous ones (optional); a visit longer than max_session_hours is cut into pieces of
    that length (bot guard). Superseded log hits and late events keep a null session_id.
    `dbt build --full-refresh` gives the same rows as any sequence of incremental runs. -#}
{#- what unified_events() reads in the incremental branch, declared to dbt's parser (only
    there: a unit test gives the full branch's inputs alone) -#}
{%- if not execute %}
    {%- do ref('stg_collector__events') %}{% do ref('stg_logfiles__hits') %}
    {%- do ref('stg_collector__loads') %}{% do ref('stg_logfiles__loads') %}
    {%- do ref('stg_config__campaign_parameters') %}{% do ref('referrer_hosts') %}
{%- endif %}
{#- When the configuration read here (visit rules, campaign parameters, referrer classes)
    changed since the last run, the history is sessionised again under the new rules: the
    full query, replacing every row (delete+insert). -#}
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
    },
    pre_hook="{{ sessionised_start() }}",
    post_hook="{{ sessionised_done() }}",
) }}

with

sites as (

    select * from {{ ref('stg_config__sites') }}

),

{% if not whole %}

unified as (

    -- The stream's rows of the loads not read yet (copied and analyzed when the model
    -- compiles), rather than the whole stream computed.
    {{ unified_events(new_rows=sessionised_new_rows()) }}

),

new_rows as (

    -- none of these loads' rows is here yet (sessionised_new_rows)
    select * from unified

),

-- Which log hits are superseded (tracker page views and log hits matched one to one, closest
-- pairs first, as in int_events_unified), decided again wherever new rows can change it.
-- One match depends on every pair linked to it by a chain of possible pairs (a view taken
-- by a closer hit leaves its other hit to the next view): so the new views and hits are
-- taken with every view and hit already here that such a chain links to them, found one
-- link at a time until no new one appears, and matched together. The rows already here are
-- probed one request at a time (lateral), through the (site_id, page_path, occurred_at)
-- index.

new_requests as (

    select
        'view' as request_kind,
        {{ request_columns('n') }}
    from new_rows as n
    where n.event_source = 'tracker' and n.event_type = 'page_view'
    union all
    select
        'hit' as request_kind,
        {{ request_columns('n') }}
    from new_rows as n
    where n.event_source = 'logfile'

),

linked_requests as (

    select * from (
        with recursive linked as (
            select * from new_requests
            union
            select found.*
            from linked
            cross join lateral (
                select
                    'hit' as request_kind,
                    r.*
                from ({{ probe_requests(this, 'hits', 'linked') }}) as r
                where linked.request_kind = 'view'
                union all
                select
                    'view' as request_kind,
                    r.*
                from ({{ probe_requests(this, 'views', 'linked') }}) as r
                where linked.request_kind = 'hit'
            ) as found
            where not exists (
                select 1 from new_rows as n
                where n.event_id = found.event_id
            )
        )

        select * from linked
    ) as linked

),

linked_pairs as (

    -- the two ways of being the same device, each a join of its own (nearby_requests)
    select
        v.event_id as view_id,
        h.event_id as hit_id,
        abs(extract(epoch from v.occurred_at - h.occurred_at)) as distance
    from linked_requests as v
    inner join linked_requests as h
        on
            {{ same_request('v', 'h') }}
            and v.network_key = h.network_key
    where v.request_kind = 'view' and h.request_kind = 'hit'
    union all
    select
        v.event_id as view_id,
        h.event_id as hit_id,
        abs(extract(epoch from v.occurred_at - h.occurred_at)) as distance
    from linked_requests as v
    inner join linked_requests as h
        on
            {{ same_request('v', 'h') }}
            and v.network_key is null
            and v.ip_address = h.ip_address
            and v.user_agent = h.user_agent
    where v.request_kind = 'view' and h.request_kind = 'hit'

),

choices as (

    select
        closest.hit_id as event_id,
        closest.view_id
    from {{ closest_pairs('linked_pairs') }} as closest

),

decided as (

    select
        linked_requests.event_id,
        choices.view_id is not null as is_superseded,
        choices.view_id as matched_view_id
    from linked_requests
    left join choices on linked_requests.event_id = choices.event_id
    where linked_requests.request_kind = 'hit'

),

flipped as (

    -- already sessionised hits whose match changes (superseded or not, or by another view)
    select
        {{ unified_columns('hit.') | replace('hit.is_superseded', 'decided.is_superseded')
            | replace('hit.matched_view_id', 'decided.matched_view_id') }}
    from {{ this }} as hit
    inner join decided on hit.event_id = decided.event_id
    where
        hit.matched_view_id is distinct from decided.matched_view_id
        and not exists (
            select 1 from new_rows as n
            where n.event_id = hit.event_id
        )

),

changed as (

    select
        {{ unified_columns('n.') | replace(
            'n.is_superseded',
            "case when n.event_source = 'logfile' then coalesce(decided.is_superseded, false)
            else n.is_superseded end as is_superseded"
        ) | replace(
            'n.matched_view_id',
            "case when n.event_source = 'logfile' then decided.matched_view_id
            else n.matched_view_id end as matched_view_id"
        ) }}
    from new_rows as n
    left join decided on n.event_id = decided.event_id
    union all
    select {{ unified_columns() }} from flipped

),

changed_devices as (

    -- A changed row may move an event in time: restart from its old place too.
    select
        changed.site_id,
        changed.device_key,
        min(least(changed.occurred_at, previous.occurred_at)) as first_changed_at
    -- by the event_id index, one row at a time (a fence: not flattened into a hash join), in
    -- the index's order (its leaf pages are read forward)
    from (
        select * from changed
        order by event_id
    ) as changed
    left join lateral (
        select p.occurred_at
        from {{ this }} as p
        where p.event_id = changed.event_id
        offset 0  -- noqa: AM09
    ) as previous on true
    group by changed.site_id, changed.device_key

),

restarts as (

    select
        changed_devices.site_id,
        changed_devices.device_key,
        coalesce((
            select max(done.gap_started_at)
            from {{ this }} as done
            where
                done.site_id = changed_devices.site_id
                and done.device_key = changed_devices.device_key
                and done.gap_started_at <= changed_devices.first_changed_at
        ), '-infinity'::timestamptz) as restart_at
    from (
        select * from changed_devices
        order by site_id, device_key
    ) as changed_devices

),

batch as (

    select
        *,
        null::text as previous_session_id,
        null::timestamptz as previous_gap_started_at,
        null::timestamptz as previous_session_started_at
    from changed
    union all
    -- rows sessionised before, re-read from the restart: with their visit as it was, so
    -- the rows whose visit stays as it was are not written again (final)
    select
        {{ unified_columns('done.') }},
        done.session_id,
        done.gap_started_at,
        done.session_started_at
    -- per device through the (site_id, device_key, gap_started_at) index, in its order;
    -- "offset 0" is a fence that keeps it a per-row subquery (flattened into a join, the
    -- planner may hash the whole table for a few thousand devices)
    from (
        select * from restarts
        order by site_id, device_key
    ) as restarts
    cross join lateral (
        select d.*
        from {{ this }} as d
        where
            d.site_id = restarts.site_id
            and d.device_key = restarts.device_key
            and d.occurred_at >= restarts.restart_at
            and d.session_id is not null
        offset 0  -- noqa: AM09
    ) as done
    where not exists (
        select 1 from changed
        where changed.event_id = done.event_id
    )

),

{% else %}

batch as (

    select {{ unified_columns() }} from {{ ref('int_events_unified') }}

),

{% endif %}

eligible as (

    -- Every row goes through the visit rules with all of its columns: one sort, and no
    -- copy of the stream nor join back (at 10M events such a copy is tens of GB on disk).
    -- Superseded log hits and late events go through in partitions of their own
    -- (is_held_out) and come out without a visit.
    select
        {{ unified_columns('batch.') }},
        {%- if not whole %}
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
                    then lpad(session_number::text, 12, '0') || lpad(session_piece::text, 12, '0')
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
