-- One row per visit of a person (bots left out): when, how long, what was seen, where the
-- visitor came from, on which device, which goals were reached and what was bought.
-- Incremental by visitor (int_visitors_changed_this_run); logs the customers of the visitors
-- it rebuilds, as they were and as they are (log_changed_customers).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id', keep_deleted=true) }}",
    post_hook="{{ log_changed_customers() }}",
) }}
{#- the visits from a campaign, for dim_campaigns' loose index scan (as dim_devices reads the
    (device_sk, device_type, browser, os) index) -#}
{{ config(post_hook="{{ partial_index(
    '(campaign_sk, channel_id, started_at)', 'campaign_sk is not null'
) }}") }}

with

sessions as (

    select * from {{ scoped_rows(ref('int_sessions'), key='visitor_id') }}
    where not is_bot

),

identities as (

    select * from {{ scoped_rows(ref('int_identity_map'), key='visitor_id') }}

),

conversions as (

    select
        session_id,
        count(*) as goal_conversions,
        sum(goal_value) as goal_value
    from {{ scoped_rows(ref('fct_goal_conversions'), key='visitor_id') }}
    group by session_id

),

final as (

    select
        sessions.session_id,
        sessions.site_id,
        sessions.visitor_id,
        coalesce(identities.user_id, sessions.visitor_id) as customer_key,
        identities.user_id,
        sessions.client_session_id,
        sessions.event_source,
        sessions.started_at,
        sessions.ended_at,
        sessions.session_date,
        sessions.duration_seconds,
        sessions.page_views,
        sessions.custom_events,
        sessions.engaged_seconds,
        sessions.is_bounce,
        sessions.landing_page_path,
        {{ page_sk('sessions.site_id', 'sessions.landing_page_path') }} as landing_page_sk,
        sessions.exit_page_path,
        sessions.landing_page_url,
        sessions.referrer_url,
        sessions.referrer_host,
        sessions.referrer_medium,
        sessions.referrer_source,
        sessions.channel_id,
        {{ campaign_sk(
            'sessions.site_id', 'sessions.campaign_source', 'sessions.campaign_medium',
            'sessions.campaign_name'
        ) }} as campaign_sk,
        sessions.campaign_name,
        sessions.campaign_source,
        sessions.campaign_medium,
        sessions.campaign_term,
        sessions.campaign_content,
        {{ device_sk('sessions.device_type', 'sessions.browser', 'sessions.os') }} as device_sk,
        sessions.device_type,
        sessions.browser,
        sessions.os,
        sessions.country_code,
        sessions.screen_resolution,
        sessions.browser_language,
        coalesce(conversions.goal_conversions, 0) as goal_conversions,
        {{ client_amount('coalesce(conversions.goal_value, 0)', json=false) }} as goal_value,
        sessions.transactions,
        sessions.revenue
    from sessions
    left join identities
        on sessions.site_id = identities.site_id and sessions.visitor_id = identities.visitor_id
    left join conversions on sessions.session_id = conversions.session_id

)

select * from final
