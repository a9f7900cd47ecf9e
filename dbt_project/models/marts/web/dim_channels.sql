-- The channel grouping (macro channel_grouping), one row per channel.
select
    channel_id,
    channel_name,
    sort_order,
    is_paid,
    definition
from {{ ref('channels') }}
