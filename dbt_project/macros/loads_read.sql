-- noqa: disable=LT02
{#- Which raw dlt loads a reader has taken in, by load id (not by time: a load that commits
    while a reader is under way is simply taken in by its next run, and one taken in long
    ago is never read again - no overlap of time to guess).

    intermediate.loads_read holds a row per reader and load:

      data_tests          every dbt invocation notes the loads it sees at its start
                          (on-run-start: note_tested_loads); a run that passes every data
                          test marks them done (macros/test_scopes.sql)
      int_daily_log_hits  the loads whose days it counted (new_loads / new_loads_done)

    A reader that rebuilds everything (--full-refresh) forgets its rows first. The table is
    created in on-run-start (dbt_project.yml), before models run in parallel. -#}

{% macro loads_read() -%}
    {{ generate_schema_name('intermediate', none) }}.loads_read
{%- endmacro %}


{% macro loads_read_table() -%}
    create schema if not exists {{ generate_schema_name('intermediate', none) }};
    create table if not exists {{ loads_read() }} (
        reader text not null,
        raw_schema text not null,
        load_id text not null,
        seen_at timestamptz not null,
        done boolean not null,
        primary key (reader, raw_schema, load_id)
    )
{%- endmacro %}


{% macro new_loads_relation() -%}
    {{ this.identifier }}__new_loads
{%- endmacro %}


{#- pre-hook: the completed loads of `raw` (a raw schema) this model has not taken in yet, in
    a temporary table the model reads (new_loads_relation) and its post-hook records. -#}
{% macro new_loads(raw) -%}
    {%- if not is_incremental() %}
    delete from {{ loads_read() }} where reader = '{{ this.identifier }}';
    {%- endif %}
    drop table if exists {{ new_loads_relation() }};
    create temporary table {{ new_loads_relation() }} (load_id text primary key);
    do $$
    begin
        if to_regclass('{{ raw }}._dlt_loads') is not null then
            insert into {{ new_loads_relation() }} (load_id)
            select l.load_id
            from {{ raw }}._dlt_loads as l
            where
                l.status = 0
                and not exists (
                    select 1 from {{ loads_read() }} as r
                    where
                        r.reader = '{{ this.identifier }}' and r.raw_schema = '{{ raw }}'
                        and r.load_id = l.load_id
                );
        end if;
    end
    $$;
    analyze {{ new_loads_relation() }}
{%- endmacro %}


{#- The new loads of `raw`, noted (new_loads) when the model compiles, on the connection its
    hooks run on, and returned as literals for its query: the planner then sees how few
    rows they are and reads them through the raw table's load-id index. (Through the noted
    table, an IN it cannot see into, the 65k hits of a new load were found by scanning all
    6.5M, 4.7 s.) Noted once: a load that commits after this is read by the next run. -#}
{% macro new_load_ids(raw) -%}
    {%- if execute and run_query is defined %}
        {%- set found = run_query(new_loads(raw) ~ '; select load_id from ' ~ new_loads_relation()) %}
        {{- return(found.columns[0].values() | list) }}
    {%- endif %}
    {{- return([]) }}
{%- endmacro %}


{#- post-hook: the loads the model just took in are done. -#}
{% macro new_loads_done(raw) -%}
    insert into {{ loads_read() }} (reader, raw_schema, load_id, seen_at, done)
    select '{{ this.identifier }}', '{{ raw }}', n.load_id, now(), true
    from {{ new_loads_relation() }} as n
    on conflict (reader, raw_schema, load_id) do nothing
{%- endmacro %}


{#- int_daily_log_hits counts every day again when the sites' configuration (their time
    zones draw the days) changed since its last run. -#}
{% macro daily_log_hits_whole() -%}
    {{- return(not is_incremental() or configs_changed(['stg_config__sites'])) }}
{%- endmacro %}


{% macro daily_log_hits_start() -%}
    {%- if is_incremental() and daily_log_hits_whole() %}
    delete from {{ this }}
    {%- endif %}
{%- endmacro %}


{% macro daily_log_hits_done() -%}
    {{ scope_done(scope=none, configs=['stg_config__sites'], built_whole=daily_log_hits_whole()) }}
{%- endmacro %}
