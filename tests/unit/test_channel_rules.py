"""Seed channel_rules as the engine reads it: the shipped seed, and the errors a broken one
gives (the warehouse's data tests on the seed check the same)."""

import pytest

from ingestion.core.errors import SitelineError
from realtime.engine.rules import CHANNEL_RULES_SEED, CHANNELS_SEED, channel_rules

HEADER = "match_kind,match_value,channel_id\n"
FALLBACKS = "any_campaign,,other\nnone,,direct\n"


def rules_of(tmp_path, body: str):
    seed = tmp_path / "channel_rules.csv"
    seed.write_text(HEADER + body)
    return channel_rules(seed, CHANNELS_SEED)


def test_the_shipped_seed_compiles_to_lookups():
    rules = channel_rules(CHANNEL_RULES_SEED, CHANNELS_SEED)
    assert rules.by_campaign_medium["cpc"] == "paid_search"
    assert rules.by_campaign_medium["organic"] == "organic_search"
    assert rules.by_referrer_medium == {
        "search": "organic_search", "social": "social", "email": "email",
        "other_site": "referral",
    }  # fmt: skip
    assert (rules.any_campaign, rules.no_source) == ("other", "direct")


def test_values_are_matched_in_lower_case(tmp_path):
    rules = rules_of(tmp_path, "campaign_medium,Podcast,referral\n" + FALLBACKS)
    assert rules.by_campaign_medium == {"podcast": "referral"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("campaign_source,x,other\n" + FALLBACKS,
         "line 2: match_kind 'campaign_source' is not one of campaign_medium, referrer_medium"),
        ("campaign_medium,x,podcasts\n" + FALLBACKS,
         "line 2: channel_id 'podcasts' is not in channels.csv; add it there"),
        ("campaign_medium,cpc,paid_search\ncampaign_medium,CPC,display\n" + FALLBACKS,
         "line 3: a second campaign_medium rule for 'cpc'; keep one"),
        ("campaign_medium,cpc,paid_search\nnone,,direct\n",
         "needs exactly one any_campaign rule"),
    ],
)  # fmt: skip
def test_a_broken_seed_is_refused_naming_the_line_and_the_fix(tmp_path, body, message):
    with pytest.raises(SitelineError, match=f"channel_rules.csv: {message}"):
        rules_of(tmp_path, body)
