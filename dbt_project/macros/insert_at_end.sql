{#- New rows of an incremental model go at the end of its table, not into the leftovers of
    old pages (every model's post-hook, dbt_project.yml).

    A full build writes the table with `create table as`, filling each page to the brim.
    Once vacuumed (autovacuum comes soon after a build), the free space map lists each
    page's leftover bytes, and `insert ... select` puts every new row that fits one into it:
    the new rows land on pages spread over the whole table, each read from disk and written
    back whole after a checkpoint, where appended they fill a few pages. With a fill factor
    below 100, an insert asks the map for a page with that share free on top of the row,
    which no page of the full build has, and extends the table instead; pages emptied by
    deletes are still reused. The full build keeps packing its pages full: the option is set
    after it, and changes no page. -#}
{% macro insert_at_end() -%}
    {%- if model.config.materialized == 'incremental' %}
    do $$
    begin
        if not coalesce((
            select 'fillfactor=90' = any(reloptions) from pg_class
            where oid = '{{ this }}'::regclass
        ), false) then
            alter table {{ this }} set (fillfactor = 90);
        end if;
    end $$
    {%- endif %}
{%- endmacro %}
