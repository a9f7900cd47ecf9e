-- noqa: disable=LT02
{#- Incremental models above the sessionisation rebuild whole devices.

    A device's visits depend only on its own events, so a model keyed by (site_id,
    visitor_id) stays exact if every run rebuilds every device that int_events_sessionised
    (re)wrote since the model's last run - it stamps each row it writes with
    `sessionised_at` - and no other:

      pre-hook   device_scope_start(...)  writes the devices in scope to a temporary table
                                          and deletes their rows from the model
      model      ... where ... {{ in_device_scope() }}  (the events of those devices)
      post-hook  device_scope_done(...)   remembers the newest sessionised_at consumed

    The watermark is kept per model with a hash of the configuration the model reads
    (`configs`: the names of config.* staging views): when sites.yml changes what the model
    computes, the hash differs and every device is in scope, so the model is rebuilt with
    its history. `extra_scope` adds devices for a model with a dependency across devices
    (an order counted in another device's visit). -#}

{% macro device_scope_watermarks() -%}
    {{ generate_schema_name('intermediate', none) }}.model_watermarks
{%- endmacro %}


{% macro device_scope_config_hash(configs) -%}
    md5(concat_ws('|'
    {%- for name in configs %},
        (select string_agg(c::text, ',' order by c::text) from {{ ref(name) }} as c)
    {%- endfor %}))
{%- endmacro %}


{% macro device_scope_relation() -%}
    {{ this.identifier }}__device_scope
{%- endmacro %}


{% macro device_scope_watermarks_table() -%}
    create table if not exists {{ device_scope_watermarks() }} (
        model_name text primary key,
        sessionised_at timestamptz,
        config_hash text
    )
{%- endmacro %}


{% macro device_scope_config_changed(configs) -%}
    -- whether the configuration this model reads differs from its last run's (or is unknown)
    not exists (
        select 1
        from {{ device_scope_watermarks() }} as w
        where
            w.model_name = '{{ this.identifier }}'
            and w.config_hash = {{ device_scope_config_hash(configs) }}
    )
{%- endmacro %}


{% macro device_scope_start(configs, extra_scope=none) -%}
    {{ device_scope_watermarks_table() }};
    {%- if is_incremental() %}
    drop table if exists {{ device_scope_relation() }};
    create temporary table {{ device_scope_relation() }} as
    select distinct
        scope.site_id,
        scope.device_key
    from (
        select
            site_id,
            device_key
        from {{ ref('int_events_sessionised') }}
        where sessionised_at > (
            select w.sessionised_at
            from {{ device_scope_watermarks() }} as w
            where
                w.model_name = '{{ this.identifier }}'
                and w.config_hash = {{ device_scope_config_hash(configs) }}
        )
        union all
        -- no watermark for this configuration: every device
        select
            site_id,
            device_key
        from {{ ref('int_events_sessionised') }}
        where {{ device_scope_config_changed(configs) }}
        {%- if extra_scope %}
        union all
        {{ extra_scope }}
        {%- endif %}
    ) as scope;
    create index on {{ device_scope_relation() }} (site_id, device_key);
    analyze {{ device_scope_relation() }};
    delete from {{ this }} as t
    using {{ device_scope_relation() }} as s
    where t.site_id = s.site_id and t.visitor_id = s.device_key;
    {%- endif %}
{%- endmacro %}


{% macro device_scope_done(configs) -%}
    {#- int_events_sessionised records its configuration too (a ref to itself is a cycle) -#}
    {%- if this.identifier == 'int_events_sessionised' %}
        {%- set events = this %}
    {%- else %}
        {%- set events = ref('int_events_sessionised') %}
    {%- endif %}
    insert into {{ device_scope_watermarks() }} as w (model_name, sessionised_at, config_hash)
    select
        '{{ this.identifier }}',
        (select coalesce(max(sessionised_at), '-infinity') from {{ events }}),
        {{ device_scope_config_hash(configs) }}
    on conflict (model_name) do update
    set sessionised_at = excluded.sessionised_at, config_hash = excluded.config_hash
{%- endmacro %}


{% macro int_sessions_orders_moved() -%}
    -- devices with a visit whose orders differ from int_orders' (an order id tracked twice,
    -- now counted in another device's visit)
    select coalesce(s.site_id, o.site_id), coalesce(s.visitor_id, o.visitor_id)
    from (
        select site_id, session_id, visitor_id, count(*) as transactions, sum(revenue) as revenue
        from {{ ref('int_orders') }}
        group by site_id, session_id, visitor_id
    ) as o
    full join (
        select site_id, session_id, visitor_id, transactions, revenue
        from {{ this }}
        where transactions > 0
    ) as s on o.session_id = s.session_id
    where
        s.session_id is null or o.session_id is null
        or s.transactions <> o.transactions or s.revenue <> coalesce(o.revenue, 0)
{%- endmacro %}


{#- The model's filter on the events it reads: the devices in scope (incremental runs only). -#}
{% macro in_device_scope(site_id='site_id', device_key='device_key') -%}
    {%- if is_incremental() %}
        and ({{ site_id }}, {{ device_key }}) in (
            select
                scope.site_id,
                scope.device_key
            from {{ device_scope_relation() }} as scope
        )
    {%- endif %}
{%- endmacro %}
