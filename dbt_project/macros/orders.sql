-- noqa: disable=LT02
{#- int_orders is incremental by order: every run rebuilds the orders with a transaction on
    a device the sessionisation (re)wrote since int_orders' own last run (the device scope
    of macros/scopes.sql, mapped to orders), and no other. An order's transactions change
    only with the rows of their devices, and an order tracked twice on two devices is
    rebuilt from all of its transactions. (Built whole, each run read the 55k transactions
    of 13.5M sessionised events through a partial index, then their rows from the heap:
    4.3 s at 10M events, 52k pages read from disk.) -#}

{% macro orders_relation() -%}
    {{ this.identifier }}__orders
{%- endmacro %}


{#- pre-hook: the orders to rebuild (orders_relation), from the transactions of the devices in
    scope through the sessionised table's (site_id, device_key, order_id) partial index, and
    their rows deleted. -#}
{% macro orders_start() -%}
    {{ scope_mark('device') }};
    {%- if is_incremental() %}
        {%- if scoped() %}
    {{ scope_collect('device') }};
    drop table if exists {{ orders_relation() }};
    create temporary table {{ orders_relation() }} as
    select distinct
        t.site_id,
        t.order_id
    from {{ scope_relation() }} as scope
    cross join lateral (
        select e.site_id, e.order_id
        from {{ ref('int_events_sessionised') }} as e
        where
            e.site_id = scope.site_id and e.device_key = scope.scope_key
            and e.event_type = 'transaction' and e.order_id is not null
        offset 0
    ) as t;
    create unique index on {{ orders_relation() }} (site_id, order_id);
    analyze {{ orders_relation() }};
    {{ delete_keys(orders_relation(), 'order_id', 'order_id') }};
        {%- else %}
    delete from {{ this }};
        {%- endif %}
    {%- endif %}
{%- endmacro %}


{#- The transactions int_orders reads: in a run that rebuilds some orders, those orders'
    transactions, probed order by order through the sessionised table's
    (site_id, order_id, occurred_at, event_id) partial index; else every transaction. -#}
{% macro orders_transactions() -%}
    {%- if is_incremental() and run_query is defined and scoped() -%}
    (
        select t.*
        from {{ orders_relation() }} as changed
        cross join lateral (
            select e.*
            from {{ ref('int_events_sessionised') }} as e
            where
                e.site_id = changed.site_id and e.order_id = changed.order_id
                and e.event_type = 'transaction' and e.session_id is not null
            offset 0  -- noqa: AM09
        ) as t
        offset 0  -- noqa: AM09
    ) as in_scope
    {%- else -%}
        {{ ref('int_events_sessionised') }}
    {%- endif %}
{%- endmacro %}
