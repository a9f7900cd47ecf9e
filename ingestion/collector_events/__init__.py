"""dlt source: accepted tracker events from landing segments into ``raw_collector.events``.

Reads closed segments listed in the landing manifest (``realtime.collector.landing``), skips
segments it already loaded (their names are kept in the resource's dlt state, committed with
the load, so a failed load is retried whole) and merges on ``event_id``, so loading the same
segments twice, or an event delivered twice by a retrying tracker, adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dlt
import orjson

from realtime.collector.landing import SEGMENTS, iter_segment, read_manifest

# Typed columns of raw_collector.events; every other field of an event lands in `attributes`.
EVENT_COLUMNS = {
    "event_id": {"data_type": "text", "nullable": False},
    "type": {"data_type": "text", "nullable": False},
    "site_id": {"data_type": "text", "nullable": False},
    "visitor_id": {"data_type": "text"},
    "session_id": {"data_type": "text"},
    "user_id": {"data_type": "text"},
    "occurred_at": {"data_type": "timestamp"},
    "sent_at": {"data_type": "timestamp"},
    "received_at": {"data_type": "timestamp", "nullable": False},
    "url": {"data_type": "text"},
    "referrer": {"data_type": "text"},
    "title": {"data_type": "text"},
    "user_agent": {"data_type": "text"},
    "ip": {"data_type": "text"},
    "attributes": {"data_type": "json"},
    "segment": {"data_type": "text", "nullable": False},
    "segment_line": {"data_type": "bigint", "nullable": False},
}
_TOP = set(EVENT_COLUMNS) - {"attributes", "segment", "segment_line"}


def to_row(record: dict, segment: str, line: int) -> dict:
    """Split a landed event into typed columns and the JSON ``attributes`` of its type."""
    row = {key: record.get(key) for key in _TOP}
    row["attributes"] = {k: v for k, v in record.items() if k not in _TOP}
    row["segment"] = segment
    row["segment_line"] = line
    return row


@dlt.source(name="collector_events", max_table_nesting=0)
def collector_events(landing_dir: str = dlt.config.value):
    """Closed landing segments under ``landing_dir/events``."""
    return events(Path(landing_dir) / "events")


@dlt.resource(
    name="events",
    write_disposition="merge",
    primary_key="event_id",
    columns=EVENT_COLUMNS,
)
def events(stream_dir: Path) -> Iterator[list[dict]]:
    state = dlt.current.resource_state()
    loaded: list[str] = state.setdefault("loaded_segments", [])
    done = set(loaded)
    for segment in read_manifest(stream_dir):
        if segment.name in done:
            continue
        batch: list[dict] = []
        for number, line in iter_segment(stream_dir / SEGMENTS / segment.name):
            batch.append(to_row(orjson.loads(line), segment.name, number))
            if len(batch) >= 20_000:
                yield batch
                batch = []
        if batch:
            yield batch
        loaded.append(segment.name)
