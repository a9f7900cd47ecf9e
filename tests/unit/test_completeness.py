"""The pure parts of the completeness rule: a collector read's bound, a source's lateness."""

import re
from datetime import UTC, datetime, timedelta

import pytest

from ingestion.collector_events import closed_before, landing_read
from ingestion.core.errors import SitelineError
from ingestion.core.landing import SegmentInfo
from ingestion.core.sites import load_sites
from orchestration.completeness import Completeness, period_complete

READ_AT = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)


def segment(name: str, first: str | None) -> SegmentInfo:
    return SegmentInfo(name, 1, 10, "x", first, first, READ_AT.isoformat())


def test_a_read_that_took_every_segment_holds_what_was_received_a_segment_time_before():
    listed = [segment("a", "2026-12-07T09:50:00+00:00"), segment("b", "2026-12-07T09:58:00+00:00")]
    row = landing_read(READ_AT, listed, listed, [], segment_max_seconds=60)
    assert row["complete_before"] == READ_AT - timedelta(seconds=90) == closed_before(READ_AT, 60)
    assert (row["segments_listed"], row["segments_taken"], row["segments_left"]) == (2, 2, 0)
    assert (row["last_listed"], row["last_taken"]) == ("b", "b")


def test_segments_left_for_a_later_load_hold_the_read_back_to_the_first_of_their_events():
    listed = [
        segment("a", "2026-12-07T09:00:00+00:00"),
        segment("b", "2026-12-07T09:20:00+00:00"),
        segment("c", None),  # a segment of nothing but unreadable lines
        segment("d", "2026-12-07T09:10:00+00:00"),  # another writer's, opened earlier
    ]
    row = landing_read(READ_AT, listed, listed[:1], listed[1:], segment_max_seconds=60)
    assert row["complete_before"] == datetime(2026, 12, 7, 9, 10, tzinfo=UTC)
    assert (row["segments_taken"], row["segments_left"], row["last_listed"]) == (1, 3, "d")


def test_a_logfile_source_has_five_minutes_of_lateness_unless_it_says_otherwise(tmp_path):
    sites = tmp_path / "sites.yml"
    source = "{name: web1, url: 'file:///var/log/access.log'%s}"
    body = "sites:\n  - id: shop\n    domains: [shop.example]\n    logfiles:\n      - %s\n"
    sites.write_text(body % (source % ""))
    assert load_sites(sites).site("shop").logfiles[0].lateness == 300
    sites.write_text(body % (source % ", lateness: 1h"))
    assert load_sites(sites).site("shop").logfiles[0].lateness == 3600
    sites.write_text(body % (source % ", lateness: soon"))
    message = "sites.yml: site 'shop': logfiles[0].lateness: 'soon' is not a duration (write e.g."
    with pytest.raises(SitelineError, match=re.escape(message)):
        load_sites(sites)


def test_a_period_is_complete_when_it_ends_at_or_before_until():
    done = Completeness(READ_AT, [])
    assert period_complete(done, READ_AT) is True
    assert period_complete(done, READ_AT + timedelta(microseconds=1)) is False
    with pytest.raises(ValueError, match="must be an aware datetime"):
        period_complete(done, datetime(2026, 12, 7, 10, 0))
