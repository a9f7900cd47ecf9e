-- One row per order (a transaction tracked twice counts once), with the customer's
-- first-touch channel (their first visit) and last-touch channel (the last visit up to the
-- order that came from somewhere other than direct, else direct: "last non-direct click").
-- Incremental by customer (int_customers_changed_this_run).
{{ incremental_by('int_customers_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer'},
    pre_hook="{{ delete_changed_rows('customer_key') }}",
) }}

with

orders as (

    select * from {{ ref('int_orders') }}
    where not is_bot

),

sessions as (

    select * from {{ scoped_rows(ref('fct_sessions'), key='customer_key') }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

order_sessions as (

    select
        orders.*,
        sessions.customer_key,
        sessions.started_at as session_started_at,
        sessions.channel_id as session_channel_id,
        sessions.campaign_name as session_campaign_name,
        sessions.device_sk
    from orders
    inner join sessions on orders.session_id = sessions.session_id

),

first_touch as (

    select distinct on (order_sessions.site_id, order_sessions.order_id)
        order_sessions.site_id,
        order_sessions.order_id,
        sessions.channel_id,
        sessions.campaign_name
    from order_sessions
    inner join sessions
        on
            order_sessions.site_id = sessions.site_id
            and order_sessions.customer_key = sessions.customer_key
            and order_sessions.session_started_at >= sessions.started_at
    order by order_sessions.site_id, order_sessions.order_id, sessions.started_at, sessions.session_id

),

last_touch as (

    select distinct on (order_sessions.site_id, order_sessions.order_id)
        order_sessions.site_id,
        order_sessions.order_id,
        sessions.channel_id,
        sessions.campaign_name
    from order_sessions
    inner join sessions
        on
            order_sessions.site_id = sessions.site_id
            and order_sessions.customer_key = sessions.customer_key
            and order_sessions.session_started_at >= sessions.started_at
            and sessions.channel_id <> 'direct'
    order by
        order_sessions.site_id asc,
        order_sessions.order_id asc,
        sessions.started_at desc,
        sessions.session_id asc

),

final as (

    select
        order_sessions.site_id || ':' || order_sessions.order_id as transaction_id,
        order_sessions.site_id,
        order_sessions.order_id,
        order_sessions.event_id,
        order_sessions.session_id,
        order_sessions.visitor_id,
        order_sessions.customer_key,
        order_sessions.ordered_at,
        (order_sessions.ordered_at at time zone sites.site_timezone)::date as order_date,
        order_sessions.revenue,
        order_sessions.shipping,
        order_sessions.tax,
        (order_sessions.revenue - coalesce(order_sessions.shipping, 0))::numeric(14, 2) as subtotal,
        coalesce(order_sessions.currency, sites.currency) as currency,
        coalesce(jsonb_array_length(order_sessions.items), 0) as item_lines,
        coalesce((
            select sum({{ client_quantity('item') }})
            from jsonb_array_elements(order_sessions.items) as item
        ), 0) as quantity,
        order_sessions.session_channel_id as channel_id,
        order_sessions.device_sk,
        coalesce(first_touch.channel_id, order_sessions.session_channel_id) as first_touch_channel_id,
        first_touch.campaign_name as first_touch_campaign,
        coalesce(last_touch.channel_id, 'direct') as last_touch_channel_id,
        last_touch.campaign_name as last_touch_campaign
    from order_sessions
    inner join sites on order_sessions.site_id = sites.site_id
    left join first_touch
        on order_sessions.site_id = first_touch.site_id and order_sessions.order_id = first_touch.order_id
    left join last_touch
        on order_sessions.site_id = last_touch.site_id and order_sessions.order_id = last_touch.order_id

)

select * from final
