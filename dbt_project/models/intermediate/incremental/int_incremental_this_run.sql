-- One row per incremental model: whether this run builds it whole, why, and the watermark
-- it takes its changes after (macros/incremental/plan.sql has the rules). Built before every
-- incremental model, which reads its own row (built_whole()); the scope models take the
-- changes after the oldest watermark of the models they serve.
-- depends_on: {{ ref('stg_config__sites') }}, {{ ref('stg_config__goals') }}
-- depends_on: {{ ref('stg_config__funnel_steps') }}, {{ ref('stg_config__page_labels') }}
-- depends_on: {{ ref('stg_config__campaign_parameters') }}, {{ ref('referrer_hosts') }}
-- depends_on: {{ ref('channel_rules') }}
{{ config(meta={'incremental_bookkeeping': true}) }}

{%- set models = incremental_models() %}

with recursive

manifest as (

    select * from {{ ref('int_incremental_manifest') }}

),

planned (model_name, scope, is_selected, forced_reason, config_hash, needs_loads_recorded) as (

    -- what the graph and the catalog say of each model
    select
        null::text,
        null::text,
        null::boolean,
        null::text,
        null::text,
        null::boolean
    where false
    {%- for node in models %}
        {%- for name in model_configs(node) %}
            {%- if 'model.siteline.' ~ name not in model.depends_on.nodes
                and 'seed.siteline.' ~ name not in model.depends_on.nodes %}
                {{- exceptions.raise_compiler_error(
                    node.name ~ ' reads the configuration ' ~ name ~ ': add it to the depends_on '
                    ~ 'lines of int_incremental_this_run.sql'
                ) }}
            {%- endif %}
        {%- endfor %}
    union all
    select
        '{{ node.alias }}',
        '{{ node.config.meta.scope }}',
        {{ node.unique_id in selected_resources }},
        {{ "'" ~ forced_whole_reason(node) ~ "'" if forced_whole_reason(node) else 'null::text' }},
        {{ scope_config_hash(model_configs(node)) }},
        {{ node.config.meta.get('whole_until_loads_recorded', false) }}
    {%- endfor %}

),

inputs (model_name, input_name) as (

    -- the nearest incremental models each one reads
    select
        null::text,
        null::text
    where false
    {%- for node in models %}
        {%- for input in incremental_inputs(node) %}
    union all
    select
        '{{ node.alias }}',
        '{{ input }}'
        {%- endfor %}
    {%- endfor %}

),

own_reasons as (

    select
        planned.model_name,
        planned.scope,
        planned.is_selected,
        planned.config_hash,
        manifest.change_id as watermark,
        manifest.updated_at as last_built_at,
        case
            when planned.forced_reason is not null then planned.forced_reason
            when manifest.model_name is null then 'first run'
            when manifest.config_hash <> planned.config_hash then 'configuration changed'
            when planned.scope <> 'loads' and manifest.change_id is null then 'no watermark'
            when planned.scope <> 'loads' and manifest.updated_at <= now() - interval '30 days'
                then 'not run for 30 days'
            when planned.needs_loads_recorded and not exists (
                select 1 from {{ loads_read() }} as r
                where r.reader = planned.model_name
            ) then 'no loads recorded'
            else (
                select min(inputs.input_name) || ' built whole since'
                from inputs
                inner join manifest as input_manifest on inputs.input_name = input_manifest.model_name
                where
                    inputs.model_name = planned.model_name
                    and input_manifest.full_at > manifest.updated_at
            )
        end as own_reason
    from planned
    left join manifest on planned.model_name = manifest.model_name

),

whole_this_run (model_name, reason) as (

    -- a model built whole makes every model of the run that reads it built whole
    select
        model_name,
        own_reason
    from own_reasons
    where is_selected and own_reason is not null
    union
    select
        inputs.model_name,
        inputs.input_name || ' built whole this run'
    from whole_this_run
    inner join inputs on whole_this_run.model_name = inputs.input_name
    inner join own_reasons as reader on inputs.model_name = reader.model_name
    where reader.is_selected and reader.own_reason is null

),

final as (

    select
        own_reasons.model_name,
        own_reasons.scope,
        own_reasons.is_selected,
        coalesce(own_reasons.own_reason, whole.reason) is not null as built_whole,
        coalesce(own_reasons.own_reason, whole.reason) as whole_because,
        own_reasons.watermark,
        own_reasons.last_built_at,
        own_reasons.config_hash
    from own_reasons
    left join lateral (
        select min(w.reason) as reason
        from whole_this_run as w
        where w.model_name = own_reasons.model_name
    ) as whole on true

)

select * from final
order by model_name
