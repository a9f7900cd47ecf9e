-- One row per page view seen by the tracker.
-- Foundation slice: bots, log hits and sessionisation join in with the warehouse-models work.
with

events as (

    select * from {{ ref('stg_collector__events') }}

),

page_views as (

    select
        event_id as page_view_id,
        site_id,
        visitor_id,
        client_session_id,
        occurred_at as viewed_at,
        (occurred_at at time zone 'UTC')::date as viewed_date,
        page_url,
        substring(page_url from '^[a-zA-Z]+://([^/?#:]+)') as page_host,
        coalesce(substring(page_url from '^[a-zA-Z]+://[^/?#]+(/[^?#]*)'), '/') as page_path,
        page_title,
        referrer_url,
        (attributes -> 'performance' ->> 'ttfb_ms')::integer as ttfb_ms,
        (attributes -> 'performance' ->> 'dom_interactive_ms')::integer as dom_interactive_ms,
        (attributes -> 'performance' ->> 'load_ms')::integer as page_load_ms
    from events
    where event_type = 'page_view'

),

final as (

    select * from page_views

)

select * from final
