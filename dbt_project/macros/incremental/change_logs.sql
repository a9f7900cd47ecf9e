{#- The post-hooks that log changes for the models above (macros/incremental/bookkeeping.sql):
    each compares the rows its model deleted (delete_changed_rows(keep_deleted=true)) with
    those it wrote for the same keys, in the model's transaction. None of them logs anything
    when the model was built whole: the models above are then built whole too. -#}

{#- int_sessions: the local days of the visits removed, added or altered, each visit as the
    range from its date to the local date of its end (agg_daily_site_kpis recomputes them). -#}
{% macro log_changed_days() -%}
    {%- if not built_whole() %}
    insert into {{ scope_changes('day') }} (site_id, from_day, to_day)
    select distinct
        changed.site_id,
        changed.session_date,
        greatest(changed.session_date, (changed.ended_at at time zone sites.site_timezone)::date)
    from (
        (
            select {{ day_columns() }} from {{ deleted_relation() }}
            except
            {{ scope_this_rows('visitor_id', day_columns('found.')) }}
        )
        union all
        (
            {{ scope_this_rows('visitor_id', day_columns('found.')) }}
            except
            select {{ day_columns() }} from {{ deleted_relation() }}
        )
    ) as changed
    inner join {{ ref('stg_config__sites') }} as sites on changed.site_id = sites.site_id
    {%- endif %}
{%- endmacro %}


{#- What of a visit decides its days' figures: its figures and times. -#}
{% macro day_columns(prefix='') -%}
    {%- set columns = [
        'session_id', 'site_id', 'visitor_id', 'session_date', 'started_at', 'ended_at',
        'event_source', 'event_count', 'page_views', 'custom_events', 'engaged_seconds',
        'duration_seconds', 'is_bounce', 'transactions', 'revenue', 'is_bot',
    ] %}
    {%- for column in columns %}{{ prefix }}{{ column }}{{ ', ' if not loop.last }}{% endfor %}
{%- endmacro %}


{#- fct_sessions: the customers of the visitors rebuilt, as they were (the rows deleted) and
    as they are (a login moves a visitor to another customer). -#}
{% macro log_changed_customers() -%}
    {%- if not built_whole() %}
    insert into {{ scope_changes('customer') }} (site_id, customer_key)
    select d.site_id, d.customer_key
    from {{ deleted_relation() }} as d
    union
    {{ scope_this_rows('visitor_id', 'found.site_id, found.customer_key') }}
    {%- endif %}
{%- endmacro %}


{#- int_orders: the visitors of the orders that moved - counted before or after in another
    visit, or with another amount (an order id tracked twice, on two visitors: its first
    occurrence decides) - whose visits' transactions and revenue int_sessions counts again. -#}
{% macro log_moved_orders() -%}
    {%- if not built_whole() %}
    insert into {{ scope_changes('device') }} (site_id, device_key)
    select distinct
        moved.site_id,
        moved.visitor_id
    from (
        (
            select site_id, order_id, session_id, visitor_id, revenue from {{ deleted_relation() }}
            except
            {{ scope_this_rows(
                'order_id',
                'found.site_id, found.order_id, found.session_id, found.visitor_id, found.revenue',
            ) }}
        )
        union all
        (
            {{ scope_this_rows(
                'order_id',
                'found.site_id, found.order_id, found.session_id, found.visitor_id, found.revenue',
            ) }}
            except
            select site_id, order_id, session_id, visitor_id, revenue from {{ deleted_relation() }}
        )
    ) as moved
    {%- endif %}
{%- endmacro %}
