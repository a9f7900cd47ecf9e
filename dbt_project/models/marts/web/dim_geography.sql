-- Countries by ISO 3166 code (names from the geoip2fast database the collector uses).
select
    country_code,
    country_name
from {{ ref('countries') }}
