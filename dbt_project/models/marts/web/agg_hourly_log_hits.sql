{#- Web-server log hits per site, local hour, status class, bot flag and static flag - every
    line loaded: what the alerts' log metrics (log_4xx, log_5xx and their shares, bot_share)
    count per hour or day, where agg_daily_site_kpis has only whole days and no status.

    kpi_hour is the local hour in the site's time zone (date_trunc of the local time): the
    hour a DST change repeats holds both real hours; the hour it skips has no row.

    Incremental by loads, as int_daily_log_hits: the local days that hold a row of a dlt load
    this model has not taken in (macros/loads_read.sql) are counted again, whole, through the
    raw table's (site_id, requested_at) index, and replace their rows (delete+insert by
    site and day). Hits are only ever appended, so no other day can change. -#}
{%- set whole = built_whole() %}
{%- set load_ids = new_load_ids(
    {'raw_logfiles': ref('stg_logfiles__loads')}, forget=not is_incremental()
)['raw_logfiles'] %}
{{ config(
    materialized='incremental',
    unique_key=['site_id', 'kpi_date'],
    incremental_strategy='delete+insert',
    indexes=[{
        'columns': ['site_id', 'kpi_date', 'kpi_hour', 'status_class', 'is_bot', 'is_static'],
        'unique': True
    }],
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
    -- through the (site_id, requested_at) index
    select * from {{ ref('stg_logfiles__hits') }}

),

{% if whole %}

day_hits as (

    select
        hits.site_id,
        hits.http_status,
        hits.is_bot,
        hits.is_static,
        hits.requested_at at time zone sites.site_timezone as requested_local
    from hits
    inner join sites on hits.site_id = sites.site_id

),

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

day_hits as (

    select
        days.site_id,
        h.http_status,
        h.is_bot,
        h.is_static,
        h.requested_at at time zone days.site_timezone as requested_local
    from days
    inner join hits as h
        on
            days.site_id = h.site_id
            and h.requested_at >= days.kpi_date::timestamp at time zone days.site_timezone
            and h.requested_at < (days.kpi_date + 1)::timestamp at time zone days.site_timezone

),

{% endif %}

classified as (

    select
        site_id,
        requested_local::date as kpi_date,
        date_trunc('hour', requested_local) as kpi_hour,
        -- 1xx .. 5xx; a status outside 100..599 (or none) is 'other'
        case
            when http_status between 100 and 599 then (http_status / 100)::text || 'xx'
            else 'other'
        end as status_class,
        is_bot,
        is_static
    from day_hits

),

counted as (

    select
        site_id,
        kpi_date,
        kpi_hour,
        status_class,
        is_bot,
        is_static,
        count(*) as hits
    from classified
    group by site_id, kpi_date, kpi_hour, status_class, is_bot, is_static

)

select * from counted
