{#- How an incremental model reads and replaces the rows of its scope (macros/incremental/
    plan.sql): the visitors, orders, customers or days of its scope model.

    A run that is not built whole deletes the model's rows of the scope's keys in its
    pre-hook (delete_changed_rows) and writes them again from the rows its query reads of
    those keys (scoped_rows); a run built whole deletes every row and reads everything.

    The rows are probed one key at a time through each relation's (site_id, key, ...) index,
    driven by the scope model (a small table, analyzed when built, in key order: the probes
    then walk each index in its order). "offset 0" keeps each probe a subquery run per key,
    and the whole a subquery the joins above take as it is: flattened, the loop over the keys
    could end up outside a join. Earlier forms, each planned wrong: an IN over the scope's
    (site_id, key) pairs (a semi-join estimated at a quarter of the table, read by full
    scans), and the keys as an array (the planner takes an array it cannot see for ten
    elements, and planned every join above it for a handful of rows). -#}

{#- Declares to dbt's parser the scope model `scope_model` this model rebuilds from (and, for
    crm.customers, `also`: more keys it rebuilds): in the lineage, and built before it. Read
    only in a run not built whole, so a dbt unit test needs no input for them. -#}
{% macro incremental_by(scope_model, also=[]) -%}
    {%- if not execute %}
        {%- do ref(scope_model) %}
        {%- for name in also %}{% do ref(name) %}{% endfor %}
    {%- endif %}
{%- endmacro %}


{#- The keys this model rebuilds: its scope model's, plus those of the models named in
    `meta: {also_rebuilds: [...]}` (crm.customers: the customers whose scores moved). A FROM
    item of (site_id, scope_key). -#}
{% macro scope_keys() -%}
    {%- set scope_name, key = scope_model(model.config.meta.scope) %}
    (
        select
            s.site_id,
            s.{{ key }} as scope_key
        from {{ ref(scope_name) }} as s
    {%- for extra in model.config.meta.get('also_rebuilds', []) %}
        union
        select
            e.site_id,
            e.{{ key }}
        from {{ ref(extra) }} as e
    {%- endfor %}
    )
{%- endmacro %}


{#- What the model reads of `relation`: in a run not built whole, the rows of its scope's
    keys (`key`: the relation's column holding them; `where`: a condition on the relation's
    columns inside each probe, one a partial index needs to be chosen), else the whole
    relation. A FROM item: `from {{ scoped_rows(ref('x'), key='visitor_id') }}` (no alias: it
    names the rows itself). -#}
{% macro scoped_rows(relation, key='device_key', site_id='site_id', where=none) -%}
    {%- if not built_whole() -%}
    (
        select scoped.*
        from {{ scope_keys() }} as scope
        cross join lateral (
            select r.*
            from {{ relation }} as r
            where
                r.{{ site_id }} = scope.site_id and r.{{ key }} = scope.scope_key
                and {{ where or 'true' }}
            offset 0  -- noqa: AM09
        ) as scoped
        offset 0  -- noqa: AM09
    ) as in_scope
    {%- else -%}
        {{ relation }}
    {%- endif %}
{%- endmacro %}


{#- The model's own rows of its scope's keys (`column`: its column holding them), probed key
    by key; `select`: what of each row (`found`, whose columns are `row`). -#}
{% macro scope_this_rows(column, select='found.*', row='t.*') -%}
    select {{ select }}
    from {{ scope_keys() }} as k
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


{#- pre-hook: the rows the run writes again are deleted - every row when it is built whole,
    else the rows of the scope's keys (`column`: the model's column holding them), found
    key by key and deleted by row id. keep_deleted: the deleted rows are kept in a temporary
    table (deleted_relation()), for a post-hook that logs what changed (log_changed_days,
    log_changed_customers, log_moved_orders) or moves counts (customer_values_after); kept
    as the delete returns them, so each row is probed once. -#}
{% macro delete_changed_rows(column, keep_deleted=false) -%}
    {%- if is_incremental() and built_whole() %}
    delete from {{ this }}
    {%- elif is_incremental() and keep_deleted %}
    drop table if exists {{ deleted_relation() }};
    create temporary table {{ deleted_relation() }} as
    select * from {{ this }}
    with no data;
    with deleted as (
        delete from {{ this }}
        where ctid = any(array({{ scope_this_rows(column, 'found.ctid', row='t.ctid') }}))
        returning *
    )

    insert into {{ deleted_relation() }}
    select * from deleted
    {%- elif is_incremental() %}
    delete from {{ this }}
    where ctid = any(array({{ scope_this_rows(column, 'found.ctid', row='t.ctid') }}))
    {%- endif %}
{%- endmacro %}


{#- post-hook of every model (dbt_project.yml): an incremental model built whole records it in
    int_incremental_manifest in its own transaction (a run that stops before its on-run-end
    leaves the models that read it knowing they must be built whole), and gets its statistics
    now - the next run plans its probes on them, and autovacuum's may come later. -#}
{% macro after_built_whole() -%}
    {% if model.config.meta.get('scope') and built_whole() -%}
        insert into {{ incremental_manifest() }} as m (
            model_name, scope, config_hash, change_id, full_at, updated_at
        )
        values (
            '{{ this.identifier }}', '{{ model.config.meta.scope }}', '', null,
            '{{ run_started_at }}'::timestamptz, '{{ run_started_at }}'::timestamptz
        )
        on conflict (model_name) do update set full_at = excluded.full_at
        {%- if model.config.materialized == 'incremental' %};
            analyze {{ this }}
        {%- endif %}
    {%- endif %}
{%- endmacro %}
