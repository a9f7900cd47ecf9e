-- The local days agg_daily_site_kpis recomputes in this run: every day of a change logged
-- since its watermark (int_sessions logs each visit it removed, added or altered as the
-- range of days from its date to the local date of its end). Empty when it is built whole.
-- depends_on: {{ ref('int_sessions') }}
{{ config(
    meta={'incremental_bookkeeping': true},
    post_hook='analyze {{ this }}',
) }}

with

readers as (

    select min(watermark) as watermark
    from {{ ref('int_incremental_this_run') }}
    where scope = 'day' and is_selected and not built_whole

),

final as (

    select
        changes.site_id,
        series.kpi_day::date as kpi_date,
        max(changes.change_id) as last_change_id
    from {{ scope_changes('day') }} as changes
    cross join lateral generate_series(changes.from_day, changes.to_day, interval '1 day') as series (kpi_day)
    where changes.change_id > (select readers.watermark from readers)
    group by changes.site_id, series.kpi_day::date

)

select * from final
order by site_id, kpi_date
