-- One row per page view of a person (tracker page views, and log hits no tracker saw), with
-- its place in the visit, time on page, engaged time and page performance. Incremental by
-- device (macros/scopes.sql).
{{ scoped_model() }}

with

events as {{ scope_cte() }} (

    -- a scope's rows are copied once; all rows are read where used (page views, and
    -- page views with heartbeats)
    select * from {{ ref('int_events_sessionised') }}
    where session_id is not null and {{ in_scope() }}

),

sessions as (

    select * from {{ ref('fct_sessions') }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

page_views as (

    select
        *,
        row_number() over visit_order as page_view_number,
        lead(occurred_at) over visit_order as next_page_view_at
    from events
    where event_type = 'page_view'
    window visit_order as (partition by session_id order by occurred_at, event_id)

),

timeline as (

    -- Page views and heartbeats of each visit in time order, a heartbeat after a page view
    -- of the same moment: a heartbeat belongs to the page view before it, the one whose
    -- number the running count of page views gives it.
    select
        session_id,
        event_type,
        engaged_seconds,
        count(*) filter (where event_type = 'page_view') over (
            partition by session_id order by occurred_at, event_type <> 'page_view', event_id
            rows between unbounded preceding and current row
        ) as page_view_number
    from events
    where event_type in ('page_view', 'page_ping')

),

pings as (

    -- Heartbeats measure engaged time; each belongs to the page view before it.
    select
        session_id,
        page_view_number,
        sum(engaged_seconds) as engaged_seconds
    from timeline
    where event_type = 'page_ping' and page_view_number > 0
    group by session_id, page_view_number

),

final as (

    select
        page_views.event_id as page_view_id,
        page_views.site_id,
        page_views.session_id,
        page_views.device_key as visitor_id,
        sessions.customer_key,
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
        coalesce(pings.engaged_seconds, 0) as engaged_seconds,
        page_views.http_status,
        page_views.dns_ms,
        page_views.connect_ms,
        page_views.ttfb_ms,
        page_views.dom_interactive_ms,
        page_views.page_load_ms,
        sessions.channel_id,
        sessions.device_sk,
        sessions.device_type,
        sessions.country_code
    from page_views
    inner join sessions on page_views.session_id = sessions.session_id
    inner join sites on page_views.site_id = sites.site_id
    left join pings
        on page_views.session_id = pings.session_id and page_views.page_view_number = pings.page_view_number

)

select * from final
