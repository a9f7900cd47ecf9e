-- One row per goal reached in a visit (a goal converts at most once per visit), goals from
-- sites.yml. A goal without a fixed value is worth the visit's revenue when it is a
-- purchase goal, else nothing. Incremental by visitor (int_visitors_changed_this_run).
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
    where session_id is not null and not is_bot

),

goals as (

    select * from {{ ref('stg_config__goals') }}

),

sessions as (

    select * from {{ scoped_rows(ref('int_sessions'), key='visitor_id') }}
    where not is_bot

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

identities as (

    select * from {{ scoped_rows(ref('int_identity_map'), key='visitor_id') }}

),

matches as (

    select distinct on (events.session_id, goals.goal_id)
        events.session_id,
        events.site_id,
        goals.goal_id,
        goals.goal_name,
        goals.match_type,
        goals.goal_value,
        events.event_id,
        events.occurred_at as converted_at,
        events.page_path
    from events
    inner join goals on events.site_id = goals.site_id and {{ matches_rule('events', 'goals') }}
    order by events.session_id, goals.goal_id, events.occurred_at, events.event_id

),

final as (

    select
        md5(matches.session_id || '|' || matches.goal_id) as conversion_id,
        matches.site_id,
        matches.goal_id,
        matches.goal_name,
        matches.session_id,
        sessions.visitor_id,
        coalesce(identities.user_id, sessions.visitor_id) as customer_key,
        matches.event_id,
        matches.converted_at,
        (matches.converted_at at time zone sites.site_timezone)::date as conversion_date,
        matches.page_path,
        {{ page_sk('matches.site_id', 'matches.page_path') }} as page_sk,
        sessions.channel_id,
        coalesce(
            matches.goal_value,
            case when matches.match_type = 'transaction' then sessions.revenue else 0 end
        )::numeric(14, 2) as goal_value
    from matches
    inner join sessions on matches.session_id = sessions.session_id
    inner join sites on matches.site_id = sites.site_id
    left join identities
        on sessions.site_id = identities.site_id and sessions.visitor_id = identities.visitor_id

)

select * from final
