-- noqa: disable=LT02
{#- crm.customers' RFM scores, 1-5 within the site (5 best): the quintile that holds the first
    of the customer's equals - 1 + floor(5 * customers with a lower value / customers) - so
    customers who did the same get the same score. Recency is the date of the last visit,
    frequency the visits then the orders, monetary the revenue.

    The pre-hook scores each distinct value (a window over the few values, from the
    customers per value that int_customer_activity keeps: customer_value_counts), in three
    small temporary tables; the model and its extra scope join them to the customers they
    read. (Not ntile windows: each sorts every customer, and most customers share a value -
    no revenue, one visit - so the sort compares their keys row by row. Not a hash
    aggregate of every customer per value in the pre-hook either: it sits on the longest
    path of the build.) -#}

{% macro customer_score_relation(measure) -%}
    {{ this.identifier }}__{{ measure }}
{%- endmacro %}


{#- The scores crm.customers holds, per measure and value, with the day they were given
    (a table of the intermediate schema, written in the same transaction as crm.customers). -#}
{% macro customer_scores_given(measure) -%}
    {{ generate_schema_name('intermediate', none) }}.customer_{{ measure }}_scores
{%- endmacro %}


{#- The customers per value of each measure (one row per site and value; the other measures'
    columns null), as int_customer_activity holds them: rebuilt when it is built whole, else
    moved by its scope's customers as they were (the rows it deletes: scope_start's
    keep_deleted) and as they are (customer_values_after), in the same transaction. -#}
{% macro customer_value_counts() -%}
    {{ generate_schema_name('intermediate', none) }}.customer_value_counts
{%- endmacro %}


{% macro customer_value_columns() -%}
    {{- return(customer_score_sql('columns').strip().split(',')) }}
{%- endmacro %}


{#- int_customer_activity's post-hook (scope_done(after=...)): the counts rebuilt (built whole,
    or none kept yet), or moved by the scope's customers as they are less as they were. -#}
{% macro customer_values_after() -%}
    {%- set whole = built_whole() %}
    {%- set counts = customer_value_counts() %}
    {%- set columns = customer_value_columns() %}
    {%- if whole or (execute and not relation_exists(counts)) %}
    drop table if exists {{ counts }};
    create table {{ counts }} as
    {{ customer_score_sql('count', this) }}
    {%- else %}
    drop table if exists {{ this.identifier }}__values_moved;
    create temporary table {{ this.identifier }}__values_moved as
    select
        moved.site_id,
        moved.{{ columns | join(', moved.') }},
        sum(moved.customers) as customers
    from (
        {{ customer_score_sql('count', '(' ~ scope_this_rows('customer_key') ~ ')') }}
        union all
        select
            b.site_id,
            b.{{ columns | join(', b.') }},
            -b.customers
        from ({{ customer_score_sql('count', deleted_relation()) }}) as b
    ) as moved
    group by moved.site_id, moved.{{ columns | join(', moved.') }}
    having sum(moved.customers) <> 0;
    drop table if exists {{ this.identifier }}__values_new;
    create temporary table {{ this.identifier }}__values_new as
    select
        m.site_id,
        m.{{ columns | join(', m.') }},
        coalesce(c.customers, 0) + m.customers as customers
    from {{ this.identifier }}__values_moved as m
    left join {{ counts }} as c
        on
            c.site_id = m.site_id
            {%- for column in columns %}
            and c.{{ column }} is not distinct from m.{{ column }}
            {%- endfor %};
    delete from {{ counts }} as c
    using {{ this.identifier }}__values_moved as m
    where
        c.site_id = m.site_id
        {%- for column in columns %}
        and c.{{ column }} is not distinct from m.{{ column }}
        {%- endfor %};
    insert into {{ counts }}
    select * from {{ this.identifier }}__values_new
    where customers <> 0
    {%- endif %}
{%- endmacro %}


{#- part 'columns': the measures' columns, comma-separated.
    part 'count': the customers of `alias` (a relation or subquery of int_customer_activity's
    rows) per value of each measure, one grouping set per measure.
    part 'prepare' (pre-hook of crm.customers):
    - each measure's distinct values with their score go to a temporary table
      (customer_score_relation), and the values whose score differs from the one given
      last run (customer_scores_given) to another (`__moved`), before the given ones are
      replaced.
    part 'joins': the joins that give the rows of `alias` (rows of int_customer_activity)
    their scores, recency.score, frequency.score and monetary.score. Every customer has its
    values in those tables: the joins are left joins only so the planner counts a row per
    customer (it cannot estimate a join on these expressions: it expected a few hundred rows
    where there were a site's customers, and probed crm.customers once per customer).
    part 'moved': a condition true for the rows of `alias` whose score moved.
    One macro, so the measures are written once. -#}
{% macro customer_score_sql(part, alias=none) -%}
    {#- the measures, each one or more columns with its expression over a row `{a}` of
        int_customer_activity -#}
    {%- set measures = {
        'recency': {'last_seen_date': "coalesce({a}.last_seen_at::date, '-infinity'::date)"},
        'frequency': {
            'visits': 'coalesce({a}.visits, 0)', 'transactions': 'coalesce({a}.transactions, 0)'
        },
        'monetary': {'revenue': 'coalesce({a}.revenue, 0)'},
    } %}
    {%- if part == 'columns' %}
        {%- for columns in measures.values() -%}
            {{ columns.keys() | join(',') }}{{ ',' if not loop.last }}
        {%- endfor %}
    {%- endif %}
    {%- if part == 'count' %}
    select
        a.site_id,
        {%- for columns in measures.values() %}
            {%- for column, expression in columns.items() %}
        {{ expression.format(a='a') }} as {{ column }},
            {%- endfor %}
        {%- endfor %}
        count(*) as customers
    from {{ alias }} as a
    group by grouping sets (
        {%- for columns in measures.values() %}
        (a.site_id, {{ columns.values() | join(', ') | replace('{a}', 'a') }}){{ "," if not loop.last }}
        {%- endfor %}
    )
    {%- endif %}
    {%- if part == 'prepare' and execute and not relation_exists(customer_value_counts()) %}
    -- kept by int_customer_activity since a version that had not yet run
    create table {{ customer_value_counts() }} as
    {{ customer_score_sql('count', ref('int_customer_activity')) }};
    {%- endif %}
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
    from {{ customer_value_counts() }} as v
    -- this measure's grouping set: its columns are set, the others' null
    where v.{{ columns | first }} is not null
    window lower_values as (
        partition by v.site_id order by {{ columns | join(', ') }}
        rows between unbounded preceding and 1 preceding
    );
    analyze {{ customer_score_relation(measure) }};
    create table if not exists {{ customer_scores_given(measure) }} as
    select
        s.*,
        current_date as given_on
    from {{ customer_score_relation(measure) }} as s
    with no data;
            {%- if loop.first %}
    drop table if exists {{ customer_score_relation('given_on') }};
    create temporary table {{ customer_score_relation('given_on') }} as
    select max(g.given_on) as given_on from {{ customer_scores_given(measure) }} as g;
            {%- endif %}
    drop table if exists {{ customer_score_relation(measure ~ '_moved') }};
    create temporary table {{ customer_score_relation(measure ~ '_moved') }} as
    select
        coalesce(s.site_id, g.site_id) as site_id,
        {%- for column in columns %}
        coalesce(s.{{ column }}, g.{{ column }}) as {{ column }}{{ "," if not loop.last }}
        {%- endfor %}
    from {{ customer_score_relation(measure) }} as s
    full join {{ customer_scores_given(measure) }} as g
        on
            s.site_id = g.site_id
            {%- for column in columns %}
            and s.{{ column }} = g.{{ column }}
            {%- endfor %}
    where s.score is distinct from g.score;
    delete from {{ customer_scores_given(measure) }};
    insert into {{ customer_scores_given(measure) }}
    select
        s.*,
        current_date
    from {{ customer_score_relation(measure) }} as s;
        {%- elif part == 'joins' %}
    left join {{ customer_score_relation(measure) }} as {{ measure }}
        on
            {{ alias }}.site_id = {{ measure }}.site_id
            {%- for column, expression in columns.items() %}
            and {{ expression.format(a=alias) }} = {{ measure }}.{{ column }}
            {%- endfor %}
        {%- elif part == 'moved' %}
    {{ "or " if not loop.first }}({{ alias }}.site_id, {{ columns.values() | join(', ') | replace('{a}', alias) }}) in (
        select m.site_id, m.{{ columns | join(', m.') }}
        from {{ customer_score_relation(measure ~ '_moved') }} as m
    )
        {%- endif %}
    {%- endfor %}
{%- endmacro %}


{% macro customer_scores() -%}
    {{ customer_score_sql('prepare') }}
{%- endmacro %}


{% macro customer_score_joins(alias) -%}
    {{ customer_score_sql('joins', alias) }}
{%- endmacro %}


{#- crm.customers' extra scope: customers whose scores moved since the last run (a new
    customer moves the quintiles' edges: only the values near an edge change score, found
    per value, not per customer), or every customer on the first run of a day (it moves
    every customer's days since the last visit). (Not by comparing every customer's scores
    with crm.customers': a join of every customer with every customer.) -#}
{% macro customers_rescored() -%}
    select c.site_id, c.customer_key
    from {{ ref('int_customer_activity') }} as c
    where
        (select g.given_on from {{ customer_score_relation('given_on') }} as g) < current_date
        or {{ customer_score_sql('moved', 'c') }}
{%- endmacro %}
