-- One row per calendar day from the first visit to a year after today.
with

bounds as (

    select
        coalesce(min(session_date), current_date) as first_day,
        greatest(coalesce(max(session_date), current_date), current_date) + 365 as last_day
    from {{ ref('int_sessions') }}

),

days as (

    select generate_series(bounds.first_day, bounds.last_day, interval '1 day')::date as date_day
    from bounds

),

final as (

    select
        date_day,
        extract(isoyear from date_day)::integer as iso_year,
        extract(week from date_day)::integer as iso_week,
        extract(year from date_day)::integer as year_number,
        extract(quarter from date_day)::integer as quarter_number,
        extract(month from date_day)::integer as month_number,
        to_char(date_day, 'FMMonth') as month_name,
        date_trunc('month', date_day)::date as month_start,
        date_trunc('week', date_day)::date as week_start,
        extract(isodow from date_day)::integer as day_of_week,
        to_char(date_day, 'FMDay') as day_name,
        extract(isodow from date_day) in (6, 7) as is_weekend
    from days

)

select * from final
