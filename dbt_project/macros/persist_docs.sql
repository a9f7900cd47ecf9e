-- noqa: disable=LT02
{#- persist_docs, as dbt-postgres writes it, except that a comment already in place is not
    written again. dbt comments every incremental model's table and columns in every run;
    COMMENT takes a lock that waits for a running autovacuum of the table to give way
    (deadlock_timeout, 1 s), and the sessionised events and page views are vacuumed after
    nearly every incremental run: 1 s each on the longest path of the 10M-event build.
    Reading pg_description takes no such lock. -#}

{% macro postgres__alter_relation_comment(relation, comment) -%}
    {%- set escaped_comment = postgres_escape_comment(comment) %}
    {%- set relation_type = 'materialized view' if relation.type == 'materialized_view' else relation.type %}
    do $persist_docs$
    begin
        if obj_description(
            to_regclass('{{ adapter.quote(relation.schema) }}.{{ adapter.quote(relation.identifier) }}'),
            'pg_class'
        ) is distinct from {{ escaped_comment }} then
            comment on {{ relation_type }} {{ relation }} is {{ escaped_comment }};
        end if;
    end
    $persist_docs$;
{%- endmacro %}


{% macro postgres__alter_column_comment(relation, column_dict) -%}
    {%- set existing_columns = adapter.get_columns_in_relation(relation) | map(attribute="name") | list %}
    {%- set table = adapter.quote(relation.schema) ~ '.' ~ adapter.quote(relation.identifier) %}
    do $persist_docs$
    begin
    {%- for column_name in column_dict if (column_name in existing_columns) %}
        {%- set quoted = column_dict[column_name]['quote'] %}
        {%- set escaped_comment = postgres_escape_comment(column_dict[column_name]['description']) %}
        if col_description(
            to_regclass('{{ table }}'),
            (
                select a.attnum from pg_attribute as a
                where
                    a.attrelid = to_regclass('{{ table }}')
                    and a.attname = '{{ column_name if quoted else column_name | lower }}'
            )
        ) is distinct from {{ escaped_comment }} then
            comment on column {{ relation }}.{{ adapter.quote(column_name) if quoted else column_name }}
            is {{ escaped_comment }};
        end if;
    {%- endfor %}
        null;
    end
    $persist_docs$;
{%- endmacro %}
