{#- Rows that share the same values in all of the given columns (a composite key). A valid
    unique index whose key columns are all among them answers it without a scan, as for
    `unique` (macros/tests/unique.sql). -#}
{% test unique_combination(model, columns) %}
    select {{ columns | join(', ') }}
    from {{ model }}
    where not {{ unique_index_answers(model, columns) }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
