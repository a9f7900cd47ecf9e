-- One row per customer and local day with activity: visits, page views, engaged time,
-- conversions, orders and revenue. Incremental by customer (int_customers_changed_this_run).
{{ incremental_by('int_customers_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer'},
    pre_hook="{{ delete_changed_rows('customer_key') }}",
) }}

with

sessions as (

    select * from {{ scoped_rows(ref('fct_sessions'), key='customer_key') }}

),

final as (

    select
        site_id,
        customer_key,
        session_date as activity_date,
        count(*) as visits,
        sum(page_views) as page_views,
        sum(engaged_seconds) as engaged_seconds,
        sum(goal_conversions) as goal_conversions,
        sum(transactions) as transactions,
        {{ client_amount('sum(revenue)', json=false) }} as revenue
    from sessions
    group by site_id, customer_key, session_date

)

select * from final
