-- One row per customer: an identified user (every device and every earlier anonymous visit
-- of a browser that logged in, stitched) or else an anonymous visitor. Lifetime activity and
-- value, RFM scores and segment, first- and last-touch channel and campaign.
--
-- RFM: recency, frequency and monetary scores 1-5 are quintiles within the site (5 best);
-- customers with equal values share the quintile of the first of them; recency ranks the
-- dates of the last visits, so scores do not drift while no data arrives. Segments follow
-- the usual RFM grid; customers without a purchase are "visitor" (one visit) or "engaged
-- visitor" (returning).
--
-- Incremental by customer (int_customers_changed_this_run): the scores compare a site's customers, so
-- every run scores each distinct value again (customer_scores, small temporary tables), and
-- rewrites the customers whose activity changed plus those whose scores or days since the
-- last visit moved (customers_rescored); the rest stay as they are.
{{ incremental_by('int_customers_changed_this_run', also=['int_customers_rescored_this_run']) }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer', 'also_rebuilds': ['int_customers_rescored_this_run']},
    pre_hook=["{{ customer_scores() }}", "{{ delete_changed_rows('customer_key') }}"],
) }}

with

customers as (

    select * from {{ scoped_rows(ref('int_customer_activity'), key='customer_key') }}

),

scored as (

    -- scores of each distinct value, from the pre-hook's temporary tables
    -- (macros/customer_scores.sql)
    select
        customers.*,
        recency.score as recency_score,
        frequency.score as frequency_score,
        monetary.score as monetary_score
    from customers
    {{ customer_score_joins('customers') }}

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
