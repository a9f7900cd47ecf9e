-- Every version of an alert rule (alerts.rule_versions, written by the evaluator): the
-- fields the marts show, read out of the rule's canonical JSON (AlertRule as in sites.yml).
with

source as (

    select * from {{ source_or_empty('alerts', 'rule_versions', {
        'rule_id': 'text', 'rule_version': 'text', 'definition': 'jsonb',
        'first_seen_at': 'timestamptz'
    }) }}

),

renamed as (

    select
        rule_id,
        rule_version,
        -- a rule without a name is shown by its id
        coalesce(nullif(definition ->> 'name', ''), rule_id) as rule_name,
        definition ->> 'metric' as metric,
        definition ->> 'grain' as grain,
        -- real-time rules: their sliding window in seconds (null for rules with a grain)
        case
            when jsonb_typeof(definition -> 'window') = 'number'
                then (definition ->> 'window')::numeric::integer
        end as window_seconds,
        definition ->> 'severity' as severity,
        definition -> 'condition' ->> 'type' as condition_type,
        definition ->> 'by' as split_by,
        first_seen_at
    from source

)

select * from renamed
