-- One row per line of an order: product, price, quantity and line revenue. Incremental by
-- customer (int_customers_changed_this_run).
{{ incremental_by('int_customers_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'customer'},
    pre_hook="{{ delete_changed_rows('customer_key') }}",
) }}

with

transactions as (

    select * from {{ scoped_rows(ref('fct_transactions'), key='customer_key') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

items as (

    select
        transactions.transaction_id,
        transactions.site_id,
        transactions.order_id,
        transactions.customer_key,
        transactions.ordered_at,
        transactions.order_date,
        transactions.last_touch_channel_id,
        item.line_number::integer as line_number,
        item.value as item
    from transactions
    inner join orders on transactions.site_id = orders.site_id and transactions.order_id = orders.order_id
    cross join lateral jsonb_array_elements(orders.items) with ordinality as item (value, line_number)

),

final as (

    select
        transaction_id || ':' || line_number as transaction_item_id,
        transaction_id,
        site_id,
        order_id,
        line_number,
        customer_key,
        ordered_at,
        order_date,
        item ->> 'sku' as sku,
        item ->> 'name' as product_name,
        item ->> 'category' as product_category,
        -- NULL where the client's value is not a number in bounds (client_number.sql)
        {{ client_amount("item -> 'price'") }} as price,
        {{ client_quantity('item') }} as quantity,
        {{ client_amount(client_amount("item -> 'price'") ~ ' * ' ~ client_quantity('item'), json=false) }}
            as line_revenue,
        last_touch_channel_id
    from items

)

select * from final
