-- State changes of alert rule instances (alerts.transitions), with the period that caused
-- each.
with

source as (

    select * from {{ source_or_empty('alerts', 'transitions', {
        'transition_id': 'bigint', 'instance_id': 'text', 'rule_id': 'text',
        'site_id': 'text', 'dimension_value': 'text', 'from_state': 'text',
        'to_state': 'text', 'period_start': 'timestamp', 'value': 'double precision',
        'baseline': 'double precision', 'reason': 'text', 'evaluation_id': 'text',
        'at': 'timestamptz'
    }) }}

),

renamed as (

    select
        transition_id,
        instance_id,
        rule_id,
        site_id,
        dimension_value,
        from_state,
        to_state,
        period_start,
        value,
        baseline,
        reason,
        evaluation_id,
        at as transitioned_at
    from source

)

select * from renamed
