{#- The bookkeeping of the incremental models: the change logs and the manifest.

    A model keyed by visitor (site_id, visitor_id), by customer (site_id, customer_key) or by
    day stays exact if every run rebuilds the visitors, customers or days that changed since
    its own last run, and no other. Changes are logged, each with an id that only grows, by
    the models that find them (in their post-hooks, in the transaction that makes them):

      changed_devices    int_events_sessionised: the visitors (devices) whose rows it
                         (re)wrote; int_orders: the visitors of the orders that moved to
                         another visit (an order id tracked twice)
      changed_customers  fct_sessions: the customers of the visitors it rebuilt, before and
                         after (a login moves a visitor to another customer)
      changed_days       int_sessions: the local days of the visits it changed, as ranges

    The scope models of models/intermediate/incremental/ (int_visitors_changed_this_run, ...)
    read these logs for the run, and int_incremental_manifest keeps each incremental model's
    watermark: the newest change it has taken in. -#}

{#- The manifest's relation, for the hooks (which run outside the models' graph). -#}
{% macro incremental_manifest() -%}
    {{ generate_schema_name('intermediate', none) }}.int_incremental_manifest
{%- endmacro %}


{#- A change log: scope 'device', 'customer' or 'day'. -#}
{% macro scope_changes(scope) -%}
    {{ generate_schema_name('intermediate', none) }}.changed_{{ scope }}s
{%- endmacro %}


{#- on-run-start: the change logs, the manifest and the loads read (macros/loads_read.sql),
    created before the models run in parallel (a CREATE TABLE IF NOT EXISTS races with
    itself). The manifest is created here, not first by its model, so that the hooks of a run
    that does not select it can read and write it; a manifest kept by an older Siteline
    (intermediate.scope_watermarks) is carried over, so an upgrade rebuilds nothing. -#}
{% macro bookkeeping_tables() -%}
    {%- set schema = generate_schema_name('intermediate', none) %}
    {#- dbt listed the relations before this hook: it learns of the manifest here, so that its
        model finds the table (and creates none) -#}
    {%- if execute %}
        {%- do adapter.cache_added(api.Relation.create(
            database=target.database, schema=schema, identifier='int_incremental_manifest',
            type='table',
        )) %}
    {%- endif %}
    create schema if not exists {{ schema }};
    do $$
    begin
        if to_regclass('{{ incremental_manifest() }}') is null then
            create table {{ incremental_manifest() }} (
                model_name text primary key,
                scope text,
                config_hash text not null,
                change_id bigint,
                full_at timestamptz,
                updated_at timestamptz not null
            );
            if to_regclass('{{ schema }}.scope_watermarks') is not null then
                insert into {{ incremental_manifest() }}
                select model_name, scope, config_hash, change_id, full_at, updated_at
                from {{ schema }}.scope_watermarks;
                drop table {{ schema }}.scope_watermarks;
            end if;
        end if;
    end
    $$;
    {%- for scope in ['device', 'customer'] %}
    create table if not exists {{ scope_changes(scope) }} (
        change_id bigint generated always as identity primary key,
        site_id text not null,
        {{ scope }}_key text not null
    );
    {%- endfor %}
    create table if not exists {{ scope_changes('day') }} (
        change_id bigint generated always as identity primary key,
        site_id text not null,
        from_day date not null,
        to_day date not null
    );
    {{ loads_read_table() }};
    {{ prune_changes() }}
{%- endmacro %}


{#- The change log a scope's models take their changes from. -#}
{% macro scope_log(scope) -%}
    {%- set logs = {
        'visitor': 'device', 'order': 'device', 'customer': 'customer', 'day': 'day',
    } %}
    {{- return(logs.get(scope)) }}
{%- endmacro %}


{#- on-run-end: every incremental model this run built successfully moves its watermark to
    the newest change of its scope's log (the changes a run logs are all logged before the
    scope models that pass them on are built: the models that log them come first in the
    graph), records the hash of the configuration it was built with, and, when it was built
    whole, when. A model
    that failed keeps its watermark: its next run takes the same changes again (rebuilding a
    visitor, customer or day twice gives the same rows). -#}
{% macro update_incremental_manifest() -%}
    {%- set built = [] %}
    {%- set plan = [] %}
    {%- for result in (results if execute else []) if result.status == 'success' %}
        {%- if result.node.resource_type == 'model' and result.node.config.meta.get('scope') %}
            {%- do built.append(result.node) %}
        {%- elif result.node.name == 'int_incremental_this_run' %}
            {%- do plan.append(result.node.relation_name) %}
        {%- endif %}
    {%- endfor %}

    {% if built -%}
        insert into {{ incremental_manifest() }} as m (
            model_name, scope, config_hash, change_id, full_at, updated_at
        )
        {%- for node in built %}
            {%- set log = scope_log(node.config.meta.scope) %}
            select
                '{{ node.alias }}',
                '{{ node.config.meta.scope }}',
                -- the hash of the configuration it was built with: the plan's, when in the run
                {{ scope_config_hash(model_configs(node)) if not plan else '(select p.config_hash from '
                    ~ plan[0] ~ " as p where p.model_name = '" ~ node.alias ~ "')" }},
                {{ '(select coalesce(max(c.change_id), 0) from ' ~ scope_changes(log) ~ ' as c)'
                    if log else 'null::bigint' }},
                -- when built whole; without the plan in the run, it was (built_whole())
                case
                    when
                        {{ 'true' if not plan else '(select p.built_whole from ' ~ plan[0]
                            ~ " as p where p.model_name = '" ~ node.alias ~ "') is not false" }}
                        then '{{ run_started_at }}'::timestamptz
                end,
                '{{ run_started_at }}'::timestamptz
            {{ 'union all' if not loop.last }}
        {%- endfor %}
        on conflict (model_name) do update
        set
            scope = excluded.scope,
            config_hash = excluded.config_hash,
            change_id = excluded.change_id,
            full_at = coalesce(excluded.full_at, m.full_at),
            updated_at = excluded.updated_at
    {%- endif %}
{%- endmacro %}


{#- Changes every model of the log has taken in are deleted when the next run starts (until
    then they say what the last run changed); a model not run for 30 days does not hold them
    back (it is built whole when it runs again). The data tests' bookkeeping
    (macros/test_scopes.sql) holds back the visitors' changes it has not tested. -#}
{% macro prune_changes() -%}
    {%- for log, scopes in [
        ('device', "'visitor', 'order', 'device'"), ('customer', "'customer'"), ('day', "'day'"),
    ] %}
    delete from {{ scope_changes(log) }}
    where change_id <= (
        select min(m.change_id) from {{ incremental_manifest() }} as m
        where m.scope in ({{ scopes }}) and m.updated_at > now() - interval '30 days'
    );
    {%- endfor %}
{%- endmacro %}
