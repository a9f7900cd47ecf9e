-- One row per alert rule instance and evaluated period: the series Superset draws (value,
-- baseline and band) with the verdict, the state after it, and whether the alert fired or
-- resolved in that period. A view over the evaluator's tables: always current.
with

evaluations as (

    select * from {{ ref('stg_alerts__evaluations') }}

),

instances as (

    select * from {{ ref('stg_alerts__instances') }}

),

rule_versions as (

    select * from {{ ref('stg_alerts__rule_versions') }}

),

-- A period fires (or resolves) an instance when a transition to that state names it; the
-- evaluator stores at most one per instance, period and target state.
period_transitions as (

    select
        instance_id,
        period_start,
        bool_or(to_state = 'firing') as is_fired,
        bool_or(to_state = 'resolved') as is_resolved
    from {{ ref('stg_alerts__transitions') }}
    where to_state in ('firing', 'resolved')
    group by instance_id, period_start

),

final as (

    select
        evaluations.instance_id,
        instances.rule_id,
        -- the rule as it was when this period was evaluated
        coalesce(rule_versions.rule_name, instances.rule_id) as rule_name,
        instances.site_id,
        rule_versions.severity,
        rule_versions.metric,
        rule_versions.condition_type,
        rule_versions.grain,
        rule_versions.window_seconds,
        instances.dimension,
        instances.dimension_value,
        concat_ws(
            ' · ', coalesce(rule_versions.rule_name, instances.rule_id), instances.site_id,
            instances.dimension_value
        ) as alert_series,
        evaluations.period_start,
        evaluations.period_end,
        evaluations.period_start_utc,
        evaluations.value,
        evaluations.volume,
        evaluations.baseline,
        evaluations.lower_bound,
        evaluations.upper_bound,
        evaluations.verdict,
        evaluations.verdict = 'breach' as is_breach,
        evaluations.detail,
        evaluations.state,
        coalesce(period_transitions.is_fired, false) as is_fired,
        coalesce(period_transitions.is_resolved, false) as is_resolved,
        -- the value again, only where the alert fired: drawn as points over the series
        case when period_transitions.is_fired then evaluations.value end as fired_value,
        evaluations.evaluation_id,
        evaluations.rule_version,
        evaluations.evaluated_at
    from evaluations
    inner join instances
        on evaluations.instance_id = instances.instance_id
    left join rule_versions
        on
            instances.rule_id = rule_versions.rule_id
            and evaluations.rule_version = rule_versions.rule_version
    left join period_transitions
        on
            evaluations.instance_id = period_transitions.instance_id
            and evaluations.period_start = period_transitions.period_start

)

select * from final
