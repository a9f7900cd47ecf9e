-- Evaluated periods of alert rule instances (alerts.evaluations): the value, its baseline
-- and band, the verdict and the state after it.
with

source as (

    select * from {{ source_or_empty('alerts', 'evaluations', {
        'instance_id': 'text', 'period_start': 'timestamp', 'period_end': 'timestamp',
        'period_start_utc': 'timestamptz', 'value': 'double precision',
        'volume': 'double precision', 'baseline': 'double precision',
        'lower_bound': 'double precision', 'upper_bound': 'double precision',
        'verdict': 'text', 'detail': 'text', 'state': 'text', 'evaluation_id': 'text',
        'rule_version': 'text', 'evaluated_at': 'timestamptz'
    }) }}

),

renamed as (

    select
        instance_id,
        period_start,
        period_end,
        period_start_utc,
        value,
        volume,
        baseline,
        lower_bound,
        upper_bound,
        verdict,
        detail,
        state,
        evaluation_id,
        rule_version,
        evaluated_at
    from source

)

select * from renamed
