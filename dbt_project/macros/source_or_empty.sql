{#- A source table with the typed columns a staging model reads. While the loader has not
    created the table yet (a site with no logfile source has no raw_logfiles tables) it is
    an empty stand-in; a column an older load did not have yet reads as null. So the models
    build on any installation and across upgrades. Only staging models call it, as only
    they call source(). -#}
{% macro source_or_empty(source_name, table_name, columns) -%}
{%- set relation = source(source_name, table_name) -%}
{%- set existing = none -%}
{%- if execute -%}
{%- set existing = adapter.get_relation(
    database=relation.database, schema=relation.schema, identifier=relation.identifier
) -%}
{%- endif -%}
{%- if existing is none -%}
(
select
{%- for name, type in columns.items() %}
    null::{{ type }} as {{ name }}{{ "," if not loop.last }}
{%- endfor %}
where false
)
{%- else -%}
{%- set present = adapter.get_columns_in_relation(existing) | map(attribute='name') | list -%}
(
select
{%- for name, type in columns.items() %}
{%- if name in present %}
    {{ adapter.quote(name) }}{{ "," if not loop.last }}
{%- else %}
    null::{{ type }} as {{ name }}{{ "," if not loop.last }}
{%- endif %}
{%- endfor %}
from {{ relation }}
)
{%- endif -%}
{%- endmacro %}
