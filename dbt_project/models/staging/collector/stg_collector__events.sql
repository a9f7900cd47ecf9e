-- Tracker events: renamed and cast, device clocks corrected, nothing else.
with

source as (

    select * from {{ source_or_empty('raw_collector', 'events', {
        'event_id': 'text', 'type': 'text', 'site_id': 'text', 'visitor_id': 'text',
        'session_id': 'text', 'user_id': 'text', 'occurred_at': 'timestamptz',
        'sent_at': 'timestamptz', 'received_at': 'timestamptz', 'url': 'text',
        'referrer': 'text', 'title': 'text', 'user_agent': 'text', 'ip': 'text',
        'country': 'text', 'network_key': 'text', 'is_bot': 'boolean', 'bot_reason': 'text', 'browser': 'text',
        'browser_version': 'text', 'os': 'text', 'os_version': 'text', 'device_family': 'text',
        'device_type': 'text', 'page_host': 'text', 'page_path': 'text', 'page_query': 'text',
        'referrer_host': 'text', 'attributes': 'jsonb', 'segment': 'text', 'segment_line': 'bigint',
        '_dlt_load_id': 'text'
    }) }}

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
        -- (sent_at - received_at) measured when the event arrived. When the device's two
        -- stamps are no wait it can have had (sent before it happened, or queued for more
        -- than a year) its clock is unusable: the event is placed at its arrival. (Any
        -- stamps the loader holds, 0001..9999, then give a time PostgreSQL can hold.)
        case
            when {{ device_wait_is_plausible() }} then received_at - (sent_at - occurred_at)
            else received_at
        end as occurred_at,
        occurred_at as device_occurred_at,
        sent_at as device_sent_at,
        received_at,
        -- How long the event waited on the device before it was sent (offline queue); 0
        -- when the device's clock is unusable.
        case
            when {{ device_wait_is_plausible() }} then sent_at - occurred_at
            else interval '0'
        end as send_delay,
        url as page_url,
        -- Parsed at load; rows loaded before that are parsed here.
        coalesce(page_host, {{ url_host('url') }}) as page_host,
        coalesce(page_path, {{ url_path('url') }}) as page_path,
        coalesce(page_query, {{ url_query('url') }}) as page_query,
        referrer as referrer_url,
        coalesce(referrer_host, {{ url_host('referrer') }}) as referrer_host,
        title as page_title,
        user_agent,
        ip as ip_address,
        country as country_code,
        network_key,
        coalesce(is_bot, false) as is_bot,
        bot_reason,
        browser,
        browser_version,
        os,
        os_version,
        device_family,
        device_type,
        -- The client's numbers: NULL when not a number or out of bounds (client_number.sql).
        attributes ->> 'category' as event_category,
        attributes ->> 'action' as event_action,
        attributes ->> 'label' as event_label,
        {{ client_number("attributes -> 'value'", 'numeric', -999999999999.99, 999999999999.99) }}
            as event_value,
        attributes -> 'properties' as event_properties,
        attributes ->> 'order_id' as order_id,
        {{ client_amount("attributes -> 'revenue'") }} as revenue,
        {{ client_amount("attributes -> 'shipping'") }} as shipping,
        {{ client_amount("attributes -> 'tax'") }} as tax,
        attributes ->> 'currency' as currency,
        case when jsonb_typeof(attributes -> 'items') = 'array' then attributes -> 'items' end as items,
        {{ client_number("attributes -> 'engaged_seconds'", 'numeric', 0, 3600) }} as engaged_seconds,
        case
            when jsonb_typeof(attributes -> 'granted') = 'boolean' then (attributes ->> 'granted')::boolean
        end as consent_granted,
        attributes -> 'traits' as traits,
        {{ client_timing("attributes -> 'performance' -> 'dns_ms'") }} as dns_ms,
        {{ client_timing("attributes -> 'performance' -> 'connect_ms'") }} as connect_ms,
        {{ client_timing("attributes -> 'performance' -> 'ttfb_ms'") }} as ttfb_ms,
        {{ client_timing("attributes -> 'performance' -> 'dom_interactive_ms'") }} as dom_interactive_ms,
        {{ client_timing("attributes -> 'performance' -> 'load_ms'") }} as page_load_ms,
        attributes ->> 'screen' as screen_resolution,
        attributes ->> 'viewport' as viewport_size,
        attributes ->> 'language' as browser_language,
        attributes ->> 'timezone' as browser_timezone,
        attributes ->> 'connection' as connection_type,
        attributes,
        segment as landing_segment,
        segment_line as landing_line,
        _dlt_load_id as load_id
    from source

)

select * from renamed
