{#- The RFM scores' bookkeeping, around the models that hold the rules: int_customer_scores
    scores each distinct value of a measure (the quintile rule), int_customers_rescored_this_run
    names the customers whose scores moved, crm.customers joins the scores.

    Two things only a hook can do stay here, each in one macro:
    - customer_value_counts_moved: int_customer_activity's post-hook keeps the customers per
      value of each measure (intermediate.customer_value_counts, read through the view
      int_customer_value_counts), moved by the customers it rebuilt as they were - the rows
      it deleted in its own transaction - and as they are. Counting every customer instead
      would read all of them every run.
    - record_customer_scores_given: crm.customers' post-hook records in int_customer_scores
      the scores it gave, in its own transaction: a run that fails before it leaves them as
      they were, and the next run rewrites those customers. -#}


{#- The customers per value of each measure, as int_customer_activity keeps them (its
    post-hook, customer_value_counts_moved): one row per site and value, the other measures'
    columns null. Models read it as ref('int_customer_value_counts'). -#}
{% macro customer_value_counts() -%}
    {{ generate_schema_name('intermediate', none) }}.customer_value_counts
{%- endmacro %}


{#- The query counting the customers of `relation` (int_customer_activity or rows of it) per
    value of each measure, one grouping set per measure: recency the date of the last visit,
    frequency the visits then the orders, monetary the revenue; a missing figure counts as
    the lowest value. crm.customers and int_customers_rescored_this_run find a customer's
    values with the same expressions. -#}
{% macro count_customer_values(relation) -%}
    select
        a.site_id,
        coalesce(a.last_seen_at::date, '-infinity'::date) as last_seen_date,
        coalesce(a.visits, 0) as visits,
        coalesce(a.transactions, 0) as transactions,
        coalesce(a.revenue, 0) as revenue,
        count(*) as customers
    from {{ relation }} as a
    group by grouping sets (
        (a.site_id, coalesce(a.last_seen_at::date, '-infinity'::date)),
        (a.site_id, coalesce(a.visits, 0), coalesce(a.transactions, 0)),
        (a.site_id, coalesce(a.revenue, 0))
    )
{%- endmacro %}


{#- int_customer_activity's post-hook, called with whether the model was built whole: the
    counts counted again when it was built whole, else moved by the customers of its scope as
    they are (their rows now) less as they were (the rows delete_changed_rows(keep_deleted=
    true) deleted); values left without customers are removed. Counted whole when there are
    no counts yet too. Emptied rather than dropped: the view int_customer_value_counts reads
    the table. -#}
{% macro customer_value_counts_moved(whole) -%}
    {%- set counts = customer_value_counts() %}
    {%- set kept = execute and run_query(
        "select to_regclass('" ~ counts ~ "') is not null"
    ).columns[0].values()[0] %}
    {%- if whole or not kept %}
    create table if not exists {{ counts }} as
    {{ count_customer_values(this) }}
    with no data;
    truncate {{ counts }};
    insert into {{ counts }}
    {{ count_customer_values(this) }}
    {%- else %}
    drop table if exists {{ this.identifier }}__values_moved;
    create temporary table {{ this.identifier }}__values_moved as
    select
        moved.site_id,
        moved.last_seen_date,
        moved.visits,
        moved.transactions,
        moved.revenue,
        sum(moved.customers) as customers
    from (
        {{ count_customer_values('(' ~ scope_this_rows('customer_key') ~ ')') }}
        union all
        select
            b.site_id,
            b.last_seen_date,
            b.visits,
            b.transactions,
            b.revenue,
            -b.customers
        from ({{ count_customer_values(deleted_relation()) }}) as b
    ) as moved
    group by moved.site_id, moved.last_seen_date, moved.visits, moved.transactions, moved.revenue
    having sum(moved.customers) <> 0;
    drop table if exists {{ this.identifier }}__values_new;
    create temporary table {{ this.identifier }}__values_new as
    select
        m.site_id,
        m.last_seen_date,
        m.visits,
        m.transactions,
        m.revenue,
        coalesce(c.customers, 0) + m.customers as customers
    from {{ this.identifier }}__values_moved as m
    left join {{ counts }} as c
        on
            c.site_id = m.site_id
            and c.last_seen_date is not distinct from m.last_seen_date
            and c.visits is not distinct from m.visits
            and c.transactions is not distinct from m.transactions
            and c.revenue is not distinct from m.revenue;
    delete from {{ counts }} as c
    using {{ this.identifier }}__values_moved as m
    where
        c.site_id = m.site_id
        and c.last_seen_date is not distinct from m.last_seen_date
        and c.visits is not distinct from m.visits
        and c.transactions is not distinct from m.transactions
        and c.revenue is not distinct from m.revenue;
    insert into {{ counts }}
    select * from {{ this.identifier }}__values_new
    where customers <> 0
    {%- endif %}
{%- endmacro %}


{#- crm.customers' post-hook: the scores it gave, and the day, recorded on each value of
    int_customer_scores (given_score, given_on); int_customers_rescored_this_run compares
    the next run's scores with them. -#}
{% macro record_customer_scores_given() -%}
    update {{ ref('int_customer_scores') }} as s
    set
        given_score = s.score,
        given_on = current_date
    where s.given_score is distinct from s.score or s.given_on is distinct from current_date
{%- endmacro %}


{#- Whether this model's table exists already (a table model reads the build it replaces
    through {{ this }}: int_customer_scores). Asked when the model runs; the linter's
    templater has no database and a unit test no `this`, hence the guard. -#}
{% macro previous_build_exists() -%}
    {%- if execute and load_relation is defined and this is not none %}
        {{- return(load_relation(this) is not none) }}
    {%- endif %}
    {{- return(false) }}
{%- endmacro %}
