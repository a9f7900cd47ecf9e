{#- The distinct values of `columns` in `relation` (alias `s` in `where`, a condition on its
    rows), one index probe each: a loose index scan, for a few distinct values among many
    rows. The relation needs an index whose leading columns are `columns`. The body of a
    recursive CTE named `name`, whose rows then have those columns. -#}
{% macro loose_index_scan(name, relation, columns, where=none) -%}
    {%- set found = 's.' ~ columns | join(', s.') %}
    (
        select {{ found }}
        from {{ relation }} as s
        where {{ where or 'true' }}
        order by {{ found }}
        limit 1
    )

    union all

    select next_value.*
    from {{ name }}
    cross join lateral (
        select {{ found }}
        from {{ relation }} as s
        where
            {{ where or 'true' }}
            and ({{ found }}) > ({{ name ~ '.' ~ columns | join(', ' ~ name ~ '.') }})
        order by {{ found }}
        limit 1
    ) as next_value
{%- endmacro %}
