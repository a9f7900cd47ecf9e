-- One row per page (site + path) seen in a visit, with its page label from sites.yml (the first label
-- whose path regex matches) and its latest title.
--
-- Read through int_events_sessionised's (site_id, page_path, occurred_at) index, not by
-- grouping its rows: the distinct pages one index probe each (a loose index scan), then per
-- page its first view and its latest titled view, each the first qualifying entry of an index
-- range. A few probes per page instead of every event: milliseconds for thousands of pages.
with recursive

paths as (

    {{ loose_index_scan(
        'paths', ref('int_events_sessionised'), ['site_id', 'page_path'], where='s.page_path is not null'
    ) }}

),

pages as (

    select
        paths.site_id,
        paths.page_path,
        first_view.occurred_at as first_viewed_at,
        latest_title.page_title
    from paths
    -- a page seen only by bots, or only in late or superseded events, is not a page of a visit
    inner join lateral (
        select e.occurred_at
        from {{ ref('int_events_sessionised') }} as e
        where
            e.site_id = paths.site_id and e.page_path = paths.page_path
            and e.session_id is not null and not e.is_bot
        order by e.occurred_at
        limit 1
    ) as first_view on true
    left join lateral (
        select e.page_title
        from {{ ref('int_events_sessionised') }} as e
        where
            e.site_id = paths.site_id and e.page_path = paths.page_path
            and e.session_id is not null and not e.is_bot and e.page_title is not null
        order by e.occurred_at desc, e.event_id desc
        limit 1
    ) as latest_title on true

),

labels as (

    select * from {{ ref('stg_config__page_labels') }}

),

final as (

    select
        {{ page_sk('pages.site_id', 'pages.page_path') }} as page_sk,
        pages.site_id,
        pages.page_path,
        coalesce((
            select labels.page_label
            from labels
            where labels.site_id = pages.site_id and pages.page_path ~ labels.path_regex
            order by labels.label_position
            limit 1
        ), 'Other') as page_label,
        pages.page_title,
        pages.first_viewed_at
    from pages

)

select * from final
