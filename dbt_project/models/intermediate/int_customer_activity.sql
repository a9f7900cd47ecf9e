-- One row per customer (site + customer key): lifetime activity and purchases, the part of
-- crm.customers that depends on the customer's own visits only. Incremental by customer
-- (int_customers_changed_this_run); crm.customers adds the scores that compare customers of
-- a site. Its post-hook keeps the customers per value of each RFM measure, moved by the
-- customers it rebuilt as they were (the rows it deleted) and as they are
-- (customer_value_counts_moved, macros/customer_scores.sql; int_customer_value_counts reads
-- them, int_customer_scores scores them).
{{ incremental_by('int_customers_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer'},
    pre_hook="{{ delete_changed_rows('customer_key', keep_deleted=true) }}",
    post_hook="{{ customer_value_counts_moved(built_whole()) }}",
    indexes=[{'columns': ['site_id', 'customer_key'], 'unique': True}],
) }}

with

sessions as (

    select * from {{ scoped_rows(ref('fct_sessions'), key='customer_key') }}

),

orders as (

    -- the orders of the customers' visits, as web.fct_transactions counts them (an order
    -- once, in the visit of its first occurrence; bots' visits are not in fct_sessions):
    -- read from int_orders rather than fct_transactions, so that this model and
    -- crm.customers need not wait for fct_transactions and its tests
    select * from {{ ref('int_orders') }}
    where not is_bot

),

transactions as (

    select
        sessions.site_id,
        sessions.customer_key,
        orders.revenue,
        orders.ordered_at
    from orders
    inner join sessions on orders.session_id = sessions.session_id

),

activity as (

    select
        site_id,
        customer_key,
        max(user_id) as user_id,
        count(distinct visitor_id) as visitor_ids,
        min(started_at) as first_seen_at,
        max(ended_at) as last_seen_at,
        count(*) as visits,
        sum(page_views) as page_views,
        sum(engaged_seconds) as engaged_seconds,
        sum(goal_conversions) as goal_conversions,
        (array_agg(channel_id order by started_at, session_id))[1] as first_touch_channel_id,
        (array_agg(campaign_name order by started_at, session_id))[1] as first_touch_campaign,
        coalesce(
            (
                array_agg(channel_id order by started_at desc, session_id asc) filter (
                    where channel_id <> 'direct'
                )
            )[1],
            'direct'
        ) as last_touch_channel_id,
        (
            array_agg(campaign_name order by started_at desc, session_id asc) filter (
                where channel_id <> 'direct'
            )
        )[1]
            as last_touch_campaign,
        (array_agg(device_type order by started_at desc, session_id asc))[1] as last_device_type,
        (array_agg(country_code order by started_at desc, session_id asc))[1] as last_country_code
    from sessions
    group by site_id, customer_key

),

purchases as (

    select
        site_id,
        customer_key,
        count(*) as transactions,
        sum(revenue) as revenue,
        min(ordered_at) as first_transaction_at,
        max(ordered_at) as last_transaction_at
    from transactions
    group by site_id, customer_key

),

combined as (

    select
        activity.*,
        coalesce(purchases.transactions, 0) as transactions,
        {{ client_amount('coalesce(purchases.revenue, 0)', json=false) }} as revenue,
        purchases.first_transaction_at,
        purchases.last_transaction_at
    from activity
    left join purchases
        on activity.site_id = purchases.site_id and activity.customer_key = purchases.customer_key

)

select * from combined
