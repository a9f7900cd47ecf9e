{#- Memory for one model's sorts, hashes and index builds, in its own transaction (every
    model's first pre-hook, dbt_project.yml). The sessionisation sorts every unified event
    with all of its columns, and the models above it sort by visit: with more memory a sort
    spills fewer runs to disk and merges them in fewer passes (at 10M events such a sort is
    gigabytes), and an index is built from fewer runs. Four dbt threads (profiles.yml), each
    model's query a few sorts and hashes: plan for about 4 GB of RAM (docs/operations.md).
    Ordinary queries (Superset, BI tools) keep the server's own settings. -#}
{% macro model_memory() -%}
    set local work_mem = '{{ env_var("SITELINE_MODEL_WORK_MEM", "256MB") }}';
    set local maintenance_work_mem = '{{ env_var("SITELINE_MODEL_MAINTENANCE_WORK_MEM", "1GB") }}'
{%- endmacro %}
