-- One row per custom event of a person (category, action, label, value, properties).
-- Incremental by visitor (int_visitors_changed_this_run).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
) }}

with

events as (

    select * from {{ scoped_rows(ref('int_events_sessionised')) }}
    where session_id is not null and event_type = 'event'

),

sessions as (

    select * from {{ scoped_rows(ref('fct_sessions'), key='visitor_id') }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

final as (

    select
        events.event_id,
        events.site_id,
        events.session_id,
        events.device_key as visitor_id,
        sessions.customer_key,
        events.occurred_at,
        (events.occurred_at at time zone sites.site_timezone)::date as event_date,
        events.event_category,
        events.event_action,
        events.event_label,
        events.event_value,
        events.event_properties,
        events.page_path,
        {{ page_sk('events.site_id', 'events.page_path') }} as page_sk,
        sessions.channel_id,
        sessions.device_sk
    from events
    inner join sessions on events.session_id = sessions.session_id
    inner join sites on events.site_id = sites.site_id

)

select * from final
