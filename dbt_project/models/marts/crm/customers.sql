-- One row per customer: an identified user (every device and every earlier anonymous visit
-- of a browser that logged in, stitched) or else an anonymous visitor. Lifetime activity and
-- value, RFM scores and segment, first- and last-touch channel and campaign.
--
-- RFM: recency, frequency and monetary scores 1-5 are quintiles within the site (5 best);
-- recency counts from the site's latest activity, so scores do not drift while no data
-- arrives. Segments follow the usual RFM grid; customers without a purchase are "visitor"
-- (one visit) or "engaged visitor" (returning).
with

customers as (

    select * from {{ ref('int_customer_activity') }}

),

site_now as (

    select
        site_id,
        max(last_seen_at) as latest_activity_at
    from customers
    group by site_id

),

combined as (

    select
        customers.*,
        (site_now.latest_activity_at::date - customers.last_seen_at::date) as recency_days
    from customers
    inner join site_now on customers.site_id = site_now.site_id

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
