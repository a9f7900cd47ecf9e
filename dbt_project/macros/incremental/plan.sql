{#- Which incremental models a run builds whole, and why (int_incremental_this_run).

    An incremental model says in its config what it is incremental by - `meta: {scope: ...}`:

      visitor   rebuilds the visitors of int_visitors_changed_this_run
      order     rebuilds the orders of int_orders_changed_this_run (int_orders)
      customer  rebuilds the customers of int_customers_changed_this_run
      day       recomputes the days of int_days_changed_this_run (agg_daily_site_kpis)
      loads     reads the dlt loads it has not read yet (macros/loads_read.sql)

    and which configuration it reads (`meta: {configs: [...]}`, the stg_config models and
    seeds; default: every stg_config model). It is built whole - every row deleted, every
    input read - when it has no table or watermark yet, with --full-refresh, when the
    configuration it reads changed since its last run, when it has not run for 30 days (older
    changes are pruned), when its scope model is not part of the run, or when a model it
    reads was built whole since its last run or is built whole in this one. -#}

{#- The configuration models and seeds the model `node` reads. -#}
{% macro model_configs(node) -%}
    {%- set meta = node.config.meta %}
    {{- return(meta.get('configs') or [
        'stg_config__sites', 'stg_config__goals', 'stg_config__funnel_steps',
        'stg_config__page_labels', 'stg_config__campaign_parameters',
    ] + meta.get('more_configs', [])) }}
{%- endmacro %}


{#- A hash of the rows of the configuration models and seeds `configs`. -#}
{% macro scope_config_hash(configs) -%}
    md5(concat_ws('|'
    {%- for name in configs %},
        (select string_agg(c::text, ',' order by c::text) from {{ config_relation(name) }} as c)
    {%- endfor %}))
{%- endmacro %}


{#- The relation of the configuration model or seed `name` (hooks have no ref()). -#}
{% macro config_relation(name) -%}
    {%- if execute %}
        {%- for node in graph.nodes.values() if node.name == name %}
            {%- if node.resource_type in ('model', 'seed') %}{{ return(node.relation_name) }}{% endif %}
        {%- endfor %}
        {{- exceptions.raise_compiler_error('no configuration model or seed named ' ~ name) }}
    {%- endif %}
    {{- return(name) }}
{%- endmacro %}


{#- The scope model a scope's models rebuild from, and the column of its keys. -#}
{% macro scope_model(scope) -%}
    {%- set models = {
        'visitor': ('int_visitors_changed_this_run', 'visitor_id'),
        'order': ('int_orders_changed_this_run', 'order_id'),
        'customer': ('int_customers_changed_this_run', 'customer_key'),
        'day': ('int_days_changed_this_run', 'kpi_date'),
    } %}
    {{- return(models.get(scope)) }}
{%- endmacro %}


{#- The incremental models of the project, with what the plan needs to know of each. -#}
{% macro incremental_models() -%}
    {%- set found = [] %}
    {%- if execute %}
        {%- for node in graph.nodes.values() if node.resource_type == 'model' %}
            {%- if node.config.meta.get('scope') %}{% do found.append(node) %}{% endif %}
        {%- endfor %}
    {%- endif %}
    {{- return(found | sort(attribute='name')) }}
{%- endmacro %}


{#- The nearest incremental models `node` reads (through other models, not through the scope
    models: those are how it reads, not what). -#}
{% macro incremental_inputs(node) -%}
    {%- set found = [] %}
    {%- set seen = [] %}
    {%- set queue = node.depends_on.nodes | list %}
    {%- for _ in range(1000) if queue %}
        {%- set id = queue.pop(0) %}
        {%- if id not in seen and id.startswith('model.') %}
            {%- do seen.append(id) %}
            {%- set parent = graph.nodes[id] %}
            {%- if parent.config.meta.get('scope') %}
                {%- do found.append(parent.alias) %}
            {%- elif not parent.config.meta.get('incremental_bookkeeping') %}
                {%- do queue.extend(parent.depends_on.nodes) %}
            {%- endif %}
        {%- endif %}
    {%- endfor %}
    {{- return(found | unique | sort) }}
{%- endmacro %}


{#- Why `node` must be built whole whatever the manifest says, or none. -#}
{% macro forced_whole_reason(node) -%}
    {%- set scope = node.config.meta.scope %}
    {%- if (flags.FULL_REFRESH and node.config.full_refresh is not false) or node.config.full_refresh %}
        {{- return('full refresh') }}
    {%- endif %}
    {%- set relation = adapter.get_relation(node.database, node.schema, node.alias) %}
    {%- if relation is none %}{{ return('no table yet') }}{% endif %}
    {%- if relation.type != 'table' %}{{ return('not a table yet') }}{% endif %}
    {%- set needed = [] %}
    {%- if scope_model(scope) %}{% do needed.append(scope_model(scope)[0]) %}{% endif %}
    {%- do needed.extend(node.config.meta.get('also_rebuilds', [])) %}
    {%- for name in needed if 'model.siteline.' ~ name not in selected_resources %}
        {{- return(name ~ ' not in this run') }}
    {%- endfor %}
    {{- return(none) }}
{%- endmacro %}


{#- Whether the model being built is built whole this run (int_incremental_this_run); always
    when the plan is not part of the run. -#}
{% macro built_whole() -%}
    {#- parsing (the plan declared: in the lineage, built first), or the linter's templater -#}
    {%- if not execute or run_query is not defined %}
        {%- do ref('int_incremental_this_run') %}
        {{- return(true) }}
    {%- endif %}
    {#- a dbt unit test builds from its given rows, whole -#}
    {%- if model.resource_type == 'unit_test' %}{{ return(true) }}{% endif %}
    {%- if model.config.materialized == 'incremental' and not is_incremental() %}
        {{- return(true) }}
    {%- endif %}
    {%- if 'model.siteline.int_incremental_this_run' not in selected_resources %}
        {{- return(true) }}
    {%- endif %}
    {%- set found = run_query(
        "select p.built_whole from " ~ ref('int_incremental_this_run') ~ " as p where p.model_name = '" ~ this.identifier ~ "'"
    ) %}
    {{- return(found.rows | length == 0 or found.columns[0].values()[0]) }}
{%- endmacro %}
