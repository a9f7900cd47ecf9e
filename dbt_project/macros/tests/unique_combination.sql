{#- Returns the rows that share the same values in all of the given columns (a composite
    key; a column may be an expression, such as lower(match_value)): a scan of every row the
    test reads, as dbt's `unique` does for one column. `unique_combination_by_index` is the
    same check answered by a unique index when the table has one. -#}
{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
