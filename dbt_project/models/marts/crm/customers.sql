-- One row per customer: an identified user (every device and every earlier anonymous visit
-- of a browser that logged in, stitched) or else an anonymous visitor. Lifetime activity and
-- value, RFM scores and segment, first- and last-touch channel and campaign.
--
-- RFM: recency, frequency and monetary scores 1-5 are quintiles within the site (5 best);
-- recency counts from the site's latest activity, so scores do not drift while no data
-- arrives. Segments follow the usual RFM grid; customers without a purchase are "visitor"
-- (one visit) or "engaged visitor" (returning).
with

sessions as (

    select * from {{ ref('fct_sessions') }}

),

transactions as (

    select * from {{ ref('fct_transactions') }}

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

site_now as (

    select
        site_id,
        max(ended_at) as latest_activity_at
    from sessions
    group by site_id

),

combined as (

    select
        activity.*,
        coalesce(purchases.transactions, 0) as transactions,
        coalesce(purchases.revenue, 0)::numeric(14, 2) as revenue,
        purchases.first_transaction_at,
        purchases.last_transaction_at,
        (site_now.latest_activity_at::date - activity.last_seen_at::date) as recency_days
    from activity
    inner join site_now on activity.site_id = site_now.site_id
    left join purchases
        on activity.site_id = purchases.site_id and activity.customer_key = purchases.customer_key

),

scored as (

    select
        *,
        ntile(5) over (partition by site_id order by recency_days desc, customer_key asc) as recency_score,
        ntile(5) over (partition by site_id order by visits, transactions, customer_key) as frequency_score,
        ntile(5) over (partition by site_id order by revenue, customer_key) as monetary_score
    from combined

),

final as (

    select
        site_id,
        customer_key,
        user_id is not null as is_identified,
        user_id,
        visitor_ids,
        first_seen_at,
        last_seen_at,
        visits,
        page_views,
        engaged_seconds,
        goal_conversions,
        transactions,
        revenue,
        round(revenue / nullif(transactions, 0), 2) as average_order_value,
        first_transaction_at,
        last_transaction_at,
        (current_date - last_seen_at::date) as days_since_last_visit,
        recency_score,
        frequency_score,
        monetary_score,
        case
            when transactions = 0 and visits = 1 then 'visitor'
            when transactions = 0 then 'engaged visitor'
            when recency_score >= 4 and frequency_score >= 4 and monetary_score >= 4 then 'champion'
            when recency_score >= 3 and frequency_score >= 4 then 'loyal customer'
            when recency_score >= 4 and transactions = 1 then 'new customer'
            when recency_score >= 3 and monetary_score >= 4 then 'big spender'
            when recency_score <= 2 and (frequency_score >= 4 or monetary_score >= 4) then 'at risk'
            when recency_score = 1 then 'lost'
            when recency_score <= 2 then 'hibernating'
            else 'needs attention'
        end as rfm_segment,
        first_touch_channel_id,
        first_touch_campaign,
        last_touch_channel_id,
        last_touch_campaign,
        last_device_type,
        last_country_code
    from scored

)

select * from final
