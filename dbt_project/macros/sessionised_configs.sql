{#- post-hook: the loads read are recorded (macros/loads_read.sql), and the visitors whose
    rows this run (re)wrote are logged for the models above (macros/incremental/); a run that
    sessionised everything again logs none: the models above are built whole after it. -#}
{% macro sessionised_done() -%}
    {%- set whole = built_whole() %}
    {{ loads_done(forget=whole) }};
    {%- if not whole %}
    insert into {{ scope_changes('device') }} (site_id, device_key)
    select distinct site_id, device_key
    from {{ this }}
    where sessionised_at = now();
    {%- endif %}
    -- partial indexes over the few rows two models read: late events (agg_late_events)
    -- and transactions in order of order id (int_orders: else a scan of every event)
    {{ partial_index('(site_id, occurred_at)', 'is_late') }};
    {{ partial_index(
        '(site_id, order_id, occurred_at, event_id)',
        "event_type = 'transaction' and order_id is not null and session_id is not null"
    ) }};
    -- and the orders of a visitor (int_orders_changed_this_run)
    {{ partial_index(
        '(site_id, device_key, order_id)', "event_type = 'transaction' and order_id is not null"
    ) }}
{%- endmacro %}


{#- The dlt loads this model reads, by id (macros/loads_read.sql: each raw schema's staging
    view of completed loads): an incremental run notes the completed loads not recorded yet
    when it compiles (sessionised_new_rows); a run that reads everything notes every
    completed load in its pre-hook, before the query runs (the query may see a load
    committed since: it is read again next run and replaces its rows by event id). The
    post-hook records them. (It asked for "the first row of each recent load" in this
    table, with ten minutes' overlap: a seq scan of the whole table for every new load.) -#}
{% macro sessionised_loads() -%}
    {{- return({
        'raw_collector': ref('stg_collector__loads'), 'raw_logfiles': ref('stg_logfiles__loads')
    }) }}
{%- endmacro %}


{#- pre-hook: a run that reads everything notes the loads first. -#}
{% macro sessionised_start() -%}
    {% if built_whole() %}
        {{ note_loads(sessionised_loads(), only_new=false) }}
    {% endif %}
{%- endmacro %}


{#- An incremental run's new rows: the staging rows of the loads it has not read yet (noted
    in new_loads_relation), copied into two temporary tables when the model compiles (on
    the connection its hooks run on) and analyzed, so the planner knows how many they are
    and what they hold. Returns {'tracker': copy, 'log': copy} for unified_events().
    (Before, the raw tables' load ids were analyzed to the same end, slowly; without, the planner takes a load it has no statistics of for a row or two and
    plans nested loops over thousands; a load may have come before its loader created the
    table.) The copies are read through the raw tables' load-id indexes. Only the columns
    the query joins, filters or groups on are analyzed: all of them (jsonb properties,
    items, URLs) took most of the copies' time. -#}
{% macro sessionised_new_rows() -%}
    {%- set copies = {
        'tracker': this.identifier ~ '__new_tracker_rows',
        'log': this.identifier ~ '__new_log_rows',
    } %}
    {%- if execute and run_query is defined %}
        {%- set found = new_load_ids(sessionised_loads()) %}
        {%- set statements = [] %}
        {%- set request = ['site_id', 'network_key', 'ip_address', 'user_agent', 'page_path',
            'page_query', 'referrer_host', 'load_id'] %}
        {%- for kind, raw, staging, columns in [
            ('tracker', 'raw_collector', ref('stg_collector__events'),
                ['event_id', 'event_type', 'visitor_id', 'occurred_at'] + request),
            ('log', 'raw_logfiles', ref('stg_logfiles__hits'),
                ['hit_id', 'requested_at', 'is_bot', 'is_static', 'http_status'] + request),
        ] %}
            {%- do statements.append(
                'drop table if exists ' ~ copies[kind] ~ '; create temporary table '
                ~ copies[kind] ~ ' as select * from ' ~ staging ~ ' where load_id in ('
                ~ sql_literals(found[raw]) ~ '); analyze ' ~ copies[kind]
                ~ ' (' ~ columns | join(', ') ~ ')'
            ) %}
        {%- endfor %}
        {%- do run_query(statements | join('; ')) %}
    {%- endif %}
    {{- return(copies) }}
{%- endmacro %}
