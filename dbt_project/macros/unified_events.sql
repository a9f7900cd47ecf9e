{#- The unified event stream's query (int_events_unified is this, as a view).

    new_rows: when given, a mapping {'tracker': relation, 'log': relation} of copies of the
    staging rows of the dlt loads not read yet (int_events_sessionised's, macros/
    sessionised_configs.sql): the stream of those rows only, without computing the whole
    stream. A log hit is then matched only with the tracker page views among those rows;
    int_events_sessionised matches the rest. -#}
{% macro unified_events(new_rows=none) -%}

with

tracker as (

    select * from {{ new_rows['tracker'] if new_rows else ref('stg_collector__events') }}

),

hits as (

    select * from {{ new_rows['log'] if new_rows else ref('stg_logfiles__hits') }}

),

sites as (

    select * from {{ ref('stg_config__sites') }}

),

campaign_parameters as (

    select * from {{ ref('stg_config__campaign_parameters') }}

),

referrer_hosts as (

    select * from {{ ref('referrer_hosts') }}

),

tracker_loads as (

    select * from {{ ref('stg_collector__loads') }}

),

log_loads as (

    select * from {{ ref('stg_logfiles__loads') }}

),

tracker_events as not materialized (

    -- read where used (page views for the superseding match, every event for the stream,
    -- page queries for campaigns): never copied whole, a copy of millions of wide rows
    -- would be written to disk

    select
        tracker.event_id,
        tracker.site_id,
        'tracker' as event_source,
        tracker.event_type,
        tracker.occurred_at,
        tracker.received_at,
        tracker.load_id,
        tracker_loads.loaded_at,
        tracker.visitor_id as device_key,
        tracker.network_key,
        tracker.client_session_id,
        tracker.user_id,
        tracker.page_url,
        tracker.page_host,
        tracker.page_path,
        tracker.page_query,
        tracker.page_title,
        tracker.referrer_url,
        tracker.referrer_host,
        tracker.event_category,
        tracker.event_action,
        tracker.event_label,
        tracker.event_value,
        tracker.event_properties,
        tracker.order_id,
        tracker.revenue,
        tracker.shipping,
        tracker.tax,
        tracker.currency,
        tracker.items,
        tracker.engaged_seconds,
        tracker.consent_granted,
        tracker.dns_ms,
        tracker.connect_ms,
        tracker.ttfb_ms,
        tracker.dom_interactive_ms,
        tracker.page_load_ms,
        tracker.screen_resolution,
        tracker.viewport_size,
        tracker.browser_language,
        tracker.connection_type,
        tracker.ip_address,
        tracker.user_agent,
        tracker.browser,
        tracker.os,
        tracker.device_type,
        tracker.country_code,
        null::bigint as http_status,
        tracker.is_bot,
        tracker.bot_reason,
        tracker.send_delay > sites.allowed_lateness as is_late
    from tracker
    inner join sites on tracker.site_id = sites.site_id
    left join tracker_loads on tracker.load_id = tracker_loads.load_id

),

log_page_views as not materialized (

    -- read where used, as tracker_events

    select
        hits.hit_id as event_id,
        hits.site_id,
        'logfile' as event_source,
        'page_view' as event_type,
        hits.requested_at as occurred_at,
        hits.requested_at as received_at,
        hits.load_id,
        log_loads.loaded_at,
        'log:' || hits.network_key as device_key,
        hits.network_key,
        null as client_session_id,
        null as user_id,
        'https://' || coalesce(hits.request_host, sites.domains ->> 0) || hits.page_path
        || coalesce('?' || hits.page_query, '') as page_url,
        coalesce(hits.request_host, sites.domains ->> 0) as page_host,
        hits.page_path,
        hits.page_query,
        null as page_title,
        hits.referrer_url,
        hits.referrer_host,
        null as event_category,
        null as event_action,
        null as event_label,
        null::numeric as event_value,
        null::jsonb as event_properties,
        null as order_id,
        null::numeric(14, 2) as revenue,
        null::numeric(14, 2) as shipping,
        null::numeric(14, 2) as tax,
        null as currency,
        null::jsonb as items,
        null::numeric as engaged_seconds,
        null::boolean as consent_granted,
        null::integer as dns_ms,
        null::integer as connect_ms,
        -- The server's own time to first byte where the log records it.
        round(hits.time_taken_ms)::integer as ttfb_ms,
        null::integer as dom_interactive_ms,
        null::integer as page_load_ms,
        null as screen_resolution,
        null as viewport_size,
        null as browser_language,
        null as connection_type,
        hits.ip_address,
        hits.user_agent,
        hits.browser,
        hits.os,
        hits.device_type,
        hits.country_code,
        hits.http_status,
        hits.is_bot,
        hits.bot_reason,
        false as is_late
    from hits
    inner join sites on hits.site_id = sites.site_id
    left join log_loads on hits.load_id = log_loads.load_id
    where
        hits.http_method = 'GET'
        and not hits.is_static
        and (hits.http_status between 200 and 299 or hits.http_status in (304, 404, 410))

),

tracker_page_views as (

    select
        site_id,
        event_id,
        network_key,
        ip_address,
        user_agent,
        page_path,
        coalesce(page_query, '') as page_query,
        occurred_at
    from tracker_events
    where event_type = 'page_view'

),

superseding_candidates as (

    -- Log page views that may be the same request as a tracker page view: same device (the
    -- collector and the log loader hash IP + user agent with the same key), page and
    -- moment. Events from a collector with another key (hosted elsewhere) fall back to the
    -- anonymised IP + user agent.
    select
        t.event_id as tracker_event_id,
        t.occurred_at as tracker_occurred_at,
        log_page_views.event_id,
        log_page_views.occurred_at
    from log_page_views
    inner join tracker_page_views as t
        on
            log_page_views.site_id = t.site_id
            and log_page_views.network_key = t.network_key
            and log_page_views.page_path = t.page_path
            and coalesce(log_page_views.page_query, '') = t.page_query
    where
        t.occurred_at between log_page_views.occurred_at - interval '10 seconds'
        and log_page_views.occurred_at + interval '60 seconds'
    union all
    select
        t.event_id as tracker_event_id,
        t.occurred_at as tracker_occurred_at,
        log_page_views.event_id,
        log_page_views.occurred_at
    from log_page_views
    inner join tracker_page_views as t
        on
            log_page_views.site_id = t.site_id
            and log_page_views.ip_address = t.ip_address
            and log_page_views.user_agent = t.user_agent
            and log_page_views.page_path = t.page_path
            and coalesce(log_page_views.page_query, '') = t.page_query
    where
        t.network_key is null
        and t.occurred_at between log_page_views.occurred_at - interval '10 seconds'
        and log_page_views.occurred_at + interval '60 seconds'

),

candidate_pairs as (

    select
        tracker_event_id as view_id,
        event_id as hit_id,
        abs(extract(epoch from tracker_occurred_at - occurred_at)) as distance
    from superseding_candidates

),

superseding as (

    -- Views and hits matched one to one, closest pairs first (same_request.sql).
    select
        closest.hit_id as event_id,
        closest.view_id
    from {{ closest_pairs('candidate_pairs') }} as closest

),

log_superseded as (

    select
        log_page_views.*,
        superseding.view_id is not null as is_superseded,
        superseding.view_id as matched_view_id
    from log_page_views
    left join superseding on log_page_views.event_id = superseding.event_id

),

unioned as (

    select
        *,
        false as is_superseded,
        null::text as matched_view_id
    from tracker_events
    union all
    select * from log_superseded

),

query_pairs as (

    -- The query's parameters of the page views that have any (split once per view; the
    -- set-returning function in the select list keeps the join below from running first).
    -- Read from both sources, not from the union: the union is then read once, streamed.
    select
        event_id,
        site_id,
        string_to_table(page_query, '&') as pair
    from tracker_events
    where event_type = 'page_view' and page_query like '%=%'
    union all
    select
        event_id,
        site_id,
        string_to_table(page_query, '&') as pair
    from log_page_views
    where page_query like '%=%'

),

query_parameters as (

    select
        query_pairs.event_id,
        campaign_parameters.campaign_field,
        campaign_parameters.parameter_position,
        replace(substring(query_pairs.pair from '=(.*)$'), '+', ' ') as parameter_value
    from query_pairs
    inner join campaign_parameters
        on
            query_pairs.site_id = campaign_parameters.site_id
            and split_part(query_pairs.pair, '=', 1) = campaign_parameters.parameter_name

),

campaigns as (

    -- per field, the first configured parameter present
    select
        event_id,
    {% for field in ['campaign', 'source', 'medium', 'term', 'content'] -%}
        (
            array_agg(nullif(parameter_value, '') order by parameter_position)
            filter (where campaign_field = '{{ field }}')
        )[1] as {{ 'campaign_name' if field == 'campaign' else 'campaign_' ~ field }}
        {{- ',' if not loop.last }}
    {% endfor %}
    from query_parameters
    group by event_id

),

final as (

    select
        unioned.*,
        case
            when unioned.referrer_host is null then null
            when
                unioned.referrer_host = unioned.page_host
                or sites.domains ? unioned.referrer_host
                then 'internal'
            else coalesce(referrer_hosts.referrer_medium, 'other_site')
        end as referrer_medium,
        referrer_hosts.referrer_source,
        campaigns.campaign_name,
        campaigns.campaign_source,
        campaigns.campaign_medium,
        campaigns.campaign_term,
        campaigns.campaign_content
    from unioned
    inner join sites on unioned.site_id = sites.site_id
    left join referrer_hosts on {{ bare_host('unioned.referrer_host') }} = referrer_hosts.referrer_host
    left join campaigns on unioned.event_id = campaigns.event_id

)

select * from final

{%- endmacro %}


{% macro sql_literals(values) -%}
    {%- for value in values -%}
        '{{ value | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- else -%}
        null
    {%- endfor -%}
{%- endmacro %}
