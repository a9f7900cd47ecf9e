-- Which query parameter fills which campaign field (config.campaign_parameters).
with

source as (

    select * from {{ source_or_empty('config', 'campaign_parameters', {
        'site_id': 'text', 'field': 'text', 'position': 'bigint', 'parameter': 'text'
    }) }}

),

renamed as (

    select
        site_id,
        field as campaign_field,
        position as parameter_position,
        parameter as parameter_name
    from source

)

select * from renamed
