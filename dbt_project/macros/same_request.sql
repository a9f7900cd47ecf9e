-- noqa: disable=LT02
{#- A tracker page view and a log hit that are the same request (int_events_unified): same
    site, page and device (the keyed network hash; the anonymised IP + user agent when the
    tracker's collector has another key), the view within -10 s .. +60 s of the hit. The
    window is written on both times so an index on either side's time bounds the probe. -#}
{% macro same_request(view, hit) -%}
    {{ view }}.site_id = {{ hit }}.site_id
    and {{ view }}.page_path = {{ hit }}.page_path
    and coalesce({{ view }}.page_query, '') = coalesce({{ hit }}.page_query, '')
    and (
        {{ view }}.network_key = {{ hit }}.network_key
        or (
            {{ view }}.network_key is null
            and {{ view }}.ip_address = {{ hit }}.ip_address
            and {{ view }}.user_agent = {{ hit }}.user_agent
        )
    )
    and {{ view }}.occurred_at between {{ hit }}.occurred_at - interval '10 seconds'
    and {{ hit }}.occurred_at + interval '60 seconds'
    and {{ hit }}.occurred_at between {{ view }}.occurred_at - interval '60 seconds'
    and {{ view }}.occurred_at + interval '10 seconds'
{%- endmacro %}


{% macro request_columns(prefix) -%}
    {{ prefix }}.event_id, {{ prefix }}.site_id, {{ prefix }}.page_path, {{ prefix }}.page_query,
    {{ prefix }}.network_key, {{ prefix }}.ip_address, {{ prefix }}.user_agent,
    {{ prefix }}.occurred_at
{%- endmacro %}


{#- The tracker page views ('views') or log hits ('hits') of `relation` that are the same
    request as the row `other` (for a lateral join: one index probe per row). -#}
{% macro probe_requests(relation, kind, other) -%}
    select {{ request_columns('r') }}
    from {{ relation }} as r
    where
        {%- if kind == 'views' %}
        r.event_source = 'tracker' and r.event_type = 'page_view'
        and {{ same_request('r', other) }}
        {%- else %}
        r.event_source = 'logfile'
        and {{ same_request(other, 'r') }}
        {%- endif %}
    -- a fence: kept as a subquery run per outer row (an index probe), never flattened into
    -- a join the planner may hash over the whole table
    offset 0
{%- endmacro %}


{#- The views ('views') or hits ('hits') that are the same request as a row of `near`:
    among the new ones (`new`, a relation of request columns), and among the rows already
    in `relation`, probed one row of `near` at a time, leaving out those `new_rows` replaces. -#}
{% macro nearby_requests(kind, near, relation, new, new_rows) -%}
    {%- set view, hit = ('r', 'x') if kind == 'views' else ('x', 'r') %}
    {#- the two ways of being the same device, each a join of its own: with the OR of
        same_request only, the join hashed on site, path and query alone and filtered every
        pair of requests of a popular page (14.6M pairs for 40k new hits at 10M events) -#}
    select {{ request_columns('r') }}
    from {{ near }} as x
    inner join {{ new }} as r
        on
            {{ same_request(view, hit) }}
            and {{ view }}.network_key = {{ hit }}.network_key
    union
    select {{ request_columns('r') }}
    from {{ near }} as x
    inner join {{ new }} as r
        on
            {{ same_request(view, hit) }}
            and {{ view }}.network_key is null
            and {{ view }}.ip_address = {{ hit }}.ip_address
            and {{ view }}.user_agent = {{ hit }}.user_agent
    union
    select {{ request_columns('r') }}
    -- probed in the index's order: after a full build its leaf pages are on disk in that
    -- order, so the probes read them forward (random order read 1.5-2.4 times slower)
    from (select * from {{ near }} order by site_id, page_path, occurred_at) as x
    cross join lateral ({{ probe_requests(relation, kind, 'x') }}) as r
    where not exists (
        select 1 from {{ new_rows }} as n
        where n.event_id = r.event_id
    )
{%- endmacro %}
