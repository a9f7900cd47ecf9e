-- One row per alert rule instance (rule x site x value of the rule's `by`): its current
-- state, since when, and how often it fired. A view over the evaluator's tables.
with

instances as (

    select * from {{ ref('stg_alerts__instances') }}

),

rule_versions as (

    select * from {{ ref('stg_alerts__rule_versions') }}

),

-- An instance not evaluated yet has no version of its own: the rule's latest one.
latest_versions as (

    select distinct on (rule_id) *
    from rule_versions
    order by rule_id asc, first_seen_at desc

),

firings as (

    select
        instance_id,
        count(*) as times_fired,
        max(transitioned_at) as last_fired_at
    from {{ ref('stg_alerts__transitions') }}
    where to_state = 'firing'
    group by instance_id

),

final as (

    select
        instances.instance_id,
        instances.rule_id,
        coalesce(rule_versions.rule_name, latest_versions.rule_name, instances.rule_id)
            as rule_name,
        instances.site_id,
        coalesce(rule_versions.severity, latest_versions.severity) as severity,
        coalesce(rule_versions.metric, latest_versions.metric) as metric,
        coalesce(rule_versions.condition_type, latest_versions.condition_type)
            as condition_type,
        coalesce(rule_versions.grain, latest_versions.grain) as grain,
        coalesce(rule_versions.window_seconds, latest_versions.window_seconds)
            as window_seconds,
        instances.dimension,
        instances.dimension_value,
        concat_ws(
            ' · ',
            coalesce(rule_versions.rule_name, latest_versions.rule_name, instances.rule_id),
            instances.site_id,
            instances.dimension_value
        ) as alert_series,
        instances.state,
        instances.state = 'firing' as is_firing,
        instances.state_since,
        instances.breaching_periods,
        instances.last_period_start,
        instances.last_evaluated_at,
        instances.last_value,
        instances.last_notified_at,
        instances.waiting_for_data as is_waiting_for_data,
        instances.waiting_reason,
        instances.error,
        coalesce(firings.times_fired, 0) as times_fired,
        firings.last_fired_at,
        coalesce(instances.rule_version, latest_versions.rule_version) as rule_version
    from instances
    left join rule_versions
        on
            instances.rule_id = rule_versions.rule_id
            and instances.rule_version = rule_versions.rule_version
    left join latest_versions
        on instances.rule_id = latest_versions.rule_id
    left join firings
        on instances.instance_id = firings.instance_id

)

select * from final
