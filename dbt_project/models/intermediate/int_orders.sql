-- One row per order: a transaction tracked twice (a reloaded thank-you page, a retry with
-- a new event id) counts once, at its first occurrence. Scoped by device, keyed by order
-- (macros/orders.sql): each order is read through the sessionised table's
-- (site_id, order_id, occurred_at, event_id) partial index.
{{ scoped_model(
    column='order_id', indexes=[{'columns': ['site_id', 'order_id'], 'unique': True}],
    start='keys=orders_of_scope()',
) }}

with

transactions as (

    select *
    from {{ scoped_rows(
        ref('int_events_sessionised'), key='order_id', own_keys=true,
        where="event_type = 'transaction' and session_id is not null",
    ) }}
    where event_type = 'transaction' and session_id is not null and order_id is not null

),

final as (

    select distinct on (site_id, order_id)
        site_id,
        order_id,
        event_id,
        session_id,
        device_key as visitor_id,
        occurred_at as ordered_at,
        revenue,
        shipping,
        tax,
        currency,
        items,
        is_bot
    from transactions
    order by site_id, order_id, occurred_at, event_id

)

select * from final
