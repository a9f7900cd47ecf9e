{#- Web-server log hits per site and local day - all of them: bots, static assets and lines
    that are not page views included (agg_daily_site_kpis reports them).

    Incremental by day: the days that hold a row of a dlt load this model has not taken in
    (macros/loads_read.sql) are counted again, whole, through the raw table's
    (site_id, requested_at) index. That covers every day whose counts can change: hits are
    only ever added (appended; hit_id is unique, so a line is never loaded twice). A change
    of the sites' time zones counts every day again. -#}
{%- set whole = built_whole() %}
{%- set load_ids = new_load_ids(
    {'raw_logfiles': ref('stg_logfiles__loads')}, forget=not is_incremental()
)['raw_logfiles'] %}
{{ config(
    materialized='incremental',
    unique_key=['site_id', 'kpi_date'],
    incremental_strategy='delete+insert',
    indexes=[{'columns': ['site_id', 'kpi_date'], 'unique': True}],
    meta={'scope': 'loads', 'configs': ['stg_config__sites']},
    pre_hook="{{ delete_when_built_whole() }}",
    post_hook="{{ loads_done() }}",
) }}

with

sites as (

    select * from {{ ref('stg_config__sites') }}

),

hits as not materialized (

    -- read where used: the days of the new loads through the load-id index, each day's hits
    -- through the (site_id, requested_at) index (a CTE read twice is otherwise copied whole
    -- first: every hit)
    select * from {{ ref('stg_logfiles__hits') }}

),

{% if whole %}

counted as (

    select
        hits.site_id,
        (hits.requested_at at time zone sites.site_timezone)::date as kpi_date,
        count(*) as log_hits,
        count(*) filter (where hits.is_bot) as bot_log_hits,
        count(*) filter (where hits.is_static) as static_log_hits
    from hits
    inner join sites on hits.site_id = sites.site_id
    group by hits.site_id, (hits.requested_at at time zone sites.site_timezone)::date

)

{% else %}

days as (

    select distinct
        hits.site_id,
        sites.site_timezone,
        (hits.requested_at at time zone sites.site_timezone)::date as kpi_date
    from hits
    inner join sites on hits.site_id = sites.site_id
    where hits.load_id in ({{ sql_literals(load_ids) }})

),

counted as (

    select
        days.site_id,
        days.kpi_date,
        day_hits.log_hits,
        day_hits.bot_log_hits,
        day_hits.static_log_hits
    from days
    cross join lateral (
        select
            count(*) as log_hits,
            count(*) filter (where h.is_bot) as bot_log_hits,
            count(*) filter (where h.is_static) as static_log_hits
        from hits as h
        where
            h.site_id = days.site_id
            and h.requested_at >= days.kpi_date::timestamp at time zone days.site_timezone
            and h.requested_at < (days.kpi_date + 1)::timestamp at time zone days.site_timezone
    ) as day_hits

)

{% endif %}

select * from counted
