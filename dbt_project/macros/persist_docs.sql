{#- persist_docs, as dbt-postgres writes it, except that a comment already in place is not
    written again, and in one statement. dbt comments every incremental model's table and
    columns in every run; COMMENT takes a lock that waits for a running autovacuum of the
    table to give way (deadlock_timeout), and the sessionised events and page views, on the
    build's longest path, are vacuumed after nearly every incremental run. Reading
    pg_description takes no such lock. dbt also reads the relation's columns (twice, into
    tables in Python) to leave out documented columns the relation does not have; here the
    statement itself does that. -#}

{% macro postgres__persist_docs(relation, model, for_relation, for_columns) -%}
    {%- set statements = [] %}
    {%- if for_relation and config.persist_relation_docs() and model.description %}
        {%- do statements.append(alter_relation_comment(relation, model.description)) %}
    {%- endif %}
    {%- if for_columns and config.persist_column_docs() and model.columns %}
        {%- do statements.append(alter_column_comment(relation, model.columns)) %}
    {%- endif %}
    {%- if statements %}
        {%- do run_query(statements | join('\n')) %}
    {%- endif %}
{%- endmacro %}


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


{#- The column comments, in one statement: the documented columns the relation has (dbt asks
    for the relation's columns first, a query and a table of them in Python) whose comment
    is not the description yet. -#}
{% macro postgres__alter_column_comment(relation, column_dict) -%}
    do $persist_docs$
    declare
        target regclass := to_regclass(
            '{{ adapter.quote(relation.schema) }}.{{ adapter.quote(relation.identifier) }}'
        );
        stale record;
    begin
        for stale in
            {{ stale_column_comments('target', column_dict) }}
        loop
            execute format(
                'comment on column %s.%I is %L', target, stale.column_name, stale.description
            );
        end loop;
    end
    $persist_docs$;
{%- endmacro %}


{#- The columns of `column_dict` (a model's documented columns) that the relation `target`
    (a regclass expression) has and whose comment differs from their description (an empty
    description is no comment): column_name, description. -#}
{% macro stale_column_comments(target, column_dict) -%}
    {%- set descriptions = {} %}
    {%- for name, column in column_dict.items() %}
        {%- do descriptions.update({
            (name if column.get('quote') else name | lower): column.get('description', ''),
        }) %}
    {%- endfor %}
    select documented.column_name, nullif(documented.description, '') as description
    from jsonb_each_text($documented${{ descriptions | tojson }}$documented$::jsonb)
        as documented (column_name, description)
    inner join pg_attribute as a
        on
            a.attrelid = {{ target }}
            and a.attname = documented.column_name
            and a.attnum > 0
            and not a.attisdropped
    where col_description(a.attrelid, a.attnum) is distinct from nullif(documented.description, '')
{%- endmacro %}
