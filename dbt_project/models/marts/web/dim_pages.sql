-- One row per page (site + path) seen in a visit, with its page label from sites.yml (the first label
-- whose path regex matches) and its latest title.
with

page_views as (

    select * from {{ ref('int_events_sessionised') }}
    where session_id is not null and page_path is not null and not is_bot

),

labels as (

    select * from {{ ref('stg_config__page_labels') }}

),

pages as (

    select
        site_id,
        page_path,
        min(occurred_at) as first_viewed_at,
        (array_agg(page_title order by occurred_at desc) filter (where page_title is not null))[1]
            as page_title
    from page_views
    group by site_id, page_path

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
