-- One row per page view of a person (tracker page views, and log hits no tracker saw), with
-- its place in the visit, time on page, engaged time and page performance. Incremental by
-- device (macros/scopes.sql).
{{ scoped_model() }}

with

events as (

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

pings as (

    -- Heartbeats measure engaged time; each belongs to the page view before it.
    select
        page_views.event_id,
        sum(pings.engaged_seconds) as engaged_seconds
    from page_views
    inner join events as pings
        on
            page_views.session_id = pings.session_id
            and pings.event_type = 'page_ping'
            and page_views.occurred_at <= pings.occurred_at
            and (page_views.next_page_view_at > pings.occurred_at or page_views.next_page_view_at is null)
    group by page_views.event_id

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
    left join pings on page_views.event_id = pings.event_id

)

select * from final
