-- The customers the customer-scoped models rebuild in this run: every customer with a change
-- logged since the oldest watermark among them (fct_sessions logs the customers of the
-- visitors it rebuilt, as they were and as they are: a login moves a visitor to another
-- customer). Empty when every such model is built whole. In key order.
-- depends_on: {{ ref('fct_sessions') }}
{{ config(
    meta={'incremental_bookkeeping': true},
    post_hook='analyze {{ this }}',
) }}

with

readers as (

    select min(watermark) as watermark
    from {{ ref('int_incremental_this_run') }}
    where scope = 'customer' and is_selected and not built_whole

),

changes as (

    select
        site_id,
        customer_key,
        change_id
    from {{ scope_changes('customer') }}
    where change_id > (select readers.watermark from readers)

),

final as (

    select
        site_id,
        customer_key,
        max(change_id) as last_change_id
    from changes
    group by site_id, customer_key

)

select * from final
order by site_id, customer_key
