-- The visitors (devices) the visitor-scoped models rebuild in this run: every visitor with a
-- change logged since the oldest watermark among them (the rows int_events_sessionised
-- rewrote, the orders int_orders moved to another visit). A model with a newer watermark
-- rebuilds a few visitors again, which gives the same rows. Empty when every such model is
-- built whole. In key order: the models probe their inputs' indexes in this order.
-- depends_on: {{ ref('int_events_sessionised') }}, {{ ref('int_orders') }}
{{ config(
    meta={'incremental_bookkeeping': true},
    post_hook='analyze {{ this }}',
) }}

with

readers as (

    select min(watermark) as watermark
    from {{ ref('int_incremental_this_run') }}
    where scope = 'visitor' and is_selected and not built_whole

),

changes as (

    select
        site_id,
        device_key,
        change_id
    from {{ scope_changes('device') }}
    where change_id > (select readers.watermark from readers)

),

final as (

    select
        site_id,
        device_key as visitor_id,
        max(change_id) as last_change_id
    from changes
    group by site_id, device_key

)

select * from final
order by site_id, visitor_id
