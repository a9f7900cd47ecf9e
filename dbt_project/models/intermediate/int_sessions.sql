-- One row per visit (bots included; the marts leave them out): counts, timing, the landing
-- page's traffic source and the visitor's device and place. Incremental by visitor: a run
-- rebuilds the visitors of int_visitors_changed_this_run (among them those whose orders
-- int_orders moved to another visit), and logs the local days of the visits it changed
-- (log_changed_days) for agg_daily_site_kpis, which reads the visits of those days by
-- (site_id, session_date).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor', 'more_configs': ['channel_rules']},
    pre_hook="{{ delete_changed_rows('visitor_id', keep_deleted=true) }}",
    post_hook="{{ log_changed_days() }}",
    indexes=[
        {'columns': ['session_id'], 'unique': True}, {'columns': ['site_id', 'visitor_id']},
        {'columns': ['site_id', 'session_date']},
    ],
) }}

{%- set landing_columns = [
    'page_url', 'referrer_url', 'referrer_host', 'referrer_medium', 'referrer_source',
    'campaign_name', 'campaign_source', 'campaign_medium', 'campaign_term', 'campaign_content',
] %}
{%- set device_columns = [
    'device_type', 'browser', 'os', 'country_code', 'screen_resolution', 'browser_language',
] %}

with

events as (

    select * from {{ scoped_rows(ref('int_events_sessionised')) }}
    where session_id is not null

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

orders as (

    select * from {{ ref('int_orders') }}

),

channel_rules as (

    -- the channel grouping (seed channel_rules: which rule applies first is described there)
    select
        match_kind,
        lower(match_value) as match_value,
        channel_id
    from {{ ref('channel_rules') }}

),

channel_fallbacks as (

    -- always one row, whatever the seed holds
    select
        max(channel_id) filter (where match_kind = 'any_campaign') as campaign_channel_id,
        max(channel_id) filter (where match_kind = 'none') as no_source_channel_id
    from channel_rules

),

visits as (

    -- One sort of the events by visit and time feeds every aggregate (PostgreSQL presorts
    -- the input of ordered aggregates that share one order): the landing page is the first
    -- page view, the exit page the last, the device and place those of the first event that
    -- knows them (else of the first event). Separate DISTINCT ON queries sorted the events
    -- four times.
    select
        session_id,
        site_id,
        device_key as visitor_id,
        min(event_source) as event_source,
        min(client_session_id) as client_session_id,
        min(occurred_at) as started_at,
        max(occurred_at) as ended_at,
        count(*) as event_count,
        count(*) filter (where event_type = 'page_view') as page_views,
        count(*) filter (where event_type = 'event') as custom_events,
        coalesce(sum(engaged_seconds) filter (where event_type = 'page_ping'), 0) as engaged_seconds,
        bool_or(is_bot) as is_bot,
        array_agg(user_id order by occurred_at, event_id) filter (where event_type = 'identify')
            as identified_user_ids,
        {%- for column in landing_columns + ['page_path'] %}
        array_agg({{ column }} order by occurred_at, event_id) filter (where event_type = 'page_view')
            as page_view_{{ column }}s,
        {%- endfor %}
        {%- for column in device_columns %}
        array_agg({{ column }} order by occurred_at, event_id) filter (where device_type is not null)
            as known_{{ column }}s,
        array_agg({{ column }} order by occurred_at, event_id) as all_{{ column }}s,
        {%- endfor %}
        count(device_type) > 0 as knows_device
    from events
    group by session_id, site_id, device_key

),

session_orders as (

    select
        session_id,
        count(*) as transactions,
        sum(revenue) as revenue
    from orders
    group by session_id

),

final as (

    select
        visits.session_id,
        visits.site_id,
        visits.visitor_id,
        visits.client_session_id,
        visits.event_source,
        visits.started_at,
        visits.ended_at,
        (visits.started_at at time zone sites.site_timezone)::date as session_date,
        extract(epoch from visits.ended_at - visits.started_at)::integer as duration_seconds,
        visits.event_count,
        visits.page_views,
        visits.custom_events,
        visits.engaged_seconds,
        visits.page_views <= 1 as is_bounce,
        visits.identified_user_ids[cardinality(visits.identified_user_ids)] as identified_user_id,
        visits.page_view_page_paths[1] as landing_page_path,
        visits.page_view_page_urls[1] as landing_page_url,
        visits.page_view_page_paths[cardinality(visits.page_view_page_paths)] as exit_page_path,
        {%- for column in landing_columns if column != 'page_url' %}
        visits.page_view_{{ column }}s[1] as {{ column }},
        {%- endfor %}
        coalesce(
            by_campaign_medium.channel_id,
            by_referrer_medium.channel_id,
            case
                when
                    visits.page_view_campaign_mediums[1] is not null
                    or visits.page_view_campaign_sources[1] is not null
                    then channel_fallbacks.campaign_channel_id
            end,
            channel_fallbacks.no_source_channel_id
        ) as channel_id,
        {%- for column in device_columns %}
        case
            when visits.knows_device then visits.known_{{ column }}s[1] else visits.all_{{ column }}s[1]
        end as {{ column }},
        {%- endfor %}
        coalesce(session_orders.transactions, 0) as transactions,
        {{ client_amount('coalesce(session_orders.revenue, 0)', json=false) }} as revenue,
        visits.is_bot
    from visits
    inner join sites on visits.site_id = sites.site_id
    left join session_orders on visits.session_id = session_orders.session_id
    left join channel_rules as by_campaign_medium
        on
            by_campaign_medium.match_kind = 'campaign_medium'
            and lower(visits.page_view_campaign_mediums[1]) = by_campaign_medium.match_value
    left join channel_rules as by_referrer_medium
        on
            by_referrer_medium.match_kind = 'referrer_medium'
            and visits.page_view_referrer_mediums[1] = by_referrer_medium.match_value
    cross join channel_fallbacks

)

select * from final
