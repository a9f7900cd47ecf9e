-- One row per notification of the alerts outbox (one message per contact point and
-- evaluation cycle): its delivery status and what it told. Neither the message itself nor
-- the channel's error text is here (docs/bi.md): recipients, webhook URLs and their tokens
-- stay in the alerts tables, which only Siteline's own user reads.
with

notifications as (

    select * from {{ ref('stg_alerts__notifications') }}

),

items as (

    select * from {{ ref('stg_alerts__notification_items') }}

),

instances as (

    select * from {{ ref('stg_alerts__instances') }}

),

told as (

    select
        items.notification_id,
        count(*) as items,
        count(*) filter (where items.kind = 'firing') as firing_items,
        count(*) filter (where items.kind = 'resolved') as resolved_items,
        count(*) filter (where items.kind = 'repeat') as repeat_items,
        count(*) filter (where items.silence_id is not null) as silenced_items,
        string_agg(distinct instances.rule_id, ', ' order by instances.rule_id) as rule_ids,
        string_agg(distinct instances.site_id, ', ' order by instances.site_id) as site_ids
    from items
    left join instances
        on items.instance_id = instances.instance_id
    group by items.notification_id

),

final as (

    select
        notifications.notification_id,
        notifications.contact_point,
        notifications.evaluation_id,
        notifications.subject,
        notifications.status,
        notifications.attempts,
        notifications.has_error,
        notifications.created_at,
        notifications.next_attempt_at,
        notifications.sent_at,
        extract(epoch from notifications.sent_at - notifications.created_at)
            as seconds_to_send,
        coalesce(told.items, 0) as items,
        coalesce(told.firing_items, 0) as firing_items,
        coalesce(told.resolved_items, 0) as resolved_items,
        coalesce(told.repeat_items, 0) as repeat_items,
        coalesce(told.silenced_items, 0) as silenced_items,
        told.rule_ids,
        told.site_ids
    from notifications
    left join told
        on notifications.notification_id = told.notification_id

)

select * from final
