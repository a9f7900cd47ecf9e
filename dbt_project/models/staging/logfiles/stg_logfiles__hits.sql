-- Parsed web-server log lines, renamed only (parsing and enrichment happened at load).
with

source as (

    select * from {{ source_or_empty('raw_logfiles', 'hits', {
        'hit_id': 'text', 'site_id': 'text', 'source': 'text', 'requested_at': 'timestamptz',
        'visitor_key': 'text', 'ip': 'text', 'country': 'text', 'method': 'text', 'host': 'text', 'path': 'text',
        'query': 'text', 'protocol': 'text', 'status': 'bigint', 'bytes': 'bigint',
        'referrer': 'text', 'referrer_host': 'text', 'user_agent': 'text', 'time_taken_ms': 'double precision',
        'remote_user': 'text', 'browser': 'text', 'browser_version': 'text', 'os': 'text',
        'os_version': 'text', 'device_family': 'text', 'device_type': 'text',
        'is_bot': 'boolean', 'bot_reason': 'text', 'is_static': 'boolean',
        'file_name': 'text', 'file_fingerprint': 'text', 'byte_offset': 'bigint',
        'line_number': 'bigint', '_dlt_load_id': 'text'
    }) }}

),

renamed as (

    select
        hit_id,
        site_id,
        source as log_source,
        requested_at,
        visitor_key as network_key,
        ip as ip_address,
        country as country_code,
        method as http_method,
        lower(host) as request_host,
        path as page_path,
        query as page_query,
        protocol as http_protocol,
        status as http_status,
        bytes as response_bytes,
        nullif(referrer, '-') as referrer_url,
        coalesce(referrer_host, {{ url_host('referrer') }}) as referrer_host,
        user_agent,
        time_taken_ms,
        remote_user,
        browser,
        browser_version,
        os,
        os_version,
        device_family,
        device_type,
        coalesce(is_bot, false) as is_bot,
        bot_reason,
        coalesce(is_static, false) as is_static,
        file_name,
        file_fingerprint,
        byte_offset,
        line_number,
        _dlt_load_id as load_id
    from source

)

select * from renamed
