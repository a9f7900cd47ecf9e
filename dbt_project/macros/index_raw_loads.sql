{#- An index on the load id of the large raw tables, so the incremental sessionisation reads
    only the rows of recent dlt loads (macros/unified_events.sql), and one on the log hits'
    time, so a day of hits is counted again without a scan (int_daily_log_hits). Run at the
    start of every dbt invocation (on-run-start); a table a loader has not created yet is
    skipped. -#}
{% macro index_raw_loads() -%}
    {%- for schema, table in [('raw_collector', 'events'), ('raw_logfiles', 'hits')] %}
    do $$
    begin
        if to_regclass('{{ schema }}.{{ table }}') is not null then
            create index if not exists {{ table }}__dlt_load_id
            on {{ schema }}.{{ table }} (_dlt_load_id);
        end if;
    end
    $$;
    {%- endfor %}
    -- int_daily_log_hits counts a day's hits again through this one
    do $$
    begin
        if to_regclass('raw_logfiles.hits') is not null then
            create index if not exists hits__site_requested_at
            on raw_logfiles.hits (site_id, requested_at);
        end if;
    end
    $$;
{%- endmacro %}
