-- Ordered funnel steps from sites.yml (config.funnel_steps).
with

source as (

    select * from {{ source_or_empty('config', 'funnel_steps', {
        'site_id': 'text', 'funnel_id': 'text', 'funnel_name': 'text', 'step_number': 'bigint',
        'step_name': 'text', 'match_type': 'text', 'path_regex': 'text',
        'event_category': 'text', 'event_action': 'text'
    }) }}

),

renamed as (

    select
        site_id,
        funnel_id,
        funnel_name,
        step_number::integer as step_number,
        step_name,
        match_type,
        path_regex,
        event_category,
        event_action
    from source

)

select * from renamed
