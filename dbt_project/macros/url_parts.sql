{#- URL parts, defined once for tracker URLs and log lines. -#}
{% macro url_host(url) -%}
    lower(substring({{ url }} from '^[a-zA-Z][a-zA-Z0-9+.-]*://(?:[^/?#@]*@)?([^/?#:]+)'))
{%- endmacro %}

{% macro url_path(url) -%}
    coalesce(substring({{ url }} from '^[a-zA-Z][a-zA-Z0-9+.-]*://[^/?#]+(/[^?#]*)'), '/')
{%- endmacro %}

{% macro url_query(url) -%}
    substring({{ url }} from '\?([^#]*)')
{%- endmacro %}

{#- A host without "www." / "m." in front, for matching referrers to the referrer seed. -#}
{% macro bare_host(host) -%}
    regexp_replace({{ host }}, '^(www|m)\.', '')
{%- endmacro %}
