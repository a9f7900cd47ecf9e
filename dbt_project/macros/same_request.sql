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


{#- The columns probe_requests and the incremental superseding (rows_of_this_run) carry for
    a request: its event id and what same_request compares, of the relation aliased
    `prefix`. -#}
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
    {% if kind == 'views' -%}
    where
        r.event_source = 'tracker' and r.event_type = 'page_view'
        and {{ same_request('r', other) }}
    {% else -%}
    where
        r.event_source = 'logfile'
        and {{ same_request(other, 'r') }}
    {% endif %}
    -- a fence: kept as a subquery run per outer row (an index probe), never flattened into
    -- a join the planner may hash over the whole table
    offset 0
{%- endmacro %}


{#- One-to-one matching of tracker page views and log hits that may be the same request:
    `candidates` is a relation of (view_id, hit_id, distance) pairs; the result, a subquery,
    the pairs matched, closest first - a greedy assignment by ascending distance (ties by
    view, then hit id): a pair is matched when neither its view nor its hit has a closer
    pair left. A pair alone (its view has no other hit, its hit no other view) is matched
    as it is; the others go in rounds: each round takes every pair that is the closest left
    of both its view and its hit (the pairs greedy would take next, wherever they are), then
    drops the pairs of the views and hits taken. (Each view taking its nearest hit gave two
    reloads of a page one hit, and the other hit stayed a one-page visit of its own. The
    pairs alone are taken apart, before the rounds: most pairs are.) -#}
{% macro closest_pairs(candidates) -%}
    (
        with recursive per_view as (
            select
                view_id,
                hit_id,
                distance,
                count(*) over (partition by view_id) as view_pairs
            from {{ candidates }}
        ),

        counted as materialized (
            select
                view_id,
                hit_id,
                distance,
                view_pairs = 1 and count(*) over (partition by hit_id) = 1 as is_alone
            from per_view
        ),

        rounds as (
            select
                view_id,
                hit_id,
                distance,
                false as is_matched
            from counted
            where not is_alone
            union all
            select
                view_id,
                hit_id,
                distance,
                is_matched
            from (
                select
                    view_id,
                    hit_id,
                    distance,
                    is_matched,
                    bool_or(is_matched) over (partition by view_id) as is_view_taken,
                    bool_or(is_matched) over (partition by hit_id) as is_hit_taken
                from (
                    select
                        view_id,
                        hit_id,
                        distance,
                        row_number() over (partition by view_id order by distance, hit_id) = 1
                        and row_number() over (partition by hit_id order by distance, view_id) = 1
                        as is_matched
                    from rounds
                    where not is_matched
                ) as ranked
            ) as decided
            where is_matched or not (is_view_taken or is_hit_taken)
        )

        select
            view_id,
            hit_id
        from counted
        where is_alone
        union all
        select
            view_id,
            hit_id
        from rounds
        where is_matched
    )
{%- endmacro %}
