{#- Whether an event matches a goal or funnel-step rule of sites.yml (config.goals,
    config.funnel_steps): the one definition both use. -#}
{% macro matches_rule(event, rule) -%}
    (
        ({{ rule }}.match_type = 'page' and {{ event }}.event_type = 'page_view'
            and {{ event }}.page_path ~ {{ rule }}.path_regex)
        or ({{ rule }}.match_type = 'event' and {{ event }}.event_type = 'event'
            and ({{ rule }}.event_category is null or {{ event }}.event_category = {{ rule }}.event_category)
            and ({{ rule }}.event_action is null or {{ event }}.event_action = {{ rule }}.event_action)
            and ({{ rule }}.path_regex is null or {{ event }}.page_path ~ {{ rule }}.path_regex))
        or ({{ rule }}.match_type = 'transaction' and {{ event }}.event_type = 'transaction')
        or ({{ rule }}.match_type = 'identify' and {{ event }}.event_type = 'identify')
    )
{%- endmacro %}
