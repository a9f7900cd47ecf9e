"""The alerts section of sites.yml: rules and contact points validated with errors that name
the file, the rule (or contact point) and the field."""

from pathlib import Path

import pytest

from ingestion.core.alert_config import parse_duration
from ingestion.core.errors import SitelineError
from ingestion.core.sites import load_sites

SITES = """
sites:
  - id: shop
    domains: [shop.example]
    timezone: Europe/Berlin
    goals: [{id: purchase, type: transaction}]
    funnels:
      - id: checkout
        steps: [{name: Cart, path: '^/cart$'}, {name: Pay, path: '^/pay$'}]
  - id: blog
    domains: [blog.example]
"""


def write(tmp_path: Path, alerts: str) -> Path:
    path = tmp_path / "sites.yml"
    path.write_text(SITES + alerts)
    return path


def errors(tmp_path, alerts: str) -> str:
    with pytest.raises(SitelineError) as exc:
        load_sites(write(tmp_path, alerts))
    return str(exc.value)


def test_a_valid_rule_set_reads_with_its_defaults(tmp_path):
    config = load_sites(
        write(
            tmp_path,
            """
alerts:
  contact_points:
    - {name: ops, type: email, to: [ops@shop.example], from: alerts@shop.example}
    - {name: pager, type: sms, to: ['+4915112345678'], from: '+4915199999999', account_env: SMS_SID,
       token_env: SMS_TOKEN}
    - {name: chat, type: webhook, format: slack, url_env: SLACK_URL}
  rules:
    - id: revenue_drop
      metric: revenue
      sites: [shop]
      condition: {type: decrease, by: 30, compared_to: same_period_last_week}
      for: 2
      repeat_interval: 2h
      contact_points: [ops, pager]
    - id: traffic_anomaly
      metric: sessions
      grain: hour
      by: channel
      condition: {type: anomaly, direction: down, weeks: 6, min_volume: 50}
      contact_points: [chat]
    - id: payments_failing
      metric: payment_failures
      window: 5m
      condition: {type: above, value: 3}
""",
        )
    )
    drop, anomaly, live = config.alerts.rules
    assert (drop.for_periods, drop.repeat_interval, drop.grain) == (2, 7200, "day")
    assert drop.condition.unit == "percent"
    assert [s.id for s in config.sites_of(drop)] == ["shop"]
    assert [s.id for s in config.sites_of(anomaly)] == ["shop", "blog"]
    assert (anomaly.condition.threshold, anomaly.condition.min_change) == (3.5, 20)
    assert anomaly.repeat_interval == 4 * 3600 and anomaly.no_data == "nodata"
    assert live.window == 300
    assert config.alerts.contact_point("ops").from_address == "alerts@shop.example"


def test_rule_errors_name_the_rule_and_the_field(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - id: r1
      metric: revenue
      filters: {page_label: Checkout}
      condition: {type: decrease, by: 30}
    - id: r2
      metric: sessions
      condition: {type: decrease}
    - id: r3
      metric: visits_per_fortnight
      condition: {type: below, value: 3}
      for: 0
    - id: r4
      metric: sessions
      grain: week
      condition: {type: anomaly}
""",
    )
    assert (
        "sites.yml: alert rule 'r1': metric 'revenue' has no dimension 'page_label' "
        "(its dimensions: channel, device, country)" in message
    )
    assert "sites.yml: alert rule 'r2': condition: 'by' is required for a 'decrease'" in message
    assert "sites.yml: alert rule 'r3': metric: 'visits_per_fortnight' is not a metric" in message
    assert "sites.yml: alert rule 'r3': for: Input should be greater than or equal to 1" in message
    assert "alert rule 'r4': condition 'anomaly' needs grain hour or day" in message


def test_references_to_contact_points_goals_funnels_and_sites_are_checked(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  contact_points: [{name: ops, type: email, to: [ops@shop.example]}]
  rules:
    - {id: r1, metric: sessions, condition: {type: below, value: 1}, contact_points: [nobody]}
""",
    )
    assert "alert rule 'r1': contact_points: 'nobody' is not a contact point (alerts." in message
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - {id: r1, metric: conversions, filters: {goal: purchase}, condition: {type: below, value: 1}}
""",
    )
    # the rule applies to all sites, and blog has no goal 'purchase'
    assert "alert rule 'r1': filters.goal: site 'blog' has no goal 'purchase'" in message
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - id: r1
      metric: funnel_drop_off
      sites: [shop]
      filters: {funnel: checkout, step: 3}
      condition: {type: above, value: 0.5}
""",
    )
    assert "filters.step: funnel 'checkout' of site 'shop' has 2 steps" in message
    message = errors(
        tmp_path,
        "alerts:\n  rules:\n    - {id: r1, metric: funnel_drop_off, sites: [shop],"
        " condition: {type: above, value: 0.5}}\n",
    )
    assert "metric 'funnel_drop_off' needs filters.funnel" in message


def test_contact_point_errors_name_the_contact_point(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  contact_points:
    - {name: ops, type: email, to: [not-an-address]}
    - {name: pager, type: sms, to: ['call me']}
    - {name: hook, type: webhook}
    - {name: leaky, type: webhook, url_env: 'https://hooks.example/T0/secret'}
""",
    )
    assert "sites.yml: contact point 'ops': 'not-an-address' is not an e-mail address" in message
    assert "contact point 'pager': 'call me' is not a phone number" in message
    assert "contact point 'hook': a webhook contact point needs 'url' or 'url_env'" in message
    assert "contact point 'leaky': url_env: 'https://hooks.example/T0/secret' is not an " in message


def test_real_time_rules_need_a_window_and_mart_rules_refuse_one(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - {id: live, metric: orders, condition: {type: below, value: 1}}
    - {id: daily, metric: sessions, window: 5m, condition: {type: below, value: 1}}
""",
    )
    assert "alert rule 'live': real-time metric 'orders' needs 'window'" in message
    assert "alert rule 'daily': 'window' is only for real-time metrics" in message


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("4h", 14400), ("1.5d", 129600), (60, 60)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_a_bad_duration_says_how_to_write_one(tmp_path):
    message = errors(
        tmp_path,
        "alerts:\n  rules:\n    - {id: r1, metric: sessions, repeat_interval: soon,"
        " condition: {type: below, value: 1}}\n",
    )
    assert "alert rule 'r1': repeat_interval: 'soon' is not a duration (write e.g. 90s" in message


def test_infinite_and_nan_values_are_refused_with_rule_and_field(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - {id: r1, metric: sessions, repeat_interval: .inf, condition: {type: below, value: 1}}
    - {id: r2, metric: sessions, condition: {type: above, value: .nan}}
""",
    )
    assert "alert rule 'r1': repeat_interval: 'inf' is not a duration" in message
    assert "alert rule 'r2': condition.value: Input should be a finite number" in message


def test_conditions_that_could_never_fire_or_mix_up_their_fields_are_refused(tmp_path):
    message = errors(
        tmp_path,
        """
alerts:
  rules:
    - {id: r1, metric: sessions, sites: [], condition: {type: below, value: 1}}
    - {id: r2, metric: sessions, condition: {type: decrease, by: 100}}
    - {id: r3, metric: sessions, condition: {type: increase, by: 20, value: 5}}
    - {id: r4, metric: sessions, condition: {type: above, value: 5, by: 20}}
""",
    )
    assert "alert rule 'r1': sites: name at least one site, or write 'all'" in message
    assert "alert rule 'r2': condition: a decrease by 100% or more can never happen" in message
    assert "alert rule 'r3': condition: 'value' is for below/above" in message
    assert "alert rule 'r4': condition: 'by' is for decrease/increase" in message
