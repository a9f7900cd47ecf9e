-- INTERIM (replaced by the RFM model's version): every customer.
-- depends_on: {{ ref('int_customers_changed_this_run') }}
{{ config(meta={'incremental_bookkeeping': true}, post_hook='analyze {{ this }}') }}

select
    site_id,
    customer_key
from {{ ref('int_customer_activity') }}
order by site_id, customer_key
