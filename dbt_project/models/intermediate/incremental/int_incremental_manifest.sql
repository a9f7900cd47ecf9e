-- One row per incremental model: the newest change of its scope it has taken in (its
-- watermark), the hash of the configuration it was built with, and when it was last built
-- and last built whole. The on-run-end hook writes it (update_incremental_manifest,
-- macros/incremental/bookkeeping.sql) for every incremental model a run built; the table is
-- created by the on-run-start hook, so this model only declares it. A full refresh keeps it:
-- it records that the models were built whole.
{{ config(
    materialized='incremental',
    full_refresh=false,
    meta={'incremental_bookkeeping': true},
) }}

select
    null::text as model_name,
    null::text as scope,
    null::text as config_hash,
    null::bigint as change_id,
    null::timestamptz as full_at,
    null::timestamptz as updated_at
where false
