{#- The rows an incremental run of int_events_sessionised puts through the visit rules, as
    the CTEs `unified` .. `batch` of that model's query (a list of CTEs without a trailing
    comma, for the model's `with`; the model goes on from `batch`). They read the model's
    own table ({{ this }}: earlier matches, restart points, rows re-read), so they cannot be
    a model of their own: a model reading int_events_sessionised would be a cycle.

    1. new rows (`unified`, `new_rows`): the unified stream of the dlt loads the model has
       not read yet (sessionised_new_rows, macros/sessionised_configs.sql), without
       computing the whole stream;
    2. superseding decided again (`new_requests` .. `changed`): which log hits a tracker
       page view supersedes, matched again over the new views and hits and every view and
       hit already here that a chain of possible pairs links to them; `changed` = the new
       rows with their match, plus the hits already here whose match that changes;
    3. the devices to restart (`changed_devices`, `restarts`): for each device with a
       changed row, the start of the inactivity-delimited run that holds its earliest
       change, old place or new;
    4. `batch`: the changed rows, and the rows already sessionised from each restart on,
       with their visit as it was (previous_session_id, previous_gap_started_at,
       previous_session_started_at: null for changed rows), so the model writes again only
       the rows whose visit changes. -#}
{% macro rows_of_this_run() -%}

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
            cross join
                lateral (
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
    left join
        lateral (
            select p.occurred_at
            from {{ this }} as p
            where p.event_id = changed.event_id
            -- the fence: not paging, so sqlfluff's AM09 (offset without order by) is wrong here
            offset 0  -- noqa: AM09
        ) as previous
        on true
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
    -- the rows whose visit stays as it was are not written again (the model's final)
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
    cross join
        lateral (
            select d.*
            from {{ this }} as d
            where
                d.site_id = restarts.site_id
                and d.device_key = restarts.device_key
                and d.occurred_at >= restarts.restart_at
                and d.session_id is not null
            -- the fence: not paging, so sqlfluff's AM09 (offset without order by) is wrong here
            offset 0  -- noqa: AM09
        ) as done
    where not exists (
        select 1 from changed
        where changed.event_id = done.event_id
    )

)

{%- endmacro %}
