-- The orders int_orders rebuilds in this run: every order with a transaction on a visitor
-- whose sessionised rows changed since int_orders' watermark (an order tracked twice, on two
-- visitors, is rebuilt from all of its transactions). Found through the sessionised events'
-- (site_id, device_key, order_id) partial index. Empty when int_orders is built whole.
{{ config(
    meta={'incremental_bookkeeping': true},
    post_hook='analyze {{ this }}',
) }}

with

reader as (

    select watermark
    from {{ ref('int_incremental_this_run') }}
    where model_name = 'int_orders' and is_selected and not built_whole

),

visitors as (

    select distinct
        site_id,
        device_key
    from {{ scope_changes('device') }}
    where change_id > (select reader.watermark from reader)

),

final as (

    select distinct
        transactions.site_id,
        transactions.order_id
    from (
        select * from visitors
        order by site_id, device_key
    ) as visitors
    cross join lateral (
        select
            e.site_id,
            e.order_id
        from {{ ref('int_events_sessionised') }} as e
        where
            e.site_id = visitors.site_id
            and e.device_key = visitors.device_key
            and e.event_type = 'transaction'
            and e.order_id is not null
        offset 0  -- noqa: AM09
    ) as transactions

)

select * from final
order by site_id, order_id
