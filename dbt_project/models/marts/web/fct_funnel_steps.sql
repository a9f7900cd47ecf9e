-- One row per funnel step a visit reached, funnels from sites.yml. Steps count in order: a
-- visit reaches step n at its first match of step n after it reached step n-1. Drop-off
-- per step = visits reaching it that do not reach the next (reached_next_step false).
-- Incremental by visitor (int_visitors_changed_this_run).
{{ incremental_by('int_visitors_changed_this_run') }}
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='append_new_columns',
    meta={'scope': 'visitor'},
    pre_hook="{{ delete_changed_rows('visitor_id') }}",
) }}

with recursive

step_matches as (

    select * from {{ scoped_rows(ref('int_funnel_step_matches'), key='visitor_id') }}

),

steps as (

    select * from {{ ref('stg_config__funnel_steps') }}

),

funnel_lengths as (

    select
        site_id,
        funnel_id,
        max(step_number) as steps_in_funnel
    from steps
    group by site_id, funnel_id

),

reached as (

    select
        session_id,
        site_id,
        funnel_id,
        1 as step_number,
        min(occurred_at) as reached_at
    from step_matches
    where step_number = 1
    group by session_id, site_id, funnel_id

    union all

    select
        reached.session_id,
        reached.site_id,
        reached.funnel_id,
        reached.step_number + 1 as step_number,
        (
            -- the table itself, not the CTE: PostgreSQL materialises a CTE used twice,
            -- and only the table has the index this probe needs
            select min(m.occurred_at)
            from {{ ref('int_funnel_step_matches') }} as m
            where
                m.session_id = reached.session_id
                and m.funnel_id = reached.funnel_id
                and m.step_number = reached.step_number + 1
                and m.occurred_at >= reached.reached_at
        ) as reached_at
    from reached
    where reached.reached_at is not null

),

reached_steps as (

    select
        *,
        lead(reached_at) over (
            partition by session_id, funnel_id order by step_number
        ) is not null as reached_next_step
    from reached
    where reached_at is not null

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

final as (

    select
        md5(reached_steps.session_id || '|' || reached_steps.funnel_id || '|' || reached_steps.step_number)
            as funnel_step_id,
        reached_steps.site_id,
        reached_steps.funnel_id,
        steps.funnel_name,
        reached_steps.step_number,
        steps.step_name,
        funnel_lengths.steps_in_funnel,
        reached_steps.session_id,
        sessions.visitor_id,
        sessions.customer_key,
        reached_steps.reached_at,
        (reached_steps.reached_at at time zone sites.site_timezone)::date as reached_date,
        reached_steps.reached_next_step,
        reached_steps.step_number = funnel_lengths.steps_in_funnel as is_completion,
        sessions.channel_id,
        sessions.device_sk
    from reached_steps
    inner join steps
        on
            reached_steps.site_id = steps.site_id
            and reached_steps.funnel_id = steps.funnel_id
            and reached_steps.step_number = steps.step_number
    inner join funnel_lengths
        on
            reached_steps.site_id = funnel_lengths.site_id
            and reached_steps.funnel_id = funnel_lengths.funnel_id
    -- each step's visit by its id (one probe per step: the recursive CTE above is
    -- estimated at a hundred rows whatever it holds, and a join planned on that sorted
    -- the steps once per visit of the scope)
    cross join
        lateral (
            select
                s.visitor_id,
                s.customer_key,
                s.channel_id,
                s.device_sk
            from {{ ref('fct_sessions') }} as s
            where s.session_id = reached_steps.session_id
            offset 0  -- noqa: AM09
        ) as sessions
    inner join sites on reached_steps.site_id = sites.site_id

)

select * from final
