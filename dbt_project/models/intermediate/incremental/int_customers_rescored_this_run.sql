-- One row per customer (site_id, customer_key) whose RFM scores or days since the last visit
-- crm.customers must write again in this run, though the customer's own activity did not
-- change:
-- - the customers of a value whose score differs from the one crm.customers gave (a new
--   customer moves the quintiles' edges: only the values near an edge change score, found
--   per value in int_customer_scores, not per customer);
-- - every customer on the first run of a day (it moves every customer's days since the
--   last visit), or when no scores were given yet.
-- crm.customers rewrites these besides the customers whose activity changed.
-- A table in key order, analyzed, as the other scope models: crm.customers probes its inputs
-- key by key from it.
{{ config(
    meta={'incremental_bookkeeping': true},
    post_hook='analyze {{ this }}',
) }}

with

customers as (

    select * from {{ ref('int_customer_activity') }}

),

scores as (

    select * from {{ ref('int_customer_scores') }}

),

moved_values as (

    select * from scores
    where score is distinct from given_score

),

new_day as (

    select coalesce(max(given_on) < current_date, true) as is_new_day
    from scores

),

final as (

    -- a customer's values as int_customer_value_counts counts them
    select
        customers.site_id,
        customers.customer_key
    from customers
    where
        (select new_day.is_new_day from new_day)
        or (customers.site_id, coalesce(customers.last_seen_at::date, '-infinity'::date)) in (
            select
                moved_values.site_id,
                moved_values.last_seen_date
            from moved_values
            where moved_values.measure = 'recency'
        )
        or (customers.site_id, coalesce(customers.visits, 0), coalesce(customers.transactions, 0)) in (
            select
                moved_values.site_id,
                moved_values.visits,
                moved_values.transactions
            from moved_values
            where moved_values.measure = 'frequency'
        )
        or (customers.site_id, coalesce(customers.revenue, 0)) in (
            select
                moved_values.site_id,
                moved_values.revenue
            from moved_values
            where moved_values.measure = 'monetary'
        )

)

select * from final
order by site_id, customer_key
