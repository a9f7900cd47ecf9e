{#- The configuration int_events_sessionised reads (its own and through the unified stream):
    a change to any of it sessionises the history again. -#}
{% macro sessionised_configs() -%}
    {{ return(['stg_config__sites', 'stg_config__campaign_parameters', 'referrer_hosts']) }}
{%- endmacro %}


{#- Whether that configuration differs from the last run's. -#}
{% macro sessionised_rules_changed() -%}
    {{- return(configs_changed(sessionised_configs())) }}
{%- endmacro %}


{#- post-hook: the devices whose rows this run (re)wrote are logged for the scoped models
    above (macros/scopes.sql); a run that sessionised everything again is recorded as built
    whole, which the models above follow. -#}
{% macro sessionised_done() -%}
    {%- set whole = not is_incremental() or sessionised_rules_changed() %}
    {%- if not whole %}
    insert into {{ scope_changes('device') }} (site_id, device_key)
    select distinct site_id, device_key
    from {{ this }}
    where sessionised_at = now();
    {%- endif %}
    {{ scope_prune() }}
    {{ scope_done(scope=none, configs=sessionised_configs(), built_whole=whole) }};
    -- late events are few: a partial index finds them (agg_late_events) without a scan
    do $$
    begin
        if not exists (
            select 1 from pg_indexes
            where
                schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
                and indexdef like '%WHERE is_late%'
        ) then
            create index on {{ this }} (site_id, occurred_at) where is_late;
        end if;
    end
    $$
{%- endmacro %}


{#- The dlt loads int_events_sessionised has not read yet: completed within ten minutes of the
    newest load it holds, or later (a load that committed while the last run read is not
    missed), and none of whose rows it holds. Asked when the model runs, so the ids reach
    the planner as literals. (Asked as "the first row of this load in (loaded_at, load_id)
    order": one probe of that index. As a plain anti-join the planner, seeing few distinct
    loaded_at values, scans the table, and a load's rows are at its end.) -#}
{% macro sessionised_new_loads() -%}
    {%- set found = {'tracker': [], 'log': []} %}
    {%- if execute and is_incremental() and run_query is defined %}
        {%- for kind, loads, raw in [
            ('tracker', ref('stg_collector__loads'), 'raw_collector.events'),
            ('log', ref('stg_logfiles__loads'), 'raw_logfiles.hits'),
        ] %}
            {%- set rows = run_query(
                "select l.load_id from " ~ loads ~ " as l where l.loaded_at > (select "
                ~ "coalesce(max(loaded_at), '-infinity'::timestamptz) - interval '10 minutes' "
                ~ "from " ~ this ~ ") and not exists (select from (select from " ~ this
                ~ " as seen where seen.loaded_at = l.loaded_at and seen.load_id = l.load_id "
                ~ "order by seen.loaded_at, seen.load_id limit 1) as seen)"
            ) %}
            {%- do found.update({kind: rows.columns[0].values() | list}) %}
            {%- if found[kind] %}
                {#- the planner's statistics learn the new loads' sizes: with none it takes
                    them for a row or two and plans nested loops over thousands (a load may
                    have come before its loader created the table) -#}
                {%- do run_query(
                    "do $$ begin if to_regclass('" ~ raw ~ "') is not null then analyze "
                    ~ raw ~ " (_dlt_load_id); end if; end $$"
                ) %}
            {%- endif %}
        {%- endfor %}
    {%- endif %}
    {{- return(found) }}
{%- endmacro %}
