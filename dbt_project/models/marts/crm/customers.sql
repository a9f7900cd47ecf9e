-- One row per customer: an identified user (every device and every earlier anonymous visit
-- of a browser that logged in, stitched) or else an anonymous visitor. Lifetime activity and
-- value, RFM scores and segment, first- and last-touch channel and campaign.
--
-- RFM: recency, frequency and monetary scores 1-5 are quintiles within the site (5 best),
-- scored per distinct value in int_customer_scores (the rule is there); a customer gets the
-- score of its values. Segments follow the usual RFM grid; customers without a purchase are
-- "visitor" (one visit) or "engaged visitor" (returning).
--
-- Incremental by customer (int_customers_changed_this_run): rewrites the customers whose
-- activity changed and those int_customers_rescored_this_run names (a score or the days
-- since the last visit moved); the rest stay as they are. Its post-hook records the scores it
-- gave in int_customer_scores (record_customer_scores_given, macros/customer_scores.sql).
{{ incremental_by('int_customers_changed_this_run', also=['int_customers_rescored_this_run']) }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer', 'also_rebuilds': ['int_customers_rescored_this_run']},
    pre_hook="{{ delete_changed_rows('customer_key') }}",
    post_hook="{{ record_customer_scores_given() }}",
) }}

with

customers as (

    select * from {{ scoped_rows(ref('int_customer_activity'), key='customer_key') }}

),

scores as not materialized (

    -- read by each of the three joins below as the table itself (with its statistics), not
    -- as one materialized copy the planner knows nothing of
    select * from {{ ref('int_customer_scores') }}

),

scored as (

    -- each measure's score of the customer's value (found as int_customer_value_counts
    -- counts it). Left joins, though every customer's values are scored: the planner cannot
    -- estimate joins on these expressions, and only a left join keeps a row per customer in
    -- its estimate.
    select
        customers.*,
        recency.score as recency_score,
        frequency.score as frequency_score,
        monetary.score as monetary_score
    from customers
    left join scores as recency
        on
            customers.site_id = recency.site_id
            and recency.measure = 'recency'
            and coalesce(customers.last_seen_at::date, '-infinity'::date) = recency.last_seen_date
    left join scores as frequency
        on
            customers.site_id = frequency.site_id
            and frequency.measure = 'frequency'
            and coalesce(customers.visits, 0) = frequency.visits
            and coalesce(customers.transactions, 0) = frequency.transactions
    left join scores as monetary
        on
            customers.site_id = monetary.site_id
            and monetary.measure = 'monetary'
            and coalesce(customers.revenue, 0) = monetary.revenue

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
