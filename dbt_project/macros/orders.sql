-- noqa: disable=LT02
{#- int_orders is scoped by device and keyed by order (scope_start's `keys`,
    macros/scopes.sql): every run rebuilds the orders with a transaction on a device the
    sessionisation (re)wrote since int_orders' own last run, and no other. An order's
    transactions change only with the rows of their devices, and an order tracked twice on
    two devices is rebuilt from all of its transactions. (Built whole, each run read every
    transaction's row from the sessionised events' heap, mostly from disk.)

    The orders of the scope's devices, through the sessionised table's
    (site_id, device_key, order_id) partial index. -#}
{% macro orders_of_scope() -%}
    select
        t.site_id,
        t.order_id as scope_key
    from {{ scope_relation() }} as scope
    cross join lateral (
        select e.site_id, e.order_id
        from {{ ref('int_events_sessionised') }} as e
        where
            e.site_id = scope.site_id and e.device_key = scope.scope_key
            and e.event_type = 'transaction' and e.order_id is not null
        offset 0
    ) as t
{%- endmacro %}
