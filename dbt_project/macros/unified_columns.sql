{#- The columns of int_events_unified, in order: the incremental sessionisation re-reads
    already sessionised rows with exactly these columns. -#}
{% macro unified_columns(prefix='') -%}
    {%- set columns = [
        'event_id', 'site_id', 'event_source', 'event_type', 'occurred_at', 'received_at',
        'load_id', 'loaded_at', 'device_key', 'network_key', 'client_session_id', 'user_id', 'page_url',
        'page_host', 'page_path', 'page_query', 'page_title', 'referrer_url', 'event_category',
        'event_action', 'event_label', 'event_value', 'event_properties', 'order_id', 'revenue',
        'shipping', 'tax', 'currency', 'items', 'engaged_seconds', 'consent_granted', 'dns_ms',
        'connect_ms', 'ttfb_ms', 'dom_interactive_ms', 'page_load_ms', 'screen_resolution',
        'viewport_size', 'browser_language', 'connection_type', 'ip_address', 'user_agent',
        'browser', 'os', 'device_type', 'country_code', 'http_status', 'is_bot', 'bot_reason',
        'is_late', 'is_superseded', 'matched_view_id', 'referrer_host', 'referrer_medium', 'referrer_source',
        'campaign_name', 'campaign_source', 'campaign_medium', 'campaign_term', 'campaign_content'
    ] -%}
    {%- for column in columns -%}
        {{ prefix }}{{ column }}{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
