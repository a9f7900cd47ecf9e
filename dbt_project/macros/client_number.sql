{#- A number a client sent (a jsonb value of raw_collector.events' attributes: revenue, an
    item's price, a timing) as `type`, rounded to `scale` decimals (none: as sent), or NULL
    when it is not a JSON number or, rounded, lies outside min_value..max_value. The loader
    holds whatever JSON arrived before the collector's bounds existed (or by another path):
    a cast of such a value ('x', 1.5 as integer, 1e13 as numeric(14, 2)) would fail the
    whole build. With json=false `value` is already a number (a sum of such numbers) and
    only its range is checked. The CASE is nested so the cast runs only on a number. -#}
{% macro client_number(value, type, min_value, max_value, scale=none, json=true) -%}
    {%- set number = '(' ~ value ~ ')::numeric' if json else '(' ~ value ~ ')' -%}
    {%- set rounded = number if scale is none else 'round(' ~ number ~ ', ' ~ scale ~ ')' -%}
    {%- if json -%}
        case
            when jsonb_typeof({{ value }}) = 'number'
                then
                    case
                        when {{ rounded }} between {{ min_value }} and {{ max_value }}
                            then {{ rounded }}::{{ type }}
                    end
        end
    {%- else -%}
        case when {{ rounded }} between {{ min_value }} and {{ max_value }} then {{ rounded }}::{{ type }} end
    {%- endif -%}
{%- endmacro %}


{#- An amount of money the client sent (revenue, shipping, tax, an item's price: 0 up to
    the collector's bound, under 1e12), or a sum of amounts (json=false: under 1e12 either
    way), in cents: what numeric(14, 2) holds. -#}
{% macro client_amount(value, json=true) -%}
    {{ client_number(
        value, 'numeric(14, 2)', 0 if json else -999999999999.99, 999999999999.99, scale=2, json=json
    ) }}
{%- endmacro %}


{#- A browser timing in whole milliseconds (0 .. 1 hour), rounded to the nearest. -#}
{% macro client_timing(value) -%}
    {{ client_number(value, 'integer', 0, 3600000, scale=0) }}
{%- endmacro %}


{#- An item's quantity: 1 when the item gives none (the tracker's default), else a whole
    number 1 .. 2^31-1; NULL for anything else (a fraction, a string, 0). -#}
{% macro client_quantity(item) -%}
    {%- set quantity = '(' ~ item ~ " -> 'quantity')" -%}
    case
        when coalesce(jsonb_typeof({{ quantity }}), 'null') = 'null' then 1
        when jsonb_typeof({{ quantity }}) = 'number'
            then
                case
                    when {{ quantity }}::numeric = trunc({{ quantity }}::numeric)
                        then {{ client_number(quantity ~ '::numeric', 'integer', 1, 2147483647, json=false) }}
                end
    end
{%- endmacro %}
