{#- Returns the rows of a `unique` check, as dbt's `unique` test does (a duplicated value and
    how often it occurs), trusting a unique index: when the tested table has a valid unique
    index whose key columns are all the tested column, PostgreSQL refused every duplicate
    when it built the index and refuses each one inserted since, so the table is not read
    (the catalog is read when the test runs; the scan underneath is then never executed).

    It falls back to dbt's scan when the index cannot answer: a view, a table without such an
    index (or with only a partial or expression index, or one on more columns), an index
    being built (not yet valid), or an expression instead of a column. Use it on the columns
    of models that declare such an index in their config (indexes: unique: true); dbt's own
    `unique` always scans. -#}
{% test unique_by_index(model, column_name) %}
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


{#- Returns an SQL condition: the tested relation has a valid unique index whose key columns
    are all among `columns` (no partial or expression index); `false` when the relation is
    not known or a column is an expression. The relation is the model itself, or the one
    get_where_subquery (macros/test_scopes.sql) wraps. -#}
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


{#- Returns the relation a test's `model` stands for: the model itself, or the one inside the
    subquery get_where_subquery wrapped it in (none when it is neither). -#}
{% macro tested_relation(model) -%}
    {%- if model.identifier is defined %}{% do return(model) %}{% endif %}
    {%- set found = modules.re.match('^\(select \* from (\S+) where ', model | string) %}
    {%- do return(found.group(1) if found else none) %}
{%- endmacro %}
