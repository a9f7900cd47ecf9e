-- Device type, browser and operating system combinations seen in visits.
with

sessions as (

    select * from {{ ref('fct_sessions') }}

),

final as (

    select distinct on (device_sk)
        device_sk,
        coalesce(device_type, 'unknown') as device_type,
        coalesce(browser, 'unknown') as browser,
        coalesce(os, 'unknown') as os
    from sessions
    order by device_sk

)

select * from final
