{#- Models land in the schema they name (web, crm, staging), not "<target>_<schema>":
    the schema names are the public table contract analysts and BI tools use. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
