{#- Which raw dlt loads a reader has taken in, by load id (not by time: a load that commits
    while a reader is under way is simply taken in by its next run, and one taken in long
    ago is never read again - no overlap of time to guess).

    intermediate.loads_read holds a row per reader and load:

      data_tests          every dbt invocation notes the loads it sees at its start
                          (on-run-start: note_tested_loads); a run that passes every data
                          test marks them done (macros/test_scopes.sql)
      int_daily_log_hits  the loads whose days it counted (new_load_ids / loads_done)

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


{#- The completed loads a model reads, noted in a temporary table (new_loads_relation:
    raw_schema, load_id) that its post-hook records as read (loads_done). `loads` maps each
    raw schema to its staging view of completed loads (a ref, so dbt knows the model reads
    it); only_new: only the loads this model has not recorded yet. -#}
{% macro note_loads(loads, only_new=true) -%}
    drop table if exists {{ new_loads_relation() }};
    create temporary table {{ new_loads_relation() }} as
    {%- for raw_schema, relation in loads.items() %}
        select
            '{{ raw_schema }}'::text as raw_schema,
            l.load_id
        from {{ relation }} as l
        where
            not {{ only_new }}
            or not exists (
                select 1 from {{ loads_read() }} as r
                where
                    r.reader = '{{ this.identifier }}' and r.raw_schema = '{{ raw_schema }}'
                    and r.load_id = l.load_id
            )
        {{ 'union all' if not loop.last }}
    {%- endfor %}
{%- endmacro %}


{#- The new loads of `loads` (as note_loads), noted when the model compiles, on the
    connection its hooks run on, and returned as {raw_schema: [load ids]} for its query:
    as literals the planner sees how few rows they are and reads them through the raw
    table's load-id index. (Through the noted table, an IN it cannot see into, the hits of a
    new load were found by scanning every hit.) Noted once: a load that commits
    after this is read by the next run. forget: the model reads everything this run, and
    forgets the loads it recorded first. -#}
{% macro new_load_ids(loads, forget=false) -%}
    {%- set found = {} %}
    {%- for raw_schema in loads %}{% do found.update({raw_schema: []}) %}{% endfor %}
    {%- if execute and run_query is defined %}
        {%- set rows = run_query(
            ("delete from " ~ loads_read() ~ " where reader = '" ~ this.identifier ~ "'; "
                if forget else "")
            ~ note_loads(loads) ~ "; select raw_schema, load_id from " ~ new_loads_relation()
        ) %}
        {%- for raw_schema, load_id in rows.rows %}
            {%- do found[raw_schema].append(load_id) %}
        {%- endfor %}
    {%- endif %}
    {{- return(found) }}
{%- endmacro %}


{#- post-hook: the loads the model noted are done (forget: it read everything, and forgets
    the older records first). -#}
{% macro loads_done(forget=false) -%}
    {%- if forget %}
    delete from {{ loads_read() }} where reader = '{{ this.identifier }}';
    {%- endif %}
    insert into {{ loads_read() }} (reader, raw_schema, load_id, seen_at, done)
    select '{{ this.identifier }}', n.raw_schema, n.load_id, now(), true
    from {{ new_loads_relation() }} as n
    on conflict (reader, raw_schema, load_id) do nothing
{%- endmacro %}


{#- pre-hook of a model that reads loads: built whole, it deletes its rows first (its query
    then reads everything). -#}
{% macro delete_when_built_whole() -%}
    {%- if is_incremental() and built_whole() %}
    delete from {{ this }}
    {%- endif %}
{%- endmacro %}
