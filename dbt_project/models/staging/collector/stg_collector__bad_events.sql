-- Payloads the collector rejected, with the reason (the quarantine), renamed only.
with

source as (

    select * from {{ source_or_empty('raw_collector', 'bad_events', {
        'bad_event_id': 'text', 'received_at': 'timestamptz', 'site_id': 'text',
        'status': 'bigint', 'reason': 'text', 'payload': 'text', 'origin': 'text', 'path': 'text'
    }) }}

),

renamed as (

    select
        bad_event_id,
        site_id,
        received_at,
        status as http_status,
        reason,
        payload,
        origin,
        path as request_path
    from source

)

select * from renamed
