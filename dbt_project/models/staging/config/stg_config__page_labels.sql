-- Page groups by path regex (config.page_labels); the lowest position that matches wins.
with

source as (

    select * from {{ source_or_empty('config', 'page_labels', {
        'site_id': 'text', 'position': 'bigint', 'label': 'text', 'path_regex': 'text'
    }) }}

),

renamed as (

    select
        site_id,
        position as label_position,
        label as page_label,
        path_regex
    from source

)

select * from renamed
