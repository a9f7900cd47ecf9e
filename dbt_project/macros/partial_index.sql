{#- A partial index of this table, created unless it has one on those columns with a WHERE
    (found by the table's own indexes: a name could be held by the table a full refresh
    just replaced, until it is dropped). -#}
{% macro partial_index(columns, predicate) -%}
    do $$
    begin
        if not exists (
            select 1 from pg_indexes
            where
                schemaname = '{{ this.schema }}' and tablename = '{{ this.identifier }}'
                and indexdef like '%{{ columns }} WHERE%'
        ) then
            create index on {{ this }} {{ columns }} where {{ predicate }};
        end if;
    end
    $$
{%- endmacro %}
