-- One row per visit (bots included; the marts leave them out): counts, timing, the landing
-- page's traffic source and the visitor's device and place. Incremental by device
-- (macros/scopes.sql); an order first counted in another device's visit (the same order id
-- tracked twice) brings that device into scope too, and is logged for the models above.
{{ scoped_model(
    indexes=[{'columns': ['session_id'], 'unique': True}, {'columns': ['site_id', 'visitor_id']}],
    start='extra=int_sessions_orders_moved(), publish_extra=true',
) }}

with

events as {{ scope_cte() }} (

    -- a scope's rows are copied once; all rows are read where used (totals, landing and
    -- exit pages, devices)
    select * from {{ ref('int_events_sessionised') }}
    where session_id is not null and {{ in_scope() }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

totals as (

    select
        session_id,
        site_id,
        device_key as visitor_id,
        min(event_source) as event_source,
        min(client_session_id) as client_session_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as event_count,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'event') as custom_events,
        coalesce(sum(engaged_seconds) filter (where event_type = 'page_ping'), 0) as engaged_seconds,
        bool_or(is_bot) as is_bot,
        (array_agg(user_id order by occurred_at desc) filter (where event_type = 'identify'))[1]
            as identified_user_id
    from events
    group by session_id, site_id, device_key

),

landing_pages as (

    select distinct on (session_id)
        session_id,
        page_path as landing_page_path,
        page_url as landing_page_url,
        referrer_url,
        referrer_host,
        referrer_medium,
        referrer_source,
        campaign_name,
        campaign_source,
        campaign_medium,
        campaign_term,
        campaign_content
    from events
    where event_type = 'page_view'
    order by session_id, occurred_at, event_id

),

exit_pages as (

    select distinct on (session_id)
        session_id,
        page_path as exit_page_path
    from events
    where event_type = 'page_view'
    order by session_id asc, occurred_at desc, event_id desc

),

devices as (

    -- Device and place of the visit's first event that knows them.
    select distinct on (session_id)
        session_id,
        device_type,
        browser,
        os,
        country_code,
        screen_resolution,
        browser_language
    from events
    order by session_id, (device_type is null), occurred_at, event_id

),

session_orders as (

    select
        session_id,
        count(*) as transactions,
        sum(revenue) as revenue
    from orders
    group by session_id

),

final as (

    select
        totals.session_id,
        totals.site_id,
        totals.visitor_id,
        totals.client_session_id,
        totals.event_source,
        totals.started_at,
        totals.ended_at,
        (totals.started_at at time zone sites.site_timezone)::date as session_date,
        extract(epoch from totals.ended_at - totals.started_at)::integer as duration_seconds,
        totals.event_count,
        totals.page_views,
        totals.custom_events,
        totals.engaged_seconds,
        totals.page_views <= 1 as is_bounce,
        totals.identified_user_id,
        landing_pages.landing_page_path,
        landing_pages.landing_page_url,
        exit_pages.exit_page_path,
        landing_pages.referrer_url,
        landing_pages.referrer_host,
        landing_pages.referrer_medium,
        landing_pages.referrer_source,
        landing_pages.campaign_name,
        landing_pages.campaign_source,
        landing_pages.campaign_medium,
        landing_pages.campaign_term,
        landing_pages.campaign_content,
        {{ channel_grouping(
            'landing_pages.campaign_medium', 'landing_pages.campaign_source',
            'landing_pages.referrer_medium'
        ) }} as channel_id,
        devices.device_type,
        devices.browser,
        devices.os,
        devices.country_code,
        devices.screen_resolution,
        devices.browser_language,
        coalesce(session_orders.transactions, 0) as transactions,
        coalesce(session_orders.revenue, 0)::numeric(14, 2) as revenue,
        totals.is_bot
    from totals
    inner join sites on totals.site_id = sites.site_id
    left join landing_pages on totals.session_id = landing_pages.session_id
    left join exit_pages on totals.session_id = exit_pages.session_id
    left join devices on totals.session_id = devices.session_id
    left join session_orders on totals.session_id = session_orders.session_id

)

select * from final
