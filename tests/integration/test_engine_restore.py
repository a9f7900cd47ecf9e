"""The real-time engine's restart: a real snapshot file and a real landing on disk.

No server: the engine is restored as the collector restores it at start
(``Engine.restore(<landing>/events)``), from files written by the real snapshot writer
(``MemoryStore.save``) and landing writer (``SegmentWriter``).
"""

import logging
import time
import uuid
from datetime import UTC, datetime

from ingestion.core.landing import SegmentWriter, read_manifest
from ingestion.core.sites import SitesConfig
from realtime.engine.engine import Engine
from realtime.engine.store import MemoryStore

SHOP = {"id": "shop", "domains": ["shop.example"], "sessions": {"inactivity_timeout_minutes": 30}}
BLOG = {"id": "blog", "domains": ["blog.example"], "sessions": {"inactivity_timeout_minutes": 30}}


def sites(*defined: dict) -> SitesConfig:
    return SitesConfig.model_validate({"sites": list(defined)})


def event(visitor: str, received: float, site: str = "shop", path: str = "/") -> dict:
    """A landed page view, received at epoch time ``received``."""
    moment = datetime.fromtimestamp(received, UTC).isoformat(timespec="milliseconds")
    return {
        "event_id": str(uuid.uuid4()), "type": "page_view", "site_id": site,
        "visitor_id": visitor, "session_id": f"c-{visitor}", "occurred_at": moment,
        "sent_at": moment, "received_at": moment, "url": f"https://{site}.example{path}",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "is_bot": False,
    }  # fmt: skip


def land(landing, *segments: list[dict]) -> None:
    """Each list of events as one closed segment, listed in the manifest."""
    writer = SegmentWriter(landing, writer_id="collector")
    for events in segments:
        for record in events:
            writer.write(record)
        writer.close_segment()


def test_a_site_removed_from_sites_yml_is_dropped_from_the_snapshot_on_restore(tmp_path, caplog):
    snapshot = tmp_path / "realtime" / "sessions-collector.json"
    now = time.time()
    before = Engine(sites(SHOP, BLOG), store=MemoryStore(snapshot))
    before.handle([event("v-shop", now - 60), event("v-blog", now - 50, site="blog"),
                   event("v-blog-2", now - 40, site="blog")])  # fmt: skip
    assert before.save() == 3

    after = Engine(sites(SHOP), store=MemoryStore(snapshot))  # blog removed from sites.yml
    with caplog.at_level(logging.WARNING, logger="siteline.engine"):
        assert after.restore(tmp_path / "landing" / "events") == 1  # it raised TypeError
    assert after.store.get("shop", "v-shop").page_views == 1
    assert after.store.get("blog", "v-blog") is None
    assert (
        f"snapshot {snapshot}: dropped 2 live visit(s) of site 'blog', which sites.yml no "
        "longer defines" in caplog.messages
    )
    assert after.sweep() == 0  # and expiry goes on
    after.save()


def test_the_replay_reads_only_segments_after_the_snapshot_and_a_restart_renews_it(tmp_path):
    landing = tmp_path / "landing" / "events"
    snapshot = tmp_path / "realtime" / "sessions-collector.json"
    now = time.time()
    # Two hours of old traffic (40 segments), all of it before the snapshot.
    land(landing, *[[event(f"old-{n}", now - 7200 + n * 60)] for n in range(40)])
    # The snapshot: visitor A's first page view, taken 10 minutes ago.
    first = Engine(sites(SHOP), store=MemoryStore(snapshot))
    first.handle([event("v-a", now - 660, path="/p/1")])
    first.store.save({"taken_at": now - 600, "recent": []})
    # After it: two segments, A's next two page views and B's first.
    land(
        landing,
        [event("v-a", now - 300, path="/p/2"), event("v-b", now - 290)],
        [event("v-a", now - 120, path="/cart")],
    )
    assert len(read_manifest(landing)) == 42

    restarted = Engine(sites(SHOP), store=MemoryStore(snapshot))
    assert restarted.restore(landing) == 2
    assert restarted.counters["replay_segments"] == 2 and restarted.counters["replayed"] == 3
    a = restarted.store.get("shop", "v-a")
    assert a.page_views == 3 and a.landing_path == "/p/1"
    assert restarted.store.get("shop", "v-b").page_views == 1
    assert restarted.store.get("shop", "old-0") is None
    restarted.snapshots.reap(wait=True)  # the snapshot written at restore (by a forked child)

    # A crash before the first periodic snapshot: the next start replays from the snapshot
    # written at restore, not again from the old one (the replay grew with every restart).
    again = Engine(sites(SHOP), store=MemoryStore(snapshot))
    assert again.restore(landing) == 2
    assert again.counters["replay_segments"] == 0 and again.counters["replayed"] == 0
    a = again.store.get("shop", "v-a")
    assert (
        a.page_views == 3
        and a.landing_path == "/p/1"
        and a.session_id == (restarted.store.get("shop", "v-a").session_id)
    )
    again.snapshots.reap(wait=True)
