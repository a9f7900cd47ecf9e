"""The collector's settings: the part of the core settings object (``ingestion.core.settings``)
the collector uses, read once at start, with the defaults worked out from other values.

The variables, their defaults and their validation are the core's; a bad value raises its
``SitelineError`` naming the variable.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, replace
from pathlib import Path

from ingestion.core.home import landing_dir as default_landing_dir
from ingestion.core.settings import settings


@dataclass(frozen=True)
class CollectorSettings:
    """What a collector process is configured with (build it with :meth:`from_environment`)."""

    landing_dir: Path
    writer_id: str  # the collector's name in segment names
    segment_max_seconds: float
    segment_max_mb: float
    # Closed segments older than this are deleted (0 keeps them all): the warehouse keeps
    # the events; the landing is the buffer in front of it.
    retention_days: float
    rate_per_ip: float  # 0 turns the rate limit off
    rate_burst: float
    durable: bool
    landing_token: str | None  # None: the landing export is off
    noop_endpoint: bool
    demo_page: bool
    # The real-time engine runs in this process unless SITELINE_ENGINE=0 (then it runs
    # elsewhere, reading the Redis event bus).
    engine: bool
    engine_snapshot: Path
    engine_snapshot_seconds: float
    # Where the engine reads customer state: a URL, "none" (nowhere), None (the warehouse as
    # the read-only bi_reader).
    engine_warehouse_url: str | None

    @classmethod
    def from_environment(cls, **given) -> CollectorSettings:
        """The settings the environment has now; keyword arguments replace fields."""
        core_settings = settings()
        landing = given.pop("landing_dir", None) or default_landing_dir()
        writer_id = (
            given.pop("writer_id", None) or core_settings.collector_id or default_writer_id()
        )
        view = cls(
            landing_dir=landing,
            writer_id=writer_id,
            segment_max_seconds=core_settings.segment_max_seconds,
            segment_max_mb=core_settings.segment_max_mb,
            retention_days=core_settings.landing_retention_days,
            rate_per_ip=core_settings.rate_limit,
            rate_burst=core_settings.rate_burst,
            durable=core_settings.durable,
            landing_token=core_settings.landing_token,
            noop_endpoint=core_settings.collector_noop,
            demo_page=core_settings.demo_page,
            engine=core_settings.engine,
            engine_snapshot=core_settings.engine_snapshot
            or landing.parent / "realtime" / f"sessions-{writer_id}.json",
            engine_snapshot_seconds=core_settings.engine_snapshot_seconds,
            engine_warehouse_url=core_settings.engine_warehouse_url,
        )
        return replace(view, **given)


def default_writer_id() -> str:
    """``collector_<host name>``: segment names take letters, digits and underscores."""
    return f"collector_{socket.gethostname().replace('-', '_')}"
