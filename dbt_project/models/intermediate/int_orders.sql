-- One row per order: a transaction tracked twice (a reloaded thank-you page, a retry with
-- a new event id) counts once, at its first occurrence. Incremental by order
-- (macros/orders.sql).
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    indexes=[{'columns': ['site_id', 'order_id'], 'unique': True}],
    pre_hook="{{ orders_start() }}",
    post_hook="{{ scope_done() }}",
) }}

with

transactions as (

    select *
    from {{ orders_transactions() }}
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
