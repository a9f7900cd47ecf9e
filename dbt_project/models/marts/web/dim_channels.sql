-- One row per channel (seed channels), with the rules that put a visit in it (seed
-- channel_rules) in words, so the description cannot drift from the rules.
with

channels as (

    select * from {{ ref('channels') }}

),

channel_rules as (

    select * from {{ ref('channel_rules') }}

),

rules_by_kind as (

    select
        channel_id,
        case match_kind
            when 'campaign_medium' then 1
            when 'referrer_medium' then 2
            when 'any_campaign' then 3
            else 4
        end as kind_order,
        case match_kind
            when 'campaign_medium'
                then 'campaign medium ' || string_agg(lower(match_value), ', ' order by lower(match_value))
            when 'referrer_medium'
                then 'referrer ' || string_agg(lower(match_value), ', ' order by lower(match_value))
            when 'any_campaign'
                then 'a campaign medium or source that no campaign medium or referrer rule matches'
            else 'no campaign medium or source, and no referrer rule matching'
        end as phrase
    from channel_rules
    group by channel_id, match_kind

),

definitions as (

    select
        channel_id,
        string_agg(phrase, '; or ' order by kind_order) as definition
    from rules_by_kind
    group by channel_id

),

final as (

    select
        channels.channel_id,
        channels.channel_name,
        channels.sort_order,
        channels.is_paid,
        upper(left(definitions.definition, 1)) || substr(definitions.definition, 2) as definition
    from channels
    left join definitions on channels.channel_id = definitions.channel_id

)

select * from final
