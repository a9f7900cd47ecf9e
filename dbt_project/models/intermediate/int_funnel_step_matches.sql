-- Every event that matches a funnel step (funnels from sites.yml), outside bots. A table with
-- an index on (session, funnel, step, time): fct_funnel_steps looks up "the first match of
-- step n after step n-1 was reached" once per visit and step; over a CTE each lookup scanned
-- every match, over the index it is one probe. Incremental by
-- visitor (int_visitors_changed_this_run).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
    indexes=[
        {'columns': ['session_id', 'funnel_id', 'step_number', 'occurred_at']},
        {'columns': ['site_id', 'visitor_id']},
    ],
) }}


with

events as (

    select * from {{ scoped_rows(ref('int_events_sessionised')) }}
    where
        session_id is not null
        and not is_bot
        and event_type in ('page_view', 'event', 'transaction', 'identify')

),

steps as (

    select * from {{ ref('stg_config__funnel_steps') }}

),

step_matches as (

    select
        events.session_id,
        events.site_id,
        events.device_key as visitor_id,
        steps.funnel_id,
        steps.step_number,
        events.occurred_at
    from events
    inner join steps on events.site_id = steps.site_id and {{ matches_rule('events', 'steps') }}

)

select * from step_matches
