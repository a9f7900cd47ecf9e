-- One row per site and local day: the KPIs dashboards and alerts watch, plus what was kept
-- out of them (bots, late events, rejected log lines, quarantined payloads). Incremental by
-- day: a run recomputes the days of int_days_changed_this_run from all of their visits and
-- conversions, carries the other days' figures of visits and conversions from the table as
-- it was (the table is written whole again, one row per site and day, while the old one is
-- still there), and counts the small tables again.
{{ incremental_by('int_days_changed_this_run') }}
{{ config(meta={'scope': 'day'}) }}
{%- set by_day = not built_whole() %}

with

sites as (

    select * from {{ ref('stg_config__sites') }}

),

sessions as not materialized (

    -- read twice (visits, visitor_days): else PostgreSQL copies every visit first
    select * from {{ scoped_rows(ref('int_sessions'), key='session_date') }}

),

conversions as (

    -- counted on their visit's day (below), not on the day they happened
    select * from {{ ref('fct_goal_conversions') }}

),

late_events as (

    select * from {{ ref('agg_late_events') }}

),

bad_events as (

    select * from {{ ref('stg_collector__bad_events') }}

),

rejected_lines as (

    select * from {{ ref('stg_logfiles__rejected_lines') }}

),

daily_log_hits as (

    select * from {{ ref('int_daily_log_hits') }}

),

visits as (

    -- per day by hash aggregates: the visitors are counted apart (visitor_days), where a
    -- count(distinct) sorted every visit
    select
        site_id,
        session_date as kpi_date,
        count(*) filter (where not is_bot) as visits,
        count(*) filter (where not is_bot and event_source = 'logfile') as visits_from_logs,
        sum(page_views) filter (where not is_bot) as page_views,
        count(*) filter (where not is_bot and is_bounce) as bounces,
        sum(duration_seconds) filter (where not is_bot) as duration_seconds,
        sum(engaged_seconds) filter (where not is_bot) as engaged_seconds,
        sum(transactions) filter (where not is_bot) as transactions,
        sum(revenue) filter (where not is_bot) as revenue,
        count(*) filter (where is_bot) as bot_visits,
        sum(page_views) filter (where is_bot) as bot_page_views
    from sessions
    group by site_id, session_date

),

visitor_days as (

    select
        site_id,
        session_date as kpi_date,
        count(*) as visitors
    from (
        select distinct
            site_id,
            session_date,
            visitor_id
        from sessions
        where not is_bot
    ) as distinct_visitors
    group by site_id, session_date

),

converting as (

    -- One day basis for the whole row: a goal reached after midnight counts on the day its
    -- visit started, as the visit, its page views and its orders do, so conversion_rate
    -- divides visits of one day by visits of the same day.
    select
        sessions.site_id,
        sessions.session_date as kpi_date,
        count(*) as goal_conversions,
        count(distinct sessions.session_id) as converting_visits
    from sessions
    inner join conversions on sessions.session_id = conversions.session_id
    where not sessions.is_bot
    group by sessions.site_id, sessions.session_date

),

late as (

    select
        site_id,
        occurred_date as kpi_date,
        sum(late_events)::bigint as late_events
    from late_events
    group by site_id, occurred_date

),

quarantined as (

    select
        bad_events.site_id,
        (bad_events.received_at at time zone sites.site_timezone)::date as kpi_date,
        count(*) as quarantined_payloads
    from bad_events
    inner join sites on bad_events.site_id = sites.site_id
    group by bad_events.site_id, (bad_events.received_at at time zone sites.site_timezone)::date

),

log_hits as (

    -- counted per day as loads arrive (int_daily_log_hits), not by scanning every hit
    select * from daily_log_hits

),

rejected as (

    -- Unparseable lines have no time: counted on the day they were loaded.
    select
        rejected_lines.site_id,
        (
            to_timestamp(split_part(rejected_lines.load_id, '.', 1)::bigint) at time zone sites.site_timezone
        )::date
            as kpi_date,
        count(*) as rejected_log_lines
    from rejected_lines
    inner join sites on rejected_lines.site_id = sites.site_id
    group by
        rejected_lines.site_id,
        (
            to_timestamp(split_part(rejected_lines.load_id, '.', 1)::bigint)
            at time zone sites.site_timezone
        )::date

),

figures as (

    -- the figures of visits and conversions: of every day, or in a run by day of the days
    -- recomputed, and as they were for the others (the days that had visits or conversions)
    select
        coalesce(visits.site_id, converting.site_id) as site_id,
        coalesce(visits.kpi_date, converting.kpi_date) as kpi_date,
        coalesce(visits.visits, 0) as visits,
        coalesce(visitor_days.visitors, 0) as visitors,
        coalesce(visits.visits_from_logs, 0) as visits_from_logs,
        coalesce(visits.page_views, 0) as page_views,
        coalesce(visits.bounces, 0) as bounces,
        round(coalesce(visits.bounces, 0)::numeric / nullif(visits.visits, 0), 4) as bounce_rate,
        round(coalesce(visits.duration_seconds, 0)::numeric / nullif(visits.visits, 0), 1)
            as avg_visit_seconds,
        coalesce(visits.engaged_seconds, 0) as engaged_seconds,
        coalesce(converting.goal_conversions, 0) as goal_conversions,
        coalesce(converting.converting_visits, 0) as converting_visits,
        round(coalesce(converting.converting_visits, 0)::numeric / nullif(visits.visits, 0), 4)
            as conversion_rate,
        coalesce(visits.transactions, 0) as transactions,
        {{ client_amount('coalesce(visits.revenue, 0)', json=false) }} as revenue,
        round(visits.revenue / nullif(visits.transactions, 0), 2) as average_order_value,
        coalesce(visits.bot_visits, 0) as bot_visits,
        coalesce(visits.bot_page_views, 0) as bot_page_views
    from visits
    left join visitor_days
        on visits.site_id = visitor_days.site_id and visits.kpi_date = visitor_days.kpi_date
    full join converting on visits.site_id = converting.site_id and visits.kpi_date = converting.kpi_date
    {%- if by_day %}
    union all
    select
        kept.site_id,
        kept.kpi_date,
        kept.visits,
        kept.visitors,
        kept.visits_from_logs,
        kept.page_views,
        kept.bounces,
        kept.bounce_rate,
        kept.avg_visit_seconds,
        kept.engaged_seconds,
        kept.goal_conversions,
        kept.converting_visits,
        kept.conversion_rate,
        kept.transactions,
        kept.revenue,
        kept.average_order_value,
        kept.bot_visits,
        kept.bot_page_views
    from {{ this }} as kept
    where
        (kept.visits > 0 or kept.bot_visits > 0 or kept.goal_conversions > 0)
        and not exists (
            select 1 from {{ ref('int_days_changed_this_run') }} as recomputed
            where recomputed.site_id = kept.site_id and recomputed.kpi_date = kept.kpi_date
        )
    {%- endif %}

),

days as (

    select
        site_id,
        kpi_date
    from figures
    union
    select
        site_id,
        kpi_date
    from late
    union
    select
        site_id,
        kpi_date
    from quarantined
    union
    select
        site_id,
        kpi_date
    from log_hits
    union
    select
        site_id,
        kpi_date
    from rejected

),

final as (

    select
        days.site_id,
        days.kpi_date,
        coalesce(figures.visits, 0) as visits,
        coalesce(figures.visitors, 0) as visitors,
        coalesce(figures.visits_from_logs, 0) as visits_from_logs,
        coalesce(figures.page_views, 0) as page_views,
        coalesce(figures.bounces, 0) as bounces,
        figures.bounce_rate,
        figures.avg_visit_seconds,
        coalesce(figures.engaged_seconds, 0) as engaged_seconds,
        coalesce(figures.goal_conversions, 0) as goal_conversions,
        coalesce(figures.converting_visits, 0) as converting_visits,
        figures.conversion_rate,
        coalesce(figures.transactions, 0) as transactions,
        {{ client_amount('coalesce(figures.revenue, 0)', json=false) }} as revenue,
        figures.average_order_value,
        coalesce(figures.bot_visits, 0) as bot_visits,
        coalesce(figures.bot_page_views, 0) as bot_page_views,
        coalesce(log_hits.log_hits, 0) as log_hits,
        coalesce(log_hits.bot_log_hits, 0) as bot_log_hits,
        coalesce(log_hits.static_log_hits, 0) as static_log_hits,
        coalesce(rejected.rejected_log_lines, 0) as rejected_log_lines,
        coalesce(late.late_events, 0) as late_events,
        coalesce(quarantined.quarantined_payloads, 0) as quarantined_payloads
    from days
    left join figures on days.site_id = figures.site_id and days.kpi_date = figures.kpi_date
    left join late on days.site_id = late.site_id and days.kpi_date = late.kpi_date
    left join quarantined on days.site_id = quarantined.site_id and days.kpi_date = quarantined.kpi_date
    left join log_hits on days.site_id = log_hits.site_id and days.kpi_date = log_hits.kpi_date
    left join rejected on days.site_id = rejected.site_id and days.kpi_date = rejected.kpi_date

)

select * from final
