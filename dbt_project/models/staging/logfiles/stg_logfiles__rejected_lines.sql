-- Log lines that did not parse, with where they were and why; renamed only.
with

source as (

    select * from {{ source_or_empty('raw_logfiles', 'rejected_lines', {
        'line_id': 'text', 'site_id': 'text', 'source': 'text', 'file_name': 'text',
        'file_fingerprint': 'text', 'line_number': 'bigint', 'byte_offset': 'bigint',
        'reason': 'text', 'raw': 'text', '_dlt_load_id': 'text'
    }) }}

),

renamed as (

    select
        line_id,
        site_id,
        source as log_source,
        file_name,
        file_fingerprint,
        line_number,
        byte_offset,
        reason,
        raw as raw_line,
        _dlt_load_id as load_id
    from source

)

select * from renamed
