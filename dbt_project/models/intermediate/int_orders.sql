-- One row per order: a transaction tracked twice (a reloaded thank-you page, a retry with
-- a new event id) counts once, at its first occurrence. Incremental by order: a run rebuilds
-- the orders of int_orders_changed_this_run, each read through the sessionised table's
-- (site_id, order_id, occurred_at, event_id) partial index, and logs the visitors of the
-- orders that moved to another visit (log_moved_orders), whose visits int_sessions counts
-- again.
{{ incremental_by('int_orders_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'order'},
    pre_hook="{{ delete_changed_rows('order_id', keep_deleted=true) }}",
    post_hook="{{ log_moved_orders() }}",
    indexes=[{'columns': ['site_id', 'order_id'], 'unique': True}],
) }}

with

transactions as (

    select *
    from {{ scoped_rows(
        ref('int_events_sessionised'), key='order_id',
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
