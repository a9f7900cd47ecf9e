{#- Select on the model for the read-only role BI tools use (ingestion/core/warehouse.py
    BI_ROLE), when that role exists. The post-hook of the alerts marts: the alerts schema
    also holds the evaluator's own tables (the outbox's messages among them), so bi_reader
    gets no default privileges there, only these views, each time dbt (re)creates one.
    ensure_bi_reader grants the views that exist when it runs, so either may come first. -#}
{% macro grant_to_bi_reader() -%}
    do $$
    begin
        if exists (select from pg_roles where rolname = 'bi_reader') then
            grant select on {{ this }} to bi_reader;
        end if;
    end $$
{%- endmacro %}
