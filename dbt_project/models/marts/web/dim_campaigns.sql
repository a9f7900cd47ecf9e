-- Campaigns (source, medium, name from UTM or the site's campaign parameters) seen in
-- visits, with the channel they group into.
with

sessions as (

    select * from {{ ref('fct_sessions') }}
    where campaign_sk is not null

),

final as (

    select
        campaign_sk,
        site_id,
        campaign_name,
        campaign_source,
        campaign_medium,
        min(channel_id) as channel_id,
        min(started_at) as first_seen_at,
        max(started_at) as last_seen_at
    from sessions
    group by campaign_sk, site_id, campaign_name, campaign_source, campaign_medium

)

select * from final
