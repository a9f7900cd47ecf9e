-- Goals from sites.yml (config.goals).
with

source as (

    select * from {{ source_or_empty('config', 'goals', {
        'site_id': 'text', 'goal_id': 'text', 'goal_name': 'text', 'match_type': 'text',
        'path_regex': 'text', 'event_category': 'text', 'event_action': 'text',
        'goal_value': 'double precision'
    }) }}

),

renamed as (

    select
        site_id,
        goal_id,
        goal_name,
        match_type,
        path_regex,
        event_category,
        event_action,
        goal_value::numeric(14, 2) as goal_value
    from source

)

select * from renamed
