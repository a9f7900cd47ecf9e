{#- Returns the rows that share the same values in all of the given columns (a composite
    key), trusting a unique index as `unique_by_index` does (macros/tests/unique_by_index.sql):
    when the tested table has a valid unique index whose key columns are all among
    `columns`, PostgreSQL already refuses such rows and the table is not read. Without one
    (a view, a table without such an index, an expression among the columns) it scans, as
    `unique_combination` does. Use it on models that declare such an index in their config. -#}
{% test unique_combination_by_index(model, columns) %}
    select {{ columns | join(', ') }}
    from {{ model }}
    where not {{ unique_index_answers(model, columns) }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}
