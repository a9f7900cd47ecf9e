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
    {{ index_load_bookkeeping() }}
{%- endmacro %}


{#- Indexes on the bookkeeping of the loads, for the completeness rule that alerts and reports
    wait for (orchestration/completeness.py): it asks for the newest collector read and the
    newest pull of each logfile source whose load had completed before the marts' build, a
    row or two through these; without them it scans every load of a year (seconds). Run with
    index_raw_loads (on-run-start); a table or column a loader has not created yet is
    skipped. -#}
{% macro index_load_bookkeeping() -%}
    {%- for schema, table, name, columns in [
        ('raw_collector', '_dlt_loads', '_dlt_loads__load_id', 'load_id'),
        ('raw_collector', 'landing_reads', 'landing_reads__read_at', 'read_at'),
        ('raw_logfiles', '_dlt_loads', '_dlt_loads__load_id', 'load_id'),
        ('raw_logfiles', 'files', 'files__source_pull_started_at',
            'site_id, source, pull_started_at'),
    ] %}
    do $$
    begin
        if exists (
            select 1 from information_schema.columns
            where
                table_schema = '{{ schema }}' and table_name = '{{ table }}'
                and column_name = '{{ columns.split(", ")[-1] }}'
        ) then
            create index if not exists {{ name }} on {{ schema }}.{{ table }} ({{ columns }});
        end if;
    end
    $$;
    {%- endfor %}
{%- endmacro %}
