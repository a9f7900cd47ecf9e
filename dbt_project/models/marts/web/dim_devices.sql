-- Device type, browser and operating system combinations seen in visits.
--
-- Read through fct_sessions' (device_sk, device_type, browser, os) index, not by grouping
-- its rows: the distinct device keys one index probe each (a loose index scan), then each
-- key's first combination (a key is a hash of its combination). A few probes per
-- combination instead of every visit.
with recursive

device_keys as (

    {{ loose_index_scan('device_keys', ref('fct_sessions'), ['device_sk']) }}

),

final as (

    select
        device_keys.device_sk,
        coalesce(combination.device_type, 'unknown') as device_type,
        coalesce(combination.browser, 'unknown') as browser,
        coalesce(combination.os, 'unknown') as os
    from device_keys
    cross join lateral (
        select
            s.device_type,
            s.browser,
            s.os
        from {{ ref('fct_sessions') }} as s
        where s.device_sk = device_keys.device_sk
        order by s.device_type, s.browser, s.os
        limit 1
    ) as combination

)

select * from final
