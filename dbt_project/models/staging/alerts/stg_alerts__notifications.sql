-- The alerts outbox (alerts.notifications): one message per contact point and evaluation
-- cycle, with its delivery status. The last delivery error is left out: it quotes what
-- the channel answered, which may name an endpoint URL with its token or an address.
with

source as (

    select * from {{ source_or_empty('alerts', 'notifications', {
        'notification_id': 'bigint', 'contact_point': 'text', 'evaluation_id': 'text',
        'subject': 'text', 'status': 'text', 'attempts': 'integer',
        'created_at': 'timestamptz', 'next_attempt_at': 'timestamptz',
        'sent_at': 'timestamptz', 'last_error': 'text'
    }) }}

),

renamed as (

    select
        notification_id,
        contact_point,
        evaluation_id,
        subject,
        status,
        attempts,
        created_at,
        next_attempt_at,
        sent_at,
        last_error is not null as has_error
    from source

)

select * from renamed
