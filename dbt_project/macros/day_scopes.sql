-- noqa: disable=LT02
{#- agg_daily_site_kpis is rebuilt by local day.

    Its figures of a site's day come from the visits of that day (int_sessions, by
    session_date) and their goal conversions (fct_goal_conversions, by visit: counted on
    the visit's day). int_sessions rebuilds whole devices, and most of their visits stay as they
    were: so it keeps its scope's visits as it deletes them (in its pre-hook), compares them
    with the visits written (days_log, in its post-hook), and logs each visit removed, added or
    altered as the range of days from its date to the local date of its end, in
    intermediate.changed_days.

    agg_daily_site_kpis takes the changes since its watermark, like the scoped models
    (macros/scopes.sql, scope 'day'): it recomputes those days from all of their visits and
    conversions, carries the visits' figures of the other days as they were, and counts the
    rest (late events, log hits, rejected lines, quarantined payloads: small tables) again.
    It is built whole when the scoped models would be (no watermark, a configuration change,
    a model it reads built whole since, 30 days without a run). -#}

{#- What a visit's row must keep for its days to stay as they were: its figures and times. -#}
{% macro days_columns(prefix='') -%}
    {%- set columns = [
        'session_id', 'site_id', 'visitor_id', 'session_date', 'started_at', 'ended_at',
        'event_source', 'event_count', 'page_views', 'custom_events', 'engaged_seconds',
        'duration_seconds', 'is_bounce', 'transactions', 'revenue', 'is_bot',
    ] %}
    {%- for column in columns %}{{ prefix }}{{ column }}{{ ', ' if not loop.last }}{% endfor %}
{%- endmacro %}


{#- int_sessions' visits of the devices in scope. -#}
{% macro days_scope_rows() -%}
    {{ scope_this_rows('visitor_id', days_columns('found.')) }}
{%- endmacro %}


{#- int_sessions' post-hook (scope_done(after=days_log)): the days of the visits removed,
    added or altered - its scope's visits deleted (scope_start(keep_deleted=true)) against
    those written - none when it was built whole (so is agg_daily_site_kpis then). -#}
{% macro days_log(whole) -%}
    {%- if not whole %}
    insert into {{ scope_changes('day') }} (site_id, from_day, to_day)
    select distinct
        changed.site_id,
        changed.session_date,
        greatest(changed.session_date, (changed.ended_at at time zone sites.site_timezone)::date)
    from (
        (select {{ days_columns() }} from {{ deleted_relation() }} except {{ days_scope_rows() }})
        union all
        ({{ days_scope_rows() }} except select {{ days_columns() }} from {{ deleted_relation() }})
    ) as changed
    inner join {{ ref('stg_config__sites') }} as sites on changed.site_id = sites.site_id
    {%- endif %}
{%- endmacro %}


{% macro days_relation() -%}
    {{ this.identifier }}__days
{%- endmacro %}


{% macro days_stored_relation() -%}
    {{ this.identifier }}__stored
{%- endmacro %}


{#- agg_daily_site_kpis' pre-hook: notes the newest change; in a run by day, keeps the rows
    as they are (days_stored_relation) and the days to recompute (days_relation); then
    deletes every row (the model writes them all again: one per site and day). -#}
{% macro days_start() -%}
    {{ scope_tables() }};
    {{ scope_mark('day') }};
    {%- if is_incremental() %}
        {%- if scoped() %}
    drop table if exists {{ days_stored_relation() }};
    create temporary table {{ days_stored_relation() }} as
    select * from {{ this }};
    drop table if exists {{ days_relation() }};
    create temporary table {{ days_relation() }} as
    select distinct
        c.site_id,
        d.day::date as kpi_date
    from {{ scope_changes('day') }} as c
    cross join lateral generate_series(c.from_day, c.to_day, interval '1 day') as d (day)
    where {{ scope_since('c') }}
    order by c.site_id, kpi_date;
    create unique index on {{ days_relation() }} (site_id, kpi_date);
    analyze {{ days_relation() }};
        {%- endif %}
    delete from {{ this }};
    {%- endif %}
{%- endmacro %}


{#- What agg_daily_site_kpis reads of `relation` (int_sessions or fct_goal_conversions): in a
    run by day, the rows of the days to recompute (`day`: the relation's date column), read
    through its (site_id, day) index; else the whole relation. A FROM item, like
    scoped_rows. -#}
{% macro days_rows(relation, day) -%}
    {%- if is_incremental() and run_query is defined and scoped() -%}
    (
        select found.*
        from {{ days_relation() }} as days
        cross join lateral (
            select r.*
            from {{ relation }} as r
            where r.site_id = days.site_id and r.{{ day }} = days.kpi_date
            offset 0  -- noqa: AM09
        ) as found
        offset 0  -- noqa: AM09
    ) as in_days
    {%- else -%}
        {{ relation }}
    {%- endif %}
{%- endmacro %}
