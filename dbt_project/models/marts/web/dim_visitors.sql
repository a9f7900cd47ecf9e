-- One row per visitor id: a browser (the tracker's first-party id) or, for visits only the
-- logs saw, a keyed hash of IP + user agent ("log:..."). customer_key ties visitors of one
-- identified user together. Incremental by visitor (int_visitors_changed_this_run).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
) }}

with

sessions as (

    select * from {{ scoped_rows(ref('fct_sessions'), key='visitor_id') }}

),

final as (

    select
        site_id,
        visitor_id,
        min(customer_key) as customer_key,
        bool_or(user_id is not null) as is_identified,
        min(event_source) as event_source,
        min(started_at) as first_seen_at,
        max(ended_at) as last_seen_at,
        count(*) as sessions,
        sum(page_views) as page_views,
        sum(engaged_seconds) as engaged_seconds,
        sum(transactions) as transactions,
        {{ client_amount('sum(revenue)', json=false) }} as revenue,
        (array_agg(channel_id order by started_at, session_id))[1] as first_channel_id,
        (array_agg(campaign_name order by started_at, session_id))[1] as first_campaign_name,
        (array_agg(device_sk order by started_at desc, session_id asc))[1] as device_sk,
        (array_agg(device_type order by started_at desc, session_id asc))[1] as device_type,
        (array_agg(country_code order by started_at desc, session_id asc))[1] as country_code
    from sessions
    group by site_id, visitor_id

)

select * from final
