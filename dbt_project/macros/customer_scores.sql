-- noqa: disable=LT02
{#- crm.customers' RFM scores: quintiles 1-5 within the site (5 best) of recency, frequency
    and monetary value, over every customer of int_customer_activity, on narrow rows. -#}
{% macro customer_scores_query() -%}
    select
        c.site_id,
        c.customer_key,
        c.last_seen_at,
        ntile(5) over (
            partition by c.site_id order by site_now.latest_date - c.last_seen_at::date desc, c.customer_key asc
        ) as recency_score,
        ntile(5) over (partition by c.site_id order by c.visits, c.transactions, c.customer_key)
            as frequency_score,
        ntile(5) over (partition by c.site_id order by c.revenue, c.customer_key) as monetary_score
    from {{ ref('int_customer_activity') }} as c
    inner join (
        -- recency counts from the site's latest activity: scores do not drift while no
        -- data arrives
        select
            a.site_id,
            max(a.last_seen_at)::date as latest_date
        from {{ ref('int_customer_activity') }} as a
        group by a.site_id
    ) as site_now on c.site_id = site_now.site_id
{%- endmacro %}


{% macro customer_scores_relation() -%}
    {{ this.identifier }}__scores
{%- endmacro %}


{#- pre-hook of crm.customers: the scores, in a temporary table the model and its scope read -#}
{% macro customer_scores() -%}
    drop table if exists {{ customer_scores_relation() }};
    create temporary table {{ customer_scores_relation() }} as
    {{ customer_scores_query() }};
    create unique index on {{ customer_scores_relation() }} (site_id, customer_key);
    analyze {{ customer_scores_relation() }}
{%- endmacro %}


{#- crm.customers' extra scope: customers whose scores or days since the last visit differ
    from the ones it holds (a new customer moves the quintiles' edges; a new day moves every
    customer's days since the last visit). -#}
{% macro customers_rescored() -%}
    select s.site_id, s.customer_key
    from {{ customer_scores_relation() }} as s
    inner join {{ this }} as t on s.site_id = t.site_id and s.customer_key = t.customer_key
    where
        (t.recency_score, t.frequency_score, t.monetary_score, t.days_since_last_visit)
        is distinct from
        (s.recency_score, s.frequency_score, s.monetary_score, current_date - s.last_seen_at::date)
{%- endmacro %}
