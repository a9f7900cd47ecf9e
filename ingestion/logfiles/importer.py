"""A one-off import of logfiles (``siteline import-logs``): one pull of a path, glob or URL
into ``raw_logfiles``, incremental like the scheduled pulls, and a summary of what happened
to every line.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.core.errors import SitelineError

TOTALS = ("lines_read", "loaded", "skipped", "rejected", "bots", "bytes_read")


@dataclass
class ImportSummary:
    """What one import read and did, summed over its files."""

    files: int
    seconds: float
    totals: dict[str, int]  # the per-file stats of TOTALS, summed
    excluded: Counter = field(default_factory=Counter)  # by reason (sites.yml's exclusions)
    rejected_reasons: Counter = field(default_factory=Counter)


def import_logs(
    location: str,
    site: str,
    *,
    source: str = "import",
    log_format: str = "auto",
    apache_format: str | None = None,
    regex: str | None = None,
    progress: Callable[[int], None] | None = None,
    read: Callable[[], None] | None = None,
    say: Callable[[str], None] = print,
) -> ImportSummary:
    """Import the logfiles at ``location`` once for ``site`` under the source name ``source``
    (a second import of the same files adds nothing). ``progress(lines)`` hears of lines
    read, ``read()`` that the load begins, ``say`` of a load an earlier import left
    unfinished (finished first). The process must be prepared (the warehouse running,
    ``runtime.configure_environment``)."""
    from dlt.pipeline.exceptions import PipelineStepFailed

    from ingestion.core.sites import load_sites
    from ingestion.logfiles import finish_interrupted_load, logfiles
    from ingestion.logfiles.remote import PullError
    from ingestion.pipelines import logfile_pipeline

    load_sites().site(site)  # unknown site: a one-line error naming the known ones
    url = location if "://" in location else f"file://{Path(location).resolve()}"
    overrides = {"url": url, "format": log_format, "log_format": apache_format, "regex": regex,
                 "last_line": "read"}  # fmt: skip
    report: dict = {}
    if progress is not None:
        report["progress"] = progress
    if read is not None:
        report["read"] = read
    started = time.monotonic()
    try:
        pipeline = logfile_pipeline(f"{site}.{source}")
        if (removed := finish_interrupted_load(pipeline)) is not None:
            again = f"; copied again: {removed}" if removed else ""
            say(f"finished the load an earlier import left unfinished{again}")
        pipeline.run(logfiles(site, source, overrides=overrides, report=report))
    except PipelineStepFailed as exc:
        cause = exc.__cause__ or exc.exception
        # dlt wraps the reason: say ours (a PullError names the source and the cause)
        while cause.__cause__ is not None and not isinstance(cause, PullError):
            cause = cause.__cause__
        raise SitelineError(
            f"import of {location} failed: {getattr(cause, 'args', [cause])[0]}"
        ) from None
    seconds = time.monotonic() - started
    stats = report["stats"]
    if not stats:
        raise SitelineError(f"no file matches {location}")
    return ImportSummary(
        files=len(stats),
        seconds=seconds,
        totals={k: sum(getattr(s, k) for s in stats) for k in TOTALS},
        excluded=sum((s.excluded for s in stats), start=Counter()),
        rejected_reasons=sum((s.rejected_reasons for s in stats), start=Counter()),
    )
