"""Demo traffic: a simulated shop's tracker events, access log and ground truth.

:func:`prepare_demo_traffic` writes it where a real installation's data arrives (the local
landing) for ``siteline demo``; ``simulator`` makes the traffic, ``writer`` writes it.
"""

from __future__ import annotations


def prepare_demo_traffic(
    cfg, url: str | None = None, progress: bool = True, segment_events: int = 50_000
) -> dict:
    """Write the demo traffic into the local landing, replacing earlier demo traffic; returns
    the writer's summary (``stats``, ``reused``, ``replaced_segments``).

    Same settings as last time: reused as they are. Other settings: the earlier demo segments
    and the rows loaded from them (in the warehouse ``url``) are removed first, so demo
    traffic is never doubled.
    """
    from ingestion.core.home import data_dir, landing_dir
    from ingestion.core.warehouse import warehouse_url
    from ingestion.demo_traffic.writer import write_simulation

    summary = write_simulation(
        cfg, data_dir("demo"), landing_root=landing_dir(), progress=progress,
        segment_events=segment_events,
    )  # fmt: skip
    if summary.get("replaced_segments"):
        from ingestion.collector_events import delete_segments

        delete_segments(url or warehouse_url(), summary["replaced_segments"])
    return summary
