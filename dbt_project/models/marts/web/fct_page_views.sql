-- One row per page view of a person (tracker page views, and log hits no tracker saw), with
-- its place in the visit, time on page, engaged time and page performance. Incremental by
-- visitor (int_visitors_changed_this_run). The visit's columns come from int_sessions and the identity
-- map, as fct_sessions has them, not from fct_sessions: this model, one of the longest, then
-- starts without waiting for the goal conversions and fct_sessions.
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
) }}

with

{%- set page_columns = [
    'site_id', 'device_key', 'event_source', 'page_url', 'page_host', 'page_path', 'page_query',
    'page_title', 'referrer_url', 'referrer_medium', 'http_status', 'dns_ms', 'connect_ms',
    'ttfb_ms', 'dom_interactive_ms', 'page_load_ms',
] %}

events as (

    -- Page views and heartbeats; a heartbeat brings only its time and engaged seconds
    -- through the sort below (its page columns are left null: half the rows, a third of
    -- the bytes sorted).
    select
        event_id,
        session_id,
        event_type,
        occurred_at,
        {%- for column in page_columns %}
        case when event_type = 'page_view' then {{ column }} end as {{ column }},
        {%- endfor %}
        engaged_seconds
    from {{ scoped_rows(ref('int_events_sessionised')) }}
    where session_id is not null and event_type in ('page_view', 'page_ping')

),

sessions as (

    -- visits of people, as in fct_sessions
    select * from {{ ref('int_sessions') }}
    where not is_bot

),

identities as (

    select * from {{ ref('int_identity_map') }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

timeline as (

    -- Page views and heartbeats of each visit in time order, a heartbeat after a page view
    -- of the same moment. A heartbeat measures engaged time on the page view before it:
    -- the running count of page views numbers them, the running sum of heartbeats is the
    -- engaged time so far.
    select
        *,
        event_type <> 'page_view' as is_ping,
        count(*) filter (where event_type = 'page_view') over visit_time as page_view_number,
        coalesce(sum(engaged_seconds) filter (where event_type = 'page_ping') over visit_time, 0)
            as engaged_so_far,
        coalesce(sum(engaged_seconds) filter (where event_type = 'page_ping') over visit, 0)
            as visit_engaged_seconds
    from events
    window
        visit_time as (
            partition by session_id order by occurred_at, event_type <> 'page_view', event_id
            rows between unbounded preceding and current row
        ),
        visit as (partition by session_id)

),

page_views as (

    -- The same order as the timeline's (one sort): a page view's engaged time is what the
    -- heartbeats added until the next page view, or until the visit's end.
    select
        *,
        lead(occurred_at) over visit_time as next_page_view_at,
        coalesce(lead(engaged_so_far) over visit_time, visit_engaged_seconds) - engaged_so_far
            as engaged_seconds_on_page
    from timeline
    where event_type = 'page_view'
    window visit_time as (partition by session_id order by occurred_at, is_ping, event_id)

),

final as (

    select
        page_views.event_id as page_view_id,
        page_views.site_id,
        page_views.session_id,
        page_views.device_key as visitor_id,
        coalesce(identities.user_id, sessions.visitor_id) as customer_key,
        page_views.event_source,
        page_views.occurred_at as viewed_at,
        (page_views.occurred_at at time zone sites.site_timezone)::date as viewed_date,
        page_views.page_url,
        page_views.page_host,
        page_views.page_path,
        page_views.page_query,
        {{ page_sk('page_views.site_id', 'page_views.page_path') }} as page_sk,
        page_views.page_title,
        page_views.referrer_url,
        page_views.referrer_medium,
        page_views.page_view_number,
        page_views.page_view_number = 1 as is_entry,
        page_views.next_page_view_at is null as is_exit,
        extract(epoch from page_views.next_page_view_at - page_views.occurred_at)::integer
            as time_on_page_seconds,
        page_views.engaged_seconds_on_page as engaged_seconds,
        page_views.http_status,
        page_views.dns_ms,
        page_views.connect_ms,
        page_views.ttfb_ms,
        page_views.dom_interactive_ms,
        page_views.page_load_ms,
        sessions.channel_id,
        {{ device_sk('sessions.device_type', 'sessions.browser', 'sessions.os') }} as device_sk,
        sessions.device_type,
        sessions.country_code
    from page_views
    inner join sessions on page_views.session_id = sessions.session_id
    inner join sites on page_views.site_id = sites.site_id
    left join identities
        on sessions.site_id = identities.site_id and sessions.visitor_id = identities.visitor_id

)

select * from final
