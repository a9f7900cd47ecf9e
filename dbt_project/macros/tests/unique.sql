{#- `unique`, as dbt's own test, except that a valid unique index whose key columns are all
    the tested column answers it: PostgreSQL already refused every duplicate when it built
    the index, and refuses each one inserted since (int_events_sessionised, fct_page_views
    and the other models with a unique index in their config). The catalog is read when the
    test runs; the scan underneath is then never executed (a one-time filter). A view, a
    table without such an index, or an expression instead of a column is tested by a scan,
    as dbt does. -#}
{% test unique(model, column_name) %}
select
    {{ column_name }} as unique_field,
    count(*) as n_records
from {{ model }}
where
    {{ column_name }} is not null
    and not {{ unique_index_answers(model, [column_name]) }}
group by {{ column_name }}
having count(*) > 1
{% endtest %}


{#- An SQL condition: the tested relation has a valid unique index whose key columns are all
    among `columns` (no partial or expression index). Its relation is the model itself, or
    the one get_where_subquery (macros/test_scopes.sql) wraps. -#}
{% macro unique_index_answers(model, columns) -%}
    {%- set relation = tested_relation(model) %}
    {%- if not relation %}{% do return('false') %}{% endif %}
    {%- for column in columns if not modules.re.match('^[a-z_][a-z0-9_]*$', column) %}
        {%- do return('false') %}
    {%- endfor %}
    exists (
        select
        from pg_index as i
        where
            i.indrelid = to_regclass('{{ relation | replace("'", "''") }}')
            and i.indisunique and i.indisvalid and i.indpred is null and i.indexprs is null
            and (
                select bool_and(a.attname = any(array[{{ sql_literals(columns) }}]))
                from unnest(i.indkey::int2 []) with ordinality as k (attnum, n)
                inner join pg_attribute as a on i.indrelid = a.attrelid and k.attnum = a.attnum
                where k.n <= i.indnkeyatts
            )
    )
{%- endmacro %}


{% macro tested_relation(model) -%}
    {%- if model.identifier is defined %}{% do return(model) %}{% endif %}
    {%- set found = modules.re.match('^\(select \* from (\S+) where ', model | string) %}
    {%- do return(found.group(1) if found else none) %}
{%- endmacro %}
