{#- The channel of a visit from its campaign medium and its referrer's class: the one
    definition of channel grouping (seed channels.csv describes each channel). -#}
{% macro channel_grouping(campaign_medium, campaign_source, referrer_medium) -%}
    case
        when lower({{ campaign_medium }}) in ('cpc', 'ppc', 'paid', 'paidsearch', 'paid_search', 'sem')
            then 'paid_search'
        when lower({{ campaign_medium }}) in ('display', 'banner', 'cpm', 'programmatic') then 'display'
        when lower({{ campaign_medium }}) in ('affiliate', 'partner', 'affiliates') then 'affiliate'
        when lower({{ campaign_medium }}) in ('email', 'e-mail', 'e_mail', 'newsletter') then 'email'
        when lower({{ campaign_medium }}) in ('social', 'social-network', 'social_network', 'sm', 'paid_social')
            then 'social'
        when lower({{ campaign_medium }}) = 'organic' then 'organic_search'
        when {{ campaign_medium }} is not null or {{ campaign_source }} is not null then
            case {{ referrer_medium }}
                when 'search' then 'organic_search'
                when 'social' then 'social'
                when 'email' then 'email'
                when 'other_site' then 'referral'
                else 'other'
            end
        when {{ referrer_medium }} = 'search' then 'organic_search'
        when {{ referrer_medium }} = 'social' then 'social'
        when {{ referrer_medium }} = 'email' then 'email'
        when {{ referrer_medium }} = 'other_site' then 'referral'
        else 'direct'
    end
{%- endmacro %}
