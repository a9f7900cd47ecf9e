{#- Written by back-office systems (recommendations, loyalty tier, support status ...) and
    read by the real-time engine and BI tools. dbt only creates it: it is never rebuilt,
    not even by --full-refresh, so what other systems wrote stays. -#}
{{ config(
    materialized='incremental',
    full_refresh=false,
    unique_key=['site_id', 'customer_key', 'attribute_name'],
    indexes=[{'columns': ['site_id', 'customer_key', 'attribute_name'], 'unique': True}],
) }}

select
    null::text as site_id,
    null::text as customer_key,
    null::text as attribute_name,
    null::jsonb as attribute_value,
    null::text as written_by,
    null::timestamptz as updated_at
where false
