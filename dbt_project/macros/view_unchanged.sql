{#- Returns the SQL of one row: whether the view `relation` has the definition of `sql` (as
    PostgreSQL renders both), and whether its comments are those persist_docs writes
    (macros/persist_docs.sql: the model's description, and each documented column that the
    view has). The view_if_changed materialization reads it (materializations/). -#}
{% macro view_unchanged_sql(relation, sql) -%}
    {%- set probe = 'siteline_view_probe_' ~ local_md5(relation.render()) %}
    {%- set view = "to_regclass('" ~ adapter.quote(relation.schema) ~ '.'
        ~ adapter.quote(relation.identifier) ~ "')" %}
    drop view if exists pg_temp.{{ probe }};
    create temporary view {{ probe }} as (
        {{ sql }}
    );
    {%- set same_description = 'true' %}
    {%- if config.persist_relation_docs() and model.description %}
        {%- set same_description = 'obj_description(' ~ view ~ ", 'pg_class') is not distinct from "
            ~ postgres_escape_comment(model.description) %}
    {%- endif %}
    {%- set same_column_comments = 'true' %}
    {%- if config.persist_column_docs() and model.columns %}
        {%- set same_column_comments = 'not exists (' ~ stale_column_comments(view, model.columns) ~ ')' %}
    {%- endif %}
    select
        coalesce(
            pg_get_viewdef({{ view }}) = pg_get_viewdef('pg_temp.{{ probe }}'::regclass), false
        ) as same_definition,
        {{ same_description }} and {{ same_column_comments }} as same_docs
{%- endmacro %}
