-- Which user each visitor id (browser) belongs to: the user id of its latest identify
-- (login). Applied to all of that visitor's sessions, past ones too, and merging every
-- device of one user under one customer key. Incremental by visitor (int_visitors_changed_this_run).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
    indexes=[{'columns': ['site_id', 'visitor_id'], 'unique': True}],
) }}

with

identifies as (

    select
        site_id,
        device_key as visitor_id,
        user_id,
        occurred_at
    from {{ scoped_rows(ref('int_events_sessionised')) }}
    where
        event_type = 'identify' and user_id is not null and session_id is not null
        and not is_bot

),

final as (

    select distinct on (site_id, visitor_id)
        site_id,
        visitor_id,
        user_id,
        min(occurred_at) over visitor as first_identified_at,
        max(occurred_at) over visitor as last_identified_at
    from identifies
    window visitor as (partition by site_id, visitor_id)
    order by site_id asc, visitor_id asc, occurred_at desc, user_id asc

)

select * from final
