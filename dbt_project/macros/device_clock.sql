{#- Whether an event's device stamps (occurred_at, sent_at: raw_collector.events) are a wait
    the tracker can have had: sent no earlier than it happened, and at most a year later
    (the tracker's offline queue). Anything else is a broken or forged clock. -#}
{% macro device_wait_is_plausible(occurred_at='occurred_at', sent_at='sent_at') -%}
    (
        {{ sent_at }} >= {{ occurred_at }}
        and {{ sent_at }} <= {{ occurred_at }} + interval '366 days'
    )
{%- endmacro %}
