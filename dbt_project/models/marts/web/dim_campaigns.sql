-- Campaigns (source, medium, name from UTM or the site's campaign parameters) seen in
-- visits, with the channel they group into.
--
-- Read through fct_sessions' partial (campaign_sk, channel_id, started_at) index of the
-- visits from a campaign, not by grouping those visits: the distinct campaign and channel
-- pairs one index probe each (a loose index scan), then each pair's first and latest
-- visit, each the end of an index range.
with recursive

pairs as (

    {{ loose_index_scan(
        'pairs', ref('fct_sessions'), ['campaign_sk', 'channel_id'], where='s.campaign_sk is not null'
    ) }}

),

seen as (

    select
        pairs.campaign_sk,
        pairs.channel_id,
        first_visit.site_id,
        first_visit.campaign_name,
        first_visit.campaign_source,
        first_visit.campaign_medium,
        first_visit.started_at as first_seen_at,
        latest_visit.started_at as last_seen_at
    from pairs
    inner join lateral (
        select
            s.site_id,
            s.campaign_name,
            s.campaign_source,
            s.campaign_medium,
            s.started_at
        from {{ ref('fct_sessions') }} as s
        where s.campaign_sk = pairs.campaign_sk and s.channel_id = pairs.channel_id
        order by s.started_at
        limit 1
    ) as first_visit on true
    inner join lateral (
        select s.started_at
        from {{ ref('fct_sessions') }} as s
        where s.campaign_sk = pairs.campaign_sk and s.channel_id = pairs.channel_id
        order by s.started_at desc
        limit 1
    ) as latest_visit on true

),

final as (

    select
        campaign_sk,
        min(site_id) as site_id,
        min(campaign_name) as campaign_name,
        min(campaign_source) as campaign_source,
        min(campaign_medium) as campaign_medium,
        min(channel_id) as channel_id,
        min(first_seen_at) as first_seen_at,
        max(last_seen_at) as last_seen_at
    from seen
    group by campaign_sk

)

select * from final
