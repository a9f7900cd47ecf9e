-- One row per site, RFM measure and value of it: how many customers have that value
-- (recency: the date of the last visit; frequency: visits, then orders; monetary: revenue;
-- a missing figure counts as the lowest value). A measure's row leaves the other measures'
-- columns null.
--
-- int_customer_activity's post-hook keeps the counts (intermediate.customer_value_counts,
-- macros/customer_scores.sql): moved by the customers each run rebuilds, as they were and as
-- they are, so no run counts every customer. This view names them and their measure.
-- depends_on: {{ ref('int_customer_activity') }}
{{ config(materialized='view_if_changed') }}

with

value_counts as (

    select * from {{ customer_value_counts() }}

),

final as (

    select
        site_id,
        case
            when last_seen_date is not null then 'recency'
            when visits is not null then 'frequency'
            else 'monetary'
        end as measure,
        last_seen_date,
        visits,
        transactions,
        revenue,
        customers
    from value_counts

)

select * from final
