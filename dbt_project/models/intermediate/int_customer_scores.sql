-- One row per site, RFM measure and value of it: the score 1-5 its customers get (5 best),
-- and the score crm.customers last gave them.
--
-- The rule: a value scores the quintile within the site that holds the first of its
-- customers, 1 + floor(5 * customers of the site with a lower value / customers of the
-- site). Customers who did the same share a score, however many they are (most customers
-- have no revenue and one visit), and recency ranks the dates of the last visits, so scores
-- do not drift while no data arrives. Scored per distinct value, from the counts of
-- int_customer_value_counts: never every customer.
--
-- given_score and given_on: the score crm.customers gave the value's customers, and the day;
-- its post-hook records them here in its own transaction (record_customer_scores_given,
-- macros/customer_scores.sql), and each build carries them over from the table it replaces.
-- int_customers_rescored_this_run compares them with the scores.
{{ config(post_hook='analyze {{ this }}') }}

with

value_counts as (

    select * from {{ ref('int_customer_value_counts') }}

),

previous_build as (

    -- the scores given, as this table held them before this build (none in the first)
    {% if previous_build_exists() %}
    select * from {{ this }}
    {% else %}
    select
        *,
        null::int as score,
        null::int as given_score,
        null::date as given_on
    from value_counts
    where false
    {% endif %}

),

scored as (

    select
        site_id,
        measure,
        last_seen_date,
        visits,
        transactions,
        revenue,
        customers,
        (
            1 + floor(
                5 * coalesce(sum(customers) over customers_with_lower_values, 0)
                / sum(customers) over (partition by site_id, measure)
            )
        )::int as score
    from value_counts
    window customers_with_lower_values as (
        -- the values of one measure of the site, in order: each row holds its own measure's
        -- columns (the others are null), so ordering by all of them orders by its value
        partition by site_id, measure
        order by last_seen_date, visits, transactions, revenue
        rows between unbounded preceding and 1 preceding
    )

),

final as (

    select
        scored.site_id,
        scored.measure,
        scored.last_seen_date,
        scored.visits,
        scored.transactions,
        scored.revenue,
        scored.customers,
        scored.score,
        previous_build.given_score,
        previous_build.given_on
    from scored
    -- the same value: the other measures' columns are null on both sides, hence the
    -- coalesce (an equality the join can hash, where "is not distinct from" compares
    -- every pair of a site's values)
    left join previous_build
        on
            scored.site_id = previous_build.site_id
            and scored.measure = previous_build.measure
            and coalesce(scored.last_seen_date, '-infinity')
            = coalesce(previous_build.last_seen_date, '-infinity')
            and coalesce(scored.visits, -1) = coalesce(previous_build.visits, -1)
            and coalesce(scored.transactions, -1) = coalesce(previous_build.transactions, -1)
            and coalesce(scored.revenue, -1) = coalesce(previous_build.revenue, -1)

)

select * from final
