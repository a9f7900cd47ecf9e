"""dlt source: a site's logfile source, pulled incrementally into ``raw_logfiles.*``.

Extraction runs in order (``EXTRACT__NEXT_ITEM_MODE=fifo``, set by the source).

``hits`` (appended; ``hit_id`` is unique), ``rejected_lines`` (merged on ``line_id``) and
``files`` (one row per file per pull, with ``pull_started_at``: every complete line written
before it is read by the pull; a pull that finds no file leaves one row, ``files_found`` 0, so
an idle source is not taken for one left behind). The per-file state (fingerprint → offset,
lines, generation) is the ``hits`` resource's dlt state, committed with the load: a failed
load is finished before anything new is read (:func:`recover_interrupted_load` first), a
successful one is never read again.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import dlt
import orjson
import pyarrow as pa

from ingestion.core.enrich import network_key_secret
from ingestion.core.settings import settings
from ingestion.core.sites import load_sites
from ingestion.logfiles.pull import PullStats, pull_source
from ingestion.logfiles.remote import credentials, open_remote

HIT_COLUMNS = {
    # unique: an index, so the merge of a small pull into a large table does not scan it
    "hit_id": {"data_type": "text", "nullable": False, "unique": True},
    "requested_at": {"data_type": "timestamp", "nullable": False},
    "status": {"data_type": "bigint"},
    "bytes": {"data_type": "bigint"},
    "time_taken_ms": {"data_type": "double"},
    "byte_offset": {"data_type": "bigint"},
    "line_number": {"data_type": "bigint"},
    "is_bot": {"data_type": "bool"},
    "is_static": {"data_type": "bool"},
    **{name: {"data_type": "text"} for name in (
        "site_id", "source", "visitor_key", "ip", "country", "method", "host", "path", "query",
        "protocol", "referrer", "referrer_host", "user_agent", "remote_user", "browser",
        "browser_version", "os", "os_version", "device_family", "device_type", "bot_reason",
        "utm_source", "utm_medium", "utm_campaign",
        "utm_term", "utm_content", "file_name", "file_fingerprint",
    )},
}  # fmt: skip


def resolve_source(site, source_name: str, overrides: dict | None = None):
    """The configured source (``${VAR}`` in its URL expanded), or a one-off one when
    ``overrides`` carries a ``url`` for a name sites.yml does not define."""
    from ingestion.core.sites import LogSource

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    matches = [s for s in site.logfiles if s.name == source_name]
    if matches:
        data = {**matches[0].model_dump(), **overrides}
    elif "url" in overrides:
        data = {"name": source_name, **overrides}
    else:
        known = ", ".join(s.name for s in site.logfiles) or "none"
        raise ValueError(f"site '{site.id}' has no logfile source '{source_name}' (has: {known})")
    data["url"] = os.path.expandvars(data["url"])
    return LogSource.model_validate(data)


# How hits reach PostgreSQL: parquet (binary COPY through ADBC, the default), csv (text COPY)
# or insert_values (dlt's INSERT statements) - the last two for comparison in benchmarks.
LOAD_FORMATS = ("parquet", "csv", "insert_values")


def load_format() -> str:
    """``SITELINE_LOGS_LOAD_FORMAT``: one of :data:`LOAD_FORMATS` (default parquet)."""
    return settings().logs_load_format


def recover_interrupted_load(pipeline: dlt.Pipeline) -> dict[str, int]:
    """Undo what an interrupted load committed for jobs it had not yet recorded as done.

    dlt copies each file of a load package in its own transaction and then records the job
    as done. A crash between the two leaves the rows in the table and the job to be retried:
    into ``hits`` the retry would hit the unique index on ``hit_id`` forever, into ``files``
    it would double a report row. So, before a pipeline runs, the rows of every job of a
    pending package that is not recorded as done are deleted, by hit id (a ``hits`` file) or
    by load id (``files``: one job per package); dlt then copies them again. Returns the rows
    deleted per table that had any (none when no package is pending, the usual case).
    """
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    removed: dict[str, int] = {}
    for load_id in pipeline.list_normalized_load_packages():
        jobs = pipeline.get_load_package_info(load_id).jobs
        todo = [job for state in ("new_jobs", "started_jobs") for job in jobs.get(state, [])]
        tables = {job.job_file_info.table_name for job in todo} & {"hits", "files"}
        if not tables:
            continue
        with pipeline.sql_client() as client:
            if not (client.has_dataset() and all(_exists(client, t) for t in tables)):
                continue  # the tables are created by this load: nothing can be there yet
            for job in todo:
                table = job.job_file_info.table_name
                name = client.make_qualified_table_name(table)
                if table == "files":
                    sql, args = f"delete from {name} where _dlt_load_id = %s", (load_id,)
                elif job.file_path.endswith(".parquet"):
                    ids = pq.read_table(job.file_path, columns=["hit_id"])["hit_id"]
                    sql = f"delete from {name} where _dlt_load_id = %s and hit_id = any(%s)"
                    args = (load_id, ids.to_pylist())
                elif job.file_path.endswith(".csv"):
                    read = pa_csv.ConvertOptions(include_columns=["hit_id"])
                    ids = pa_csv.read_csv(job.file_path, convert_options=read)["hit_id"]
                    sql = f"delete from {name} where _dlt_load_id = %s and hit_id = any(%s)"
                    args = (load_id, ids.to_pylist())
                else:  # insert_values: a comparison format for benchmarks, not recovered
                    continue
                with client.execute_query(sql, *args) as cursor:
                    if cursor.rowcount > 0:
                        removed[table] = removed.get(table, 0) + cursor.rowcount
    return removed


def finish_interrupted_load(pipeline: dlt.Pipeline) -> dict[str, int] | None:
    """Load what an interrupted run left (after :func:`recover_interrupted_load`), so that
    the pull that follows reads new lines: dlt's ``run`` would only load the pending package
    and stop. None when nothing was pending; else the rows deleted first, per table."""
    if not (pipeline.list_extracted_load_packages() or pipeline.list_normalized_load_packages()):
        return None
    pipeline.normalize()
    removed = recover_interrupted_load(pipeline)
    pipeline.load()
    return removed


def _exists(client, table: str) -> bool:
    rows = client.execute_sql(
        "select 1 from information_schema.tables where table_schema = %s and table_name = %s",
        client.dataset_name, table,
    )  # fmt: skip
    return bool(rows)


REJECTED_COLUMNS = {
    "line_id": {"data_type": "text", "nullable": False},
    "site_id": {"data_type": "text"},
    "source": {"data_type": "text"},
    "file_name": {"data_type": "text"},
    "file_fingerprint": {"data_type": "text"},
    "line_number": {"data_type": "bigint"},
    "byte_offset": {"data_type": "bigint"},
    "reason": {"data_type": "text"},
    "raw": {"data_type": "text"},
}


@dlt.source(name="logfiles", max_table_nesting=0)
def logfiles(
    site_id: str,
    source_name: str,
    sites_file: str | None = None,
    overrides: dict | None = None,
    report: dict | None = None,
):
    """One logfile source of a site; ``overrides`` (url, format, log_format, regex) serve
    one-off imports; ``report`` (a dict) receives the pull's per-file stats and may hold a
    ``progress`` callable that is told how many lines were read, and a ``read`` callable
    called once every line is read (the load comes next)."""
    config = load_sites(sites_file)
    site = config.site(site_id)
    source = resolve_source(site, source_name, overrides)
    # rejected_lines and files report on the whole pull, so they must run after hits is
    # exhausted: dlt's default round-robin extraction would start them after its first batch.
    os.environ["EXTRACT__NEXT_ITEM_MODE"] = "fifo"
    # Hits come as Arrow tables, written as parquet and loaded with binary COPY (ADBC); the
    # models read each row's load id. Files of 100k rows are copied on two connections at a
    # time: both cores busy, and memory bounded whatever the size of the pull (each file in
    # flight holds its rows, and dlt's default is 20 at a time).
    os.environ["NORMALIZE__PARQUET_NORMALIZER__ADD_DLT_LOAD_ID"] = "true"
    os.environ.setdefault("DATA_WRITER__FILE_MAX_ITEMS", "100000")
    os.environ.setdefault("LOAD__WORKERS", "2")
    spooled: dict[str, str] = {}
    pulled: list[PullStats] = []
    report = report if report is not None else {}
    report["stats"] = pulled
    pull_id = str(uuid.uuid4())
    started: dict[str, datetime] = {}

    # Appended: copied straight into raw_logfiles.hits, not into a staging table first and
    # then merged (a second write of every row). A pull reads only bytes past the offsets its
    # state holds, and that state is committed with the load, so no id comes twice; the
    # unique index on hit_id refuses one if it ever did (see docs/logfiles.md, "Load").
    @dlt.resource(name="hits", primary_key="hit_id", columns=HIT_COLUMNS, file_format=load_format(),
                  write_disposition="append")  # fmt: skip
    def hits() -> Iterator[pa.Table]:
        states: dict = dlt.current.resource_state().setdefault("files", {})
        # Before the listing: every complete line written before this moment is read by this
        # pull (the completeness of a period is judged by it, orchestration/completeness.py).
        started["at"] = datetime.now(UTC)
        # Rejected lines wait on disk (any number of them) until the hits are through.
        fd, spool = tempfile.mkstemp(prefix="siteline-rejected-", suffix=".jsonl")
        os.close(fd)
        spooled["path"] = spool
        remote = open_remote(source.url, *credentials(source), ca_file=source.tls_ca_file)

        def reject(row: dict) -> None:
            rejected.write(orjson.dumps(row) + b"\n")

        try:
            with open(spool, "ab") as rejected:
                yield from pull_source(
                    remote, site.id, source, site.ip_policy, network_key_secret(), states,
                    reject, pulled, site_timezone=site.timezone, progress=report.get("progress"),
                )  # fmt: skip
        finally:
            remote.close()

    @dlt.resource(name="rejected_lines", write_disposition="merge", primary_key="line_id",
                  columns=REJECTED_COLUMNS)  # fmt: skip
    def rejected_lines() -> Iterator[dict]:
        yield dlt.mark.materialize_table_schema()  # the models read it even when empty
        spool = spooled.get("path")
        if spool is None:
            return
        try:
            with open(spool, "rb") as fh:
                for line in fh:
                    yield orjson.loads(line)
        finally:
            os.unlink(spool)

    @dlt.resource(name="files", write_disposition="append", columns={
        "excluded": {"data_type": "json"}, "pull_started_at": {"data_type": "timestamp"},
        "pulled_at": {"data_type": "timestamp"}, "files_found": {"data_type": "bigint"},
    })  # fmt: skip
    def files() -> Iterator[dict]:
        if report.get("read"):  # extracted last: every line is read, the load comes next
            report["read"]()
        pulled_at = datetime.now(UTC)
        pull = {"pull_id": pull_id, "pull_started_at": started.get("at"), "pulled_at": pulled_at,
                "site_id": site.id, "source": source.name}  # fmt: skip
        if not pulled:
            # A pull that found no file still says it looked: an idle source is not behind.
            yield {**pull, "files_found": 0}
        for s in pulled:
            yield {
                **pull, "files_found": len(pulled),
                "file_name": s.file_name, "file_fingerprint": s.fingerprint,
                "generation": s.generation, "start_offset": s.start_offset,
                "end_offset": s.end_offset, "bytes_read": s.bytes_read, "lines_read": s.lines_read,
                "loaded": s.loaded, "skipped": s.skipped, "rejected": s.rejected, "bots": s.bots,
                "excluded": dict(s.excluded), "excluded_total": sum(s.excluded.values()),
            }  # fmt: skip

    return hits, rejected_lines, files
