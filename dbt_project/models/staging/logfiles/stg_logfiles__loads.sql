-- Completed dlt loads of raw_logfiles: when each load's rows became visible.
with

source as (

    select * from {{ source_or_empty('raw_logfiles', '_dlt_loads', {
        'load_id': 'text', 'status': 'bigint', 'inserted_at': 'timestamptz'
    }) }}

),

renamed as (

    select
        load_id,
        inserted_at as loaded_at
    from source
    where status = 0

)

select * from renamed
