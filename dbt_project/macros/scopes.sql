-- noqa: disable=LT02
{#- Incremental models above the sessionisation rebuild a scope: whole devices or whole
    customers.

    A device's visits depend only on its own events, and a customer's figures only on the
    visits of its devices. So a model keyed by device (site_id, visitor_id) or by customer
    (site_id, customer_key) stays exact if every run rebuilds every device or customer that
    changed since its own last run, and no other. Changes are logged, each with an id that
    only grows, in intermediate.changed_devices and intermediate.changed_customers:

      int_events_sessionised  logs the devices whose rows it (re)wrote
      int_sessions            logs the devices whose orders moved to another device's visit
      fct_sessions            logs the customers of the devices it rebuilt (before and after:
                              a login moves a device to another customer)

    and int_sessions logs the local days of the visits it changed in intermediate.changed_days
    (macros/day_scopes.sql), which agg_daily_site_kpis recomputes.

    A scoped model runs as

      pre-hook   scope_start(...)  notes the newest change id, writes the devices or
                                   customers changed since the model's watermark to a
                                   temporary table and deletes their rows
      model      ... from {{ scoped_rows(ref(...)) }}  (reads the rows of those devices or
                                   customers)
      post-hook  scope_done(...)   moves the watermark to the noted change id

    Each model's watermark (intermediate.scope_watermarks) also keeps a hash of the
    configuration the scoped models read (scope_configs) and when the model was last
    built whole. The model rebuilds everything - it deletes its rows and reads every
    input - when it has no watermark, when sites.yml changed that configuration, when a
    model it reads was built whole since (a full refresh, new visit rules), or when it
    has not run for 30 days (older changes are pruned). -#}

{% macro scope_watermarks() -%}
    {{ generate_schema_name('intermediate', none) }}.scope_watermarks
{%- endmacro %}


{% macro scope_changes(scope) -%}
    {{ generate_schema_name('intermediate', none) }}.changed_{{ scope }}s
{%- endmacro %}


{% macro scope_key(scope) -%}
    {{ scope }}_key
{%- endmacro %}


{% macro scope_tables() -%}
    create schema if not exists {{ generate_schema_name('intermediate', none) }};
    create table if not exists {{ scope_watermarks() }} (
        model_name text primary key,
        scope text,
        config_hash text not null,
        change_id bigint,
        full_at timestamptz,
        updated_at timestamptz not null
    );
    {%- for scope in ['device', 'customer'] %}
    create table if not exists {{ scope_changes(scope) }} (
        change_id bigint generated always as identity primary key,
        site_id text not null,
        {{ scope_key(scope) }} text not null
    );
    {%- endfor %}
    -- local days whose visits changed, as ranges (macros/day_scopes.sql)
    create table if not exists {{ scope_changes('day') }} (
        change_id bigint generated always as identity primary key,
        site_id text not null,
        from_day date not null,
        to_day date not null
    );
{%- endmacro %}


{#- Whether the configuration `configs` (names of stg_config models and seeds) differs from
    the one this incremental model last ran with (asked when the model runs; the linter's
    templater has no database, hence the guard). -#}
{% macro configs_changed(configs) -%}
    {%- if execute and is_incremental() and run_query is defined %}
        {%- set answer = run_query(scope_tables() ~ '; select ' ~ scope_config_changed(configs)) %}
        {{- return(answer.columns[0].values()[0]) }}
    {%- endif %}
    {{- return(false) }}
{%- endmacro %}


{#- The configuration the scoped models read, directly or through their inputs. A change to
    any of it rebuilds them all: sites.yml changes are rare, and a partial rule (this model
    reads goals, that one reads funnels) would have to follow every ref. A model may name
    more that only it reads (`meta: {scope_configs: [...]}` in its YAML: int_sessions, the
    channel rules); a change to that rebuilds it, and the models above follow it as after
    any whole build. -#}
{% macro scope_configs() -%}
    {%- set own = model.config.meta.get('scope_configs', []) if execute else [] %}
    {{- return([
        'stg_config__sites', 'stg_config__goals', 'stg_config__funnel_steps',
        'stg_config__page_labels', 'stg_config__campaign_parameters',
    ] + own) }}
{%- endmacro %}


{% macro scope_config_hash(configs) -%}
    md5(concat_ws('|'
    {%- for name in configs %},
        (select string_agg(c::text, ',' order by c::text) from {{ ref(name) }} as c)
    {%- endfor %}))
{%- endmacro %}


{% macro scope_config_changed(configs) -%}
    -- whether the configuration this model reads differs from its last run's (or is unknown)
    not exists (
        select 1
        from {{ scope_watermarks() }} as w
        where
            w.model_name = '{{ this.identifier }}'
            and w.config_hash = {{ scope_config_hash(configs) }}
    )
{%- endmacro %}


{#- The models this one reads (direct parents): one of them built whole since this model's
    last run means this one must be built whole too. -#}
{% macro scope_parents() -%}
    {%- set names = [] %}
    {%- for node in model.depends_on.nodes if node.startswith('model.') %}
        {%- do names.append("'" ~ node.split('.')[-1] ~ "'") %}
    {%- endfor %}
    {{- return(names or ["''"]) }}
{%- endmacro %}


{% macro scope_usable_watermark() -%}
    exists (
        select 1
        from {{ scope_watermarks() }} as w
        where
            w.model_name = '{{ this.identifier }}'
            and w.config_hash = {{ scope_config_hash(scope_configs()) }}
            and w.change_id is not null
            and w.updated_at > now() - interval '30 days'
            and not exists (
                select 1
                from {{ scope_watermarks() }} as p
                where p.model_name in ({{ scope_parents() | join(', ') }}) and p.full_at >= w.updated_at
            )
    )
{%- endmacro %}


{#- Whether this run rebuilds a scope (true) or everything (false). Asked when the model
    runs; the linter's templater has no database, hence the guard. -#}
{% macro scoped() -%}
    {%- if execute and is_incremental() and run_query is defined %}
        {%- set answer = run_query(scope_tables() ~ '; select ' ~ scope_usable_watermark()) %}
        {{- return(answer.columns[0].values()[0]) }}
    {%- endif %}
    {{- return(false) }}
{%- endmacro %}


{% macro scope_relation() -%}
    {{ this.identifier }}__scope
{%- endmacro %}


{% macro scope_mark_relation() -%}
    {{ this.identifier }}__scope_mark
{%- endmacro %}


{#- The newest change id when the model starts: its watermark once it is done. -#}
{% macro scope_mark(scope='device') -%}
    {{ scope_tables() }};
    drop table if exists {{ scope_mark_relation() }};
    create temporary table {{ scope_mark_relation() }} as
    select coalesce(max(change_id), 0) as change_id from {{ scope_changes(scope) }}
{%- endmacro %}


{#- scope_done's `after` for fct_sessions (with scope_start(keep_deleted=true)): the customers
    of the devices rebuilt, as they were (the rows deleted) and as they are, logged as
    changed (a login moves a device to another customer). -#}
{% macro scope_log_customers(whole) -%}
    {%- if not whole %}
    insert into {{ scope_changes('customer') }} (site_id, customer_key)
    select d.site_id, d.customer_key
    from {{ deleted_relation() }} as d
    union
    {{ scope_this_rows('visitor_id', 'found.site_id, found.customer_key') }}
    {%- endif %}
{%- endmacro %}


{#- pre-hook: `scope` is 'device' or 'customer', `column` the model's column holding its
    key, `extra` a query of more (site_id, key) pairs to rebuild, logged as changes of
    that scope for the models above when `publish_extra`. `keys`: for a model keyed
    otherwise than by its scope (int_orders: by order), a query of the model's own
    (site_id, scope_key) pairs that the scope's devices or customers touch (it reads
    scope_relation()); those are rebuilt, noted in keys_relation(), and
    scoped_rows(..., own_keys=true) reads by them.
    `keep_deleted`: the rows deleted are kept in a temporary table (deleted_relation()),
    for scope_done's `after` - a macro called with whether the model was built whole - to
    log or count what changed (macros/day_scopes.sql, macros/customer_scores.sql); kept as
    the delete returns them, so the rows are probed once (after a full build most of the
    pages they are on are read from disk). -#}
{% macro scope_start(
    scope='device', column='visitor_id', extra=none, publish_extra=false, keys=none,
    keep_deleted=false
) -%}
    {{ scope_mark(scope) }};
    {%- if is_incremental() %}
        {%- if scoped() %}
    {{ scope_collect(scope, extra=extra, publish_extra=publish_extra) }};
            {%- if keys %}
    drop table if exists {{ keys_relation() }};
    create temporary table {{ keys_relation() }} as
    select distinct k.site_id, k.scope_key from ({{ keys }}) as k order by k.site_id, k.scope_key;
    create unique index on {{ keys_relation() }} (site_id, scope_key);
    analyze {{ keys_relation() }};
            {%- endif %}
    -- the rows of the keys, probed key by key as scoped_rows reads them; deleted by their
    -- row ids (a TID scan)
            {%- if keep_deleted %}
    drop table if exists {{ deleted_relation() }};
    create temporary table {{ deleted_relation() }} as
    select * from {{ this }}
    with no data;
    with deleted as (
            {%- endif %}
    delete from {{ this }}
    where ctid = any (array(
        {{ scope_this_rows(column, 'found.ctid', keys=keys_relation() if keys else none, row='t.ctid') }}
    ))
            {%- if keep_deleted %}
    returning *
    )
    insert into {{ deleted_relation() }}
    select * from deleted
            {%- endif %};
        {%- else %}
    -- built whole: the watermark is missing, stale or from another configuration, or a
    -- model read here was built whole since
    delete from {{ this }};
        {%- endif %}
    {%- endif %}
{%- endmacro %}


{#- The model's rows of the scope's keys (`column`: the model's column holding them), probed
    key by key; `select`: what of each row (`found`, whose columns are `row`); `keys`: another
    relation of (site_id, scope_key) than the scope's. -#}
{% macro scope_this_rows(column, select='found.*', keys=none, row='t.*') -%}
    select {{ select }}
    from {{ keys or scope_relation() }} as k
    cross join lateral (
        select {{ row }}
        from {{ this }} as t
        where t.site_id = k.site_id and t.{{ column }} = k.scope_key
        offset 0  -- noqa: AM09
    ) as found
{%- endmacro %}


{% macro deleted_relation() -%}
    {{ this.identifier }}__deleted
{%- endmacro %}


{% macro keys_relation() -%}
    {{ this.identifier }}__keys
{%- endmacro %}


{#- Whether change `alias` is one this run takes: after the model's watermark, up to the
    change id noted when it started (scope_mark). -#}
{% macro scope_since(alias) -%}
    {{ alias }}.change_id > (
                select w.change_id from {{ scope_watermarks() }} as w
                where w.model_name = '{{ this.identifier }}'
            )
            and {{ alias }}.change_id <= (select m.change_id from {{ scope_mark_relation() }} as m)
{%- endmacro %}


{#- The devices or customers changed since the model's watermark (and the `extra` ones), in
    a temporary table (scope_relation) with a unique index, analyzed. -#}
{% macro scope_collect(scope='device', extra=none, publish_extra=false) -%}
    drop table if exists {{ scope_relation() }};
    create temporary table {{ scope_relation() }} as
    select
        changes.site_id,
        changes.scope_key,
        bool_or(changes.is_extra) as is_extra
    from (
        select
            c.site_id,
            c.{{ scope_key(scope) }} as scope_key,
            false as is_extra
        from {{ scope_changes(scope) }} as c
        where {{ scope_since('c') }}
            {%- if extra %}
        union all
        select
            extra.*,
            true as is_extra
        from ({{ extra }}) as extra
            {%- endif %}
    ) as changes
    group by changes.site_id, changes.scope_key
    -- in key order: the probes driven by this table then walk each index in its order (the
    -- pages a run reads after a full build are mostly on disk, not cached)
    order by changes.site_id, changes.scope_key;
    create unique index on {{ scope_relation() }} (site_id, scope_key);
    analyze {{ scope_relation() }}
    {%- if publish_extra %};
    insert into {{ scope_changes(scope) }} (site_id, {{ scope_key(scope) }})
    select distinct site_id, scope_key from {{ scope_relation() }} where is_extra
    {%- endif %}
{%- endmacro %}


{#- What a scoped model reads of `relation`: in a run that rebuilds a scope, the rows of the
    scope's devices or customers (`key` is the relation's column holding them), else the
    whole relation. Use it as a FROM item: `from {{ scoped_rows(ref('x'), key='visitor_id') }}`
    (no alias: it names the scoped rows itself). own_keys: the rows of the model's own keys
    (scope_start's `keys`) instead; `where`: a condition on the relation's columns inside
    each probe (one a partial index needs, to be chosen).

    The rows are probed one scope key at a time through the relation's (site_id, key, ...)
    index, driven by the scope table (analyzed: the planner knows how many keys, and from
    the key column's statistics how many rows). "offset 0" keeps each probe a subquery run
    per key, and the whole a subquery the joins above take as it is: flattened, the loop
    over the keys could end up outside a join (fct_funnel_steps sorted its funnel steps once
    per key). Earlier forms, each planned wrong:
    - an IN over the scope's (site_id, key) pairs: a semi-join estimated at a quarter of the
      table, read by full scans;
    - the keys as an array (`key = any(array(select ...))`): one index scan, but the planner
      takes an array it cannot see for ten elements, so every join above it was planned
      for a handful of rows; and a lookup joined by key to the scoped rows repeated the
      whole array in each of its probes. -#}
{% macro scoped_rows(relation, key='device_key', site_id='site_id', own_keys=false, where=none) -%}
    {%- if is_incremental() and run_query is defined and scoped() -%}
    (
        select scoped.*
        from {{ keys_relation() if own_keys else scope_relation() }} as scope
        cross join lateral (
            select r.*
            from {{ relation }} as r
            where
                r.{{ site_id }} = scope.site_id and r.{{ key }} = scope.scope_key
                {%- if where %} and {{ where }}{% endif %}
            offset 0  -- noqa: AM09
        ) as scoped
        offset 0  -- noqa: AM09
    ) as in_scope
    {%- else -%}
        {{ relation }}
    {%- endif %}
{%- endmacro %}


{#- post-hook: the watermark moves to the change id noted when the model started; a model
    built whole records when. -#}
{% macro scope_done(
    scope='device', configs=none, built_whole=none, after=none
) -%}
    {%- set whole = (not scoped()) if built_whole is none else built_whole %}
    {%- if after %}
    {{ after(whole) }};
    {%- endif %}
    insert into {{ scope_watermarks() }} as w (
        model_name, scope, config_hash, change_id, full_at, updated_at
    )
    select
        '{{ this.identifier }}',
        {%- if scope %}
        '{{ scope }}',
        {{ scope_config_hash(configs or scope_configs()) }},
        (select m.change_id from {{ scope_mark_relation() }} as m),
        {%- else %}
        null,
        {{ scope_config_hash(configs) }},
        null,
        {%- endif %}
        {{ 'now()' if whole else 'null' }},
        now()
    on conflict (model_name) do update
    set
        scope = excluded.scope,
        config_hash = excluded.config_hash,
        change_id = excluded.change_id,
        full_at = coalesce(excluded.full_at, w.full_at),
        updated_at = excluded.updated_at
    {%- if whole %};
    -- statistics now: the next run plans its probes on them, and autovacuum's may come later
    analyze {{ this }}
    {%- endif %}
{%- endmacro %}


{#- Changes every scoped model has consumed are deleted (a model not run for 30 days is
    built whole when it runs again, so it does not hold them back). -#}
{% macro scope_prune() -%}
    {%- for scope in ['device', 'customer', 'day'] %}
    delete from {{ scope_changes(scope) }}
    where change_id <= (
        select min(w.change_id) from {{ scope_watermarks() }} as w
        where w.scope = '{{ scope }}' and w.updated_at > now() - interval '30 days'
    );
    {%- endfor %}
{%- endmacro %}


{#- int_sessions' extra scope: devices with a visit whose orders differ from int_orders' (an
    order id tracked twice, now counted in another device's visit). -#}
{% macro int_sessions_orders_moved() -%}
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


{#- The config of a scoped incremental model: appended rows, its scope's hooks and, when
    given, indexes (else those of the model's YAML). `scope`/`column` as in scope_start;
    `start`/`done`: more arguments for the two hooks, as written in a call; `prepare`: the
    name of a macro whose SQL runs first in the pre-hook. -#}
{% macro scoped_model(
    scope='device', column=none, indexes=none, start='', done='', prepare=none
) -%}
    {%- set key = column or ('customer_key' if scope == 'customer' else 'visitor_id') %}
    {%- set args = "scope='" ~ scope ~ "'" %}
    {%- set settings = {
        'materialized': 'incremental',
        'incremental_strategy': 'append',
        'on_schema_change': 'append_new_columns',
        'pre_hook': ("{{ " ~ prepare ~ "() }}; " if prepare else "")
            ~ "{{ scope_start(" ~ args ~ ", column='" ~ key ~ "'"
            ~ (", " ~ start if start else "") ~ ") }}",
        'post_hook': "{{ scope_done(" ~ args ~ (", " ~ done if done else "") ~ ") }}",
    } %}
    {%- if indexes %}{% do settings.update({'indexes': indexes}) %}{% endif %}
    {{- config(**settings) }}
{%- endmacro %}
