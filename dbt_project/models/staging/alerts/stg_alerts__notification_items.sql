-- What each notification tells (alerts.notification_items): one instance's firing,
-- resolved or repeated alert. The message payload is left out (recipients, rendered text):
-- it stays in the alerts schema, which only Siteline's own user reads.
with

source as (

    select * from {{ source_or_empty('alerts', 'notification_items', {
        'contact_point': 'text', 'dedupe_key': 'text', 'notification_id': 'bigint',
        'instance_id': 'text', 'kind': 'text', 'transition_id': 'bigint',
        'silence_id': 'bigint'
    }) }}

),

renamed as (

    select
        contact_point,
        dedupe_key,
        notification_id,
        instance_id,
        kind,
        transition_id,
        silence_id
    from source

)

select * from renamed
