-- Tracker events that arrived later than the site's allowed lateness after they happened
-- (sessions.allowed_lateness_hours): kept out of visits so old visits stay stable, and
-- counted here per site, day and type, never silently lost.
with

events as (

    select * from {{ ref('int_events_sessionised') }}
    where is_late

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

final as (

    select
        events.site_id,
        (events.occurred_at at time zone sites.site_timezone)::date as occurred_date,
        events.event_type,
        count(*) as late_events,
        min(events.received_at - events.occurred_at) as min_delay,
        max(events.received_at - events.occurred_at) as max_delay
    from events
    inner join sites on events.site_id = sites.site_id
    group by
        events.site_id,
        (events.occurred_at at time zone sites.site_timezone)::date,
        events.event_type

)

select * from final
