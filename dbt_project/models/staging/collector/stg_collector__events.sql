-- Tracker events: renamed and cast, device clocks corrected, nothing else.
with

source as (

    select * from {{ source('raw_collector', 'events') }}

),

renamed as (

    select
        event_id,
        type as event_type,
        site_id,
        visitor_id,
        session_id as client_session_id,
        user_id,
        -- Trust the collector's clock: shift the device's occurred_at by its offset
        -- (sent_at - received_at) measured when the event arrived.
        received_at - (sent_at - occurred_at) as occurred_at,
        occurred_at as device_occurred_at,
        sent_at as device_sent_at,
        received_at,
        url as page_url,
        referrer as referrer_url,
        title as page_title,
        user_agent,
        ip as ip_address,
        attributes,
        segment as landing_segment,
        segment_line as landing_line
    from source

)

select * from renamed
