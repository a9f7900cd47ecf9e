-- Sites from sites.yml (config.sites), renamed and cast.
with

source as (

    select * from {{ source('config', 'sites') }}

),

renamed as (

    select
        site_id,
        name as site_name,
        domains,
        timezone as site_timezone,
        currency,
        make_interval(
            secs => coalesce(inactivity_timeout_seconds, inactivity_timeout_minutes * 60)
        ) as inactivity_timeout,
        new_session_on_campaign_change,
        split_at_midnight,
        make_interval(secs => max_session_hours * 3600) as max_session_length,
        make_interval(hours => coalesce(allowed_lateness_hours, 72)::integer) as allowed_lateness,
        ip_policy,
        respect_do_not_track,
        require_consent
    from source

)

select * from renamed
