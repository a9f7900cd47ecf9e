-- Alert rule instances (alerts.instances): one per rule, site and value of the rule's `by`,
-- with the state the evaluator left it in.
with

source as (

    select * from {{ source_or_empty('alerts', 'instances', {
        'instance_id': 'text', 'rule_id': 'text', 'site_id': 'text', 'dimension': 'text',
        'dimension_value': 'text', 'state': 'text', 'state_since': 'timestamptz',
        'breaching_periods': 'integer', 'last_period_start': 'timestamp',
        'last_evaluated_at': 'timestamptz', 'last_value': 'double precision',
        'last_notified_at': 'timestamptz', 'waiting_for_data': 'boolean',
        'waiting_reason': 'text', 'error': 'text', 'rule_version': 'text'
    }) }}

),

renamed as (

    select
        instance_id,
        rule_id,
        site_id,
        dimension,
        dimension_value,
        state,
        state_since,
        breaching_periods,
        last_period_start,
        last_evaluated_at,
        last_value,
        last_notified_at,
        waiting_for_data,
        waiting_reason,
        error,
        rule_version
    from source

)

select * from renamed
