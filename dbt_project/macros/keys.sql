{#- Surrogate keys of the dimensions, defined once for the facts that point at them. -#}
{% macro page_sk(site_id, page_path) -%}
    md5({{ site_id }} || '|' || {{ page_path }})
{%- endmacro %}

{% macro device_sk(device_type, browser, os) -%}
    md5(coalesce({{ device_type }}, '') || '|' || coalesce({{ browser }}, '') || '|' || coalesce({{ os }}, ''))
{%- endmacro %}

{% macro campaign_sk(site_id, source, medium, name) -%}
    case
        when coalesce({{ source }}, {{ medium }}, {{ name }}) is not null
            then md5({{ site_id }} || '|' || coalesce({{ source }}, '') || '|' || coalesce({{ medium }}, '')
                || '|' || coalesce({{ name }}, ''))
    end
{%- endmacro %}
