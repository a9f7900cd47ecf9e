-- noqa: disable=LT02
{#- crm.customers' RFM scores, 1-5 within the site (5 best): the quintile that holds the first
    of the customer's equals - 1 + floor(5 * customers with a lower value / customers) - so
    customers who did the same get the same score. Recency is the date of the last visit,
    frequency the visits then the orders, monetary the revenue.

    The pre-hook scores each distinct value (a hash aggregate over the customers and a window
    over the few values), in three small temporary tables; the model and its extra scope
    join them to the customers they read. (Three ntile windows, one sort of every customer
    each, took 15 s of the 10M-event incremental build: most customers share a value - no
    revenue, one visit - and the sort then compares their keys row by row.) -#}

{% macro customer_score_relation(measure) -%}
    {{ this.identifier }}__{{ measure }}
{%- endmacro %}


{#- part 'prepare' (pre-hook of crm.customers): each measure's distinct values with their
    score, in a temporary table; part 'joins': the joins that give the rows of `alias` (rows
    of int_customer_activity) their scores, recency.score, frequency.score and
    monetary.score. One macro, so the measures are written once. Every customer has its
    values in those tables: the joins are left joins only so the planner counts a row per
    customer (it cannot estimate a join on these expressions, took 1.16M rows for 369 and
    probed crm.customers once per customer). -#}
{% macro customer_score_sql(part, alias=none) -%}
    {%- set measures = {
        'recency': {'last_seen_date': "coalesce({a}.last_seen_at::date, '-infinity'::date)"},
        'frequency': {
            'visits': 'coalesce({a}.visits, 0)', 'transactions': 'coalesce({a}.transactions, 0)'
        },
        'monetary': {'revenue': 'coalesce({a}.revenue, 0)'},
    } %}
    {%- for measure, columns in measures.items() %}
        {%- if part == 'prepare' %}
    drop table if exists {{ customer_score_relation(measure) }};
    create temporary table {{ customer_score_relation(measure) }} as
    select
        v.site_id,
        {%- for column in columns %}
        v.{{ column }},
        {%- endfor %}
        (1 + floor(
            5 * coalesce(sum(v.customers) over lower_values, 0)
            / sum(v.customers) over (partition by v.site_id)
        ))::int as score
    from (
        select
            a.site_id,
            {%- for column, expression in columns.items() %}
            {{ expression.format(a='a') }} as {{ column }},
            {%- endfor %}
            count(*) as customers
        from {{ ref('int_customer_activity') }} as a
        group by a.site_id, {{ columns.values() | join(', ') | replace('{a}', 'a') }}
    ) as v
    window lower_values as (
        partition by v.site_id order by {{ columns | join(', ') }}
        rows between unbounded preceding and 1 preceding
    );
    analyze {{ customer_score_relation(measure) }};
        {%- else %}
    left join {{ customer_score_relation(measure) }} as {{ measure }}
        on
            {{ alias }}.site_id = {{ measure }}.site_id
            {%- for column, expression in columns.items() %}
            and {{ expression.format(a=alias) }} = {{ measure }}.{{ column }}
            {%- endfor %}
        {%- endif %}
    {%- endfor %}
{%- endmacro %}


{% macro customer_scores() -%}
    {{ customer_score_sql('prepare') }}
{%- endmacro %}


{% macro customer_score_joins(alias) -%}
    {{ customer_score_sql('joins', alias) }}
{%- endmacro %}


{#- crm.customers' extra scope: customers whose scores or days since the last visit differ
    from the ones it holds (a new customer moves the quintiles' edges; a new day moves every
    customer's days since the last visit). -#}
{% macro customers_rescored() -%}
    select c.site_id, c.customer_key
    from {{ ref('int_customer_activity') }} as c
    {{ customer_score_joins('c') }}
    inner join {{ this }} as t on c.site_id = t.site_id and c.customer_key = t.customer_key
    where
        (t.recency_score, t.frequency_score, t.monetary_score, t.days_since_last_visit)
        is distinct from
        (recency.score, frequency.score, monetary.score, current_date - c.last_seen_at::date)
{%- endmacro %}
