"""Incremental pulls over file, HTTP, FTP and SFTP from real servers on loopback: append,
partial lines, rotation, compression, replacement — exact counts, no duplicates, no gaps."""

import gzip
import os

import pytest

from ingestion.core.warehouse import connect
from ingestion.logfiles import logfiles
from tests.integration.servers import (
    free_port,
    ftp_server,
    http_file_server,
    isolated_pipeline,
    sftp_server,
    tls_certificate,
)

pytestmark = pytest.mark.integration
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def lines(start: int, count: int) -> str:
    return "".join(
        f"85.214.{n % 200}.{n % 250 + 1} - - [24/Nov/2026:10:{n // 60 % 60:02d}:{n % 60:02d} +0100] "
        f'"GET /p/{n}?utm_source=news HTTP/1.1" 200 {1000 + n} "https://www.google.com/" "{UA}"\n'
        for n in range(start, start + count)
    )


GARBAGE = "\x16\x03\x01 this is no log line\n"


@pytest.fixture(params=["file", "http", "https", "ftp", "ftps", "sftp"])
def setup(request, tmp_path, monkeypatch, warehouse):
    """(protocol, log folder, sites.yml, pipeline) for one protocol."""
    protocol = request.param
    logs = tmp_path / "logs"
    logs.mkdir()
    monkeypatch.setenv("TEST_LOG_USER", "loguser")
    monkeypatch.setenv("TEST_LOG_PASSWORD", "s3cret-pw")
    stop = None
    ca, *tls = tls_certificate(tmp_path) if protocol in ("https", "ftps") else (None,)
    if protocol == "file":
        url = f"file://{logs}/access.log*"
    elif protocol in ("http", "https"):
        base, stop = http_file_server(logs, tls=tls or None)
        url = f"{base}/access.log"  # HTTP has no listing: one file, no rotation history
    elif protocol in ("ftp", "ftps"):
        base, stop = ftp_server(logs, "loguser", "s3cret-pw", tls=tls or None)
        url = f"{base}/access.log*"
    else:
        known = tmp_path / "known_hosts"
        base, stop = sftp_server("loguser", "s3cret-pw", known)
        monkeypatch.setenv("SITELINE_SSH_KNOWN_HOSTS", str(known))
        url = f"{base}{logs}/access.log*"
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n    timezone: Europe/Berlin\n"
        f"    logfiles:\n      - name: web1\n        url: '{url}'\n        format: auto\n"
        "        username_env: TEST_LOG_USER\n        password_env: TEST_LOG_PASSWORD\n"
        + (f"        tls_ca_file: {ca}\n" if ca else "")  # the test CA signed the server's
    )
    pipeline = isolated_pipeline(
        f"test_logs_{protocol}", f"test_logs_{protocol}", warehouse, tmp_path
    )
    yield protocol, logs, sites, pipeline
    if stop:
        stop()


def pull(pipeline, sites):
    pipeline.run(logfiles("shop", "web1", sites_file=str(sites)))


def counts(pipeline):
    schema = pipeline.dataset_name
    with connect(os.environ["WAREHOUSE_URL"]) as conn:
        hits, distinct, paths = conn.execute(
            f"select count(*), count(distinct hit_id), count(distinct path) from {schema}.hits"
        ).fetchone()
        rejected = conn.execute(f"select count(*) from {schema}.rejected_lines").fetchone()[0]
    assert hits == distinct == paths  # no duplicates: every test line has its own path
    return hits, rejected


def test_incremental_pulls(setup):
    protocol, logs, sites, pipeline = setup
    log = logs / "access.log"
    log.write_text(lines(0, 50) + GARBAGE + lines(50, 50))
    pull(pipeline, sites)
    assert counts(pipeline) == (100, 1)

    # appended lines, and half a line still being written
    with log.open("a") as fh:
        fh.write(lines(100, 30) + lines(130, 1)[:40])
    pull(pipeline, sites)
    assert counts(pipeline) == (130, 1)  # the partial line waits

    pull(pipeline, sites)  # nothing new
    assert counts(pipeline) == (130, 1)

    with log.open("a") as fh:  # the line is completed
        fh.write(lines(130, 1)[40:])
    if protocol not in ("http", "https"):
        log.rename(logs / "access.log.1")  # rotation: a new file starts
        log.write_text(lines(200, 20))
        pull(pipeline, sites)
        assert counts(pipeline) == (151, 1)  # the completed line + 20 in the new file

        # the rotated file gets compressed: recognised, nothing read twice
        (logs / "access.log.1.gz").write_bytes(gzip.compress((logs / "access.log.1").read_bytes()))
        (logs / "access.log.1").unlink()
        with log.open("a") as fh:
            fh.write(lines(220, 5))
        pull(pipeline, sites)
        assert counts(pipeline) == (156, 1)
    else:
        pull(pipeline, sites)
        assert counts(pipeline) == (131, 1)

    # the file is replaced by a shorter one with a different start: read from its start
    log.write_text(lines(500, 3))
    pull(pipeline, sites)
    hits, rejected = counts(pipeline)
    assert (hits, rejected) == ((159, 1) if protocol not in ("http", "https") else (134, 1))

    with connect(os.environ["WAREHOUSE_URL"]) as conn:
        schema = pipeline.dataset_name
        row = conn.execute(
            f"select requested_at, ip, visitor_key, utm_source, browser, os, device_type, is_bot, "
            f"line_number from {schema}.hits where path = '/p/7'"
        ).fetchone()
        reject = conn.execute(
            f"select line_number, reason, raw from {schema}.rejected_lines"
        ).fetchone()
        files = conn.execute(
            f"select sum(loaded), sum(rejected), sum(lines_read) from {schema}.files"
        ).fetchone()
    assert row[0].isoformat() == "2026-11-24T09:00:07+00:00"
    assert row[1] == "85.214.7.0" and len(row[2]) == 32  # anonymised; keyed hash of the full IP
    assert row[3:8] == ("news", "Chrome", "Windows", "desktop", False)
    assert row[8] == 8  # line numbers count the garbage line too (it is line 51)
    assert reject == (51, "line does not match the combined format", GARBAGE.strip())
    assert files[0] == hits and files[1] == 1 and files[2] == hits + 1


@pytest.mark.parametrize("load_format", ["parquet", "csv"])
def test_every_rejected_line_and_file_report_arrives_past_the_first_batch(
    tmp_path, warehouse, monkeypatch, load_format
):
    """More hits than one batch, rejected lines spread through them; by binary COPY (the
    default) and by text COPY. The batches are made small so that there are several."""
    monkeypatch.setenv("SITELINE_LOGS_LOAD_FORMAT", load_format)
    monkeypatch.setattr("ingestion.logfiles.pull.BATCH_LINES", 4_000)
    logs = tmp_path / "big"
    logs.mkdir()
    body = "".join(lines(n * 100, 100) + GARBAGE for n in range(250))  # 25,000 hits, 250 rejected
    (logs / "access.log").write_text(body)
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n    logfiles:\n"
        f"      - {{name: web1, url: 'file://{logs}/access.log'}}\n"
    )
    schema = f"test_logs_big_{load_format}"
    pipeline = isolated_pipeline(schema, schema, warehouse, tmp_path)
    pull(pipeline, sites)
    assert counts(pipeline) == (25_000, 250)
    with connect(os.environ["WAREHOUSE_URL"]) as conn:
        assert conn.execute(
            f"select loaded, rejected, lines_read from {schema}.files"
        ).fetchall() == [(25_000, 250, 25_250)]
        # every hit knows its line and the byte where it starts
        span = conn.execute(
            f"select min(line_number), max(line_number), min(byte_offset) from {schema}.hits"
        ).fetchone()
        assert span == (1, 25_249, 0)  # line 25,250 is garbage: rejected


def test_import_logs_command(tmp_path, warehouse):
    import subprocess
    import sys

    log = tmp_path / "shop-access.log.gz"
    log.write_bytes(
        gzip.compress((lines(0, 40) + GARBAGE + lines(40, 9) + lines(49, 1).rstrip("\n")).encode())
    )
    command = [sys.executable, "-m", "orchestration.cli", "import-logs", str(log), "--site", "demo",
               "--source", "cli_test"]  # fmt: skip
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert "WARNING" not in first.stdout + first.stderr  # a clean summary, no library chatter
    assert "1 file(s)" in first.stdout and "51 lines" in first.stdout
    assert "imported 51 lines" in first.stdout  # the progress line's last state
    assert "loaded            50" in first.stdout  # the last line has no newline: still read
    assert (
        "rejected           1" in first.stdout
        and "line does not match the combined format" in first.stdout
    )
    again = subprocess.run(command, capture_output=True, text=True)
    assert "0 lines" in again.stdout and "loaded             0" in again.stdout
    with connect(warehouse) as conn:
        rows = conn.execute(
            "select count(*), count(distinct hit_id) from raw_logfiles.hits where source = 'cli_test'"
        ).fetchone()
    assert rows == (50, 50)
    down = f"http://127.0.0.1:{free_port()}/access.log"  # a server that is not there
    failed = subprocess.run(
        [*command[:4], down, *command[5:]], capture_output=True, text=True,
        env={**os.environ, "SITELINE_PULL_RETRIES": "0"},
    )  # fmt: skip
    assert failed.returncode == 1 and "Traceback" not in failed.stderr, failed.stderr[-2000:]
    assert f"error: import of {down} failed: {down}: listing failed 1 times; last:" in failed.stderr
    missing = subprocess.run(
        [*command[:4], str(tmp_path / "nope.log"), *command[5:]], capture_output=True, text=True
    )
    assert (
        missing.returncode == 1
        and f"error: no file matches {tmp_path / 'nope.log'}" in missing.stderr
    )


def test_a_flaky_server_is_retried_and_a_broken_read_resumes_without_gaps(
    tmp_path, monkeypatch, warehouse
):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "access.log").write_text(lines(0, 6000))  # 1.4 MB: more than one 1 MB chunk
    monkeypatch.setenv("SITELINE_PULL_BACKOFF_SECONDS", "0.05")
    trouble: dict = {}
    base, stop = http_file_server(logs, trouble)
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n"
        f"    logfiles:\n      - name: web1\n        url: '{base}/access.log'\n"
    )
    pipeline = isolated_pipeline("test_logs_flaky", "test_logs_flaky", warehouse, tmp_path)
    try:
        trouble["unavailable"] = 2  # the listing is refused twice ...
        trouble["skip_gets"], trouble["cut_after"] = 1, 1_200_000  # ... the read breaks off
        pull(pipeline, sites)
        assert counts(pipeline) == (6000, 0)  # every line once: no gap, no duplicate
        assert trouble["unavailable"] == 0 and "cut_after" not in trouble
        assert trouble["ranges"] == [1 << 20]  # resumed after the 1 MB chunk it had

        trouble["unavailable"] = 100  # a server that stays down
        with pytest.raises(Exception, match=r"access.log: listing failed 5 times; last: .*503"):
            pull(pipeline, sites)
        assert counts(pipeline) == (6000, 0)
    finally:
        stop()


def die_after_the_copy(pipeline, source, warehouse: str) -> None:
    """Extract and normalize ``source``, then commit its hits file's rows as dlt's COPY would,
    and stop there: what a crash leaves before dlt records the job as done."""
    import adbc_driver_postgresql.dbapi as adbc
    import pyarrow.parquet as pq

    pipeline.extract(source)
    pipeline.normalize()
    [load_id] = pipeline.list_normalized_load_packages()
    jobs = pipeline.get_load_package_info(load_id).jobs["new_jobs"]
    [hits_file] = [j.file_path for j in jobs if j.job_file_info.table_name == "hits"]
    with adbc.connect(warehouse) as conn, conn.cursor() as cur:
        schema = pipeline.dataset_name
        cur.adbc_ingest("hits", pq.read_table(hits_file), "append", db_schema_name=schema)
        conn.commit()


def test_an_import_interrupted_after_a_copy_committed_is_finished_without_duplicates(
    tmp_path, warehouse
):
    """Hits are appended, not merged: a crash between a file's COPY and dlt recording the job
    as done leaves committed rows that dlt will copy again. The recovery deletes them first."""

    from ingestion.logfiles import finish_interrupted_load, recover_interrupted_load

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "access.log").write_text(lines(0, 300))
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n"
        f"    logfiles:\n      - name: web1\n        url: 'file://{logs}/access.log'\n"
    )
    pipeline = isolated_pipeline("test_logs_crash", "test_logs_crash", warehouse, tmp_path)
    pull(pipeline, sites)  # the tables exist, 300 hits
    (logs / "access.log").write_text(lines(0, 300) + lines(300, 200))
    assert recover_interrupted_load(pipeline) == {}  # nothing pending: nothing to do
    die_after_the_copy(pipeline, logfiles("shop", "web1", sites_file=str(sites)), warehouse)
    assert counts(pipeline) == (500, 0)

    assert finish_interrupted_load(pipeline) == {"hits": 200}
    assert counts(pipeline) == (500, 0)  # the 200 new hits once, not twice, and no failure
    assert finish_interrupted_load(pipeline) is None
    pull(pipeline, sites)
    assert counts(pipeline) == (500, 0)


def test_import_logs_finishes_an_interrupted_import_then_reads_what_is_new(
    tmp_path, monkeypatch, warehouse
):
    import subprocess
    import sys

    import dlt

    monkeypatch.setenv("SITELINE_DLT_DIR", str(tmp_path / "dlt"))  # the command's state too
    log = tmp_path / "access.log"
    log.write_text(lines(1000, 50))
    # the pipeline `import-logs --site demo --source cli_crash` uses
    pipeline = dlt.pipeline(
        pipeline_name="siteline_logs_demo_cli_crash", dataset_name="raw_logfiles",
        destination=dlt.destinations.postgres(credentials=warehouse),
        pipelines_dir=str(tmp_path / "dlt"),
    )  # fmt: skip
    overrides = {"url": f"file://{log}", "format": "auto", "last_line": "read"}
    pipeline.run(logfiles("demo", "cli_crash", overrides=overrides))  # a first import: 50
    log.write_text(lines(1000, 50) + lines(1050, 20))
    # ... and a second one died while loading, after its COPY:
    die_after_the_copy(pipeline, logfiles("demo", "cli_crash", overrides=overrides), warehouse)

    log.write_text(lines(1000, 50) + lines(1050, 20) + lines(1070, 10))
    command = [sys.executable, "-m", "orchestration.cli", "import-logs", str(log), "--site", "demo",
               "--source", "cli_crash"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (
        "finished the load an earlier import left unfinished; copied again: {'hits': 20}"
        in result.stdout
    )
    assert "10 lines" in result.stdout and "loaded            10" in result.stdout
    with connect(warehouse) as conn:
        rows = conn.execute(
            "select count(*), count(distinct hit_id) from raw_logfiles.hits"
            " where source = 'cli_crash'"
        ).fetchone()
    assert rows == (80, 80)  # 50 + the interrupted 20 once + the new 10


# One small log per format, each read through a whole pull with `format: auto`: detected,
# parsed, enriched and loaded. format: (lines, hits, rejected, (path, status) of the last
# hit); every hit happened at 09:15 UTC (HAProxy's time, which has no offset, is read in the
# site's zone). Our own lines; the nasty cases per format are in test_logfile_parsers.py.
T = "24/Nov/2026:10:15:00 +0100"
FORMAT_SAMPLES = {
    "common": ([f'1.2.3.4 - - [{T}] "GET /a HTTP/1.1" 404 12'] * 2, 2, 0, ("/a", 404)),
    "combined": ([
        *(f'1.2.3.4 - - [{T}] "GET /p/{n} HTTP/1.1" 200 5 "-" "{UA}"' for n in range(3)),
        GARBAGE.strip(),
    ], 3, 1, ("/p/2", 200)),
    "vhost_combined": (
        [f'shop.example:443 1.2.3.4 - - [{T}] "GET /v HTTP/1.1" 200 12 "-" "{UA}"'], 1, 0,
        ("/v", 200),
    ),
    "iis": ([
        "#Software: Microsoft Internet Information Services 10.0",
        "#Fields: date time c-ip cs-method cs-uri-stem cs-uri-query sc-status cs(User-Agent)",
        "2026-11-24 09:15:00 1.2.3.4 GET /default.aspx id=3 200 Mozilla/5.0+(Windows+NT+10.0)",
    ], 1, 0, ("/default.aspx", 200)),
    "w3c": ([
        "#Fields: date time c-ip cs-method cs-uri-stem sc-status sc-bytes",
        "2026-11-24 09:15:00 1.2.3.5 POST /api 201 99",
        "2026-11-24 09:15:00 1.2.3.5 POST",
    ], 1, 1, ("/api", 201)),
    "cloudfront": ([
        "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem "
        "sc-status cs(Referer) cs(User-Agent) cs-uri-query time-taken",
        "2026-11-24\t09:15:00\tFRA2\t182\t192.0.2.10\tGET\td1.cloudfront.net\t/cf.html\t200\t-"
        "\tMozilla/5.0%2520(X11)\tq=1\t0.002",
    ], 1, 0, ("/cf.html", 200)),
    "elb": ([
        "2026-11-24T09:15:00.000001Z my-lb 1.2.3.4:2817 10.0.0.1:80 0.000086 0.001048 0.001337 "
        '200 200 0 57 "GET https://www.example.com:443/elb?x=1 HTTP/1.1" "curl/8.0" - -',
    ] * 2, 2, 0, ("/elb", 200)),
    "alb": ([
        "https 2026-11-24T09:15:00.127531Z app/my-alb/abc 1.2.3.4:2817 10.0.0.1:80 0.001 0.102 "
        '0.000 200 200 225 24950 "GET https://www.example.com:443/i.html HTTP/1.1" "Mozilla/5.0" '
        "ECDHE TLSv1.2 arn:aws:x",
    ], 1, 0, ("/i.html", 200)),
    "s3": ([
        f"79a59df9 shop-assets [{T}] 192.0.2.3 - 3E57427F REST.GET.OBJECT img/a.png "
        f'"GET /img/a.png HTTP/1.1" 200 - 2662 3462 70 10 "-" "{UA}" - Ox2c SigV4 ECDHE '
        "AuthHeader assets.shop.example TLSv1.2 - -",
    ], 1, 0, ("/img/a.png", 200)),
    "haproxy": ([
        "Nov 24 09:15:00 lb1 haproxy[6801]: 10.0.0.9:55008 [24/Nov/2026:10:15:00.584] ft bk/web1 "
        '0/0/1/71/72 302 7456 - - ---- 5/4/0/1/0 0/0 "POST /cart HTTP/1.1"',
    ], 1, 0, ("/cart", 302)),
    "gandi": ([
        f'shop.example 192.0.2.9 - anna [{T}] (3 s) "GET /account HTTP/1.1" 200 1124 "-" "{UA}"',
    ], 1, 0, ("/account", 200)),
    "nginx_json": ([
        '{"time_iso8601":"2026-11-24T10:15:00+01:00","remote_addr":"1.2.3.4","request":'
        '"GET /n?z=3 HTTP/1.1","status":"200","body_bytes_sent":"42","http_user_agent":"Safari"}',
    ], 1, 0, ("/n", 200)),
    "caddy_json": ([
        '{"level":"info","ts":1795511700.0,"logger":"http.log.access","request":{"remote_ip":'
        '"1.2.3.4","proto":"HTTP/2.0","method":"GET","host":"example.com","uri":"/beta/?a=1",'
        '"headers":{"User-Agent":["Firefox"]}},"status":200,"size":10,"duration":0.0015}',
    ], 1, 0, ("/beta/", 200)),
    "traefik_json": ([
        '{"ClientHost":"1.2.3.4","RequestMethod":"GET","RequestPath":"/x?y=2","RequestHost":'
        '"h.example","RequestProtocol":"HTTP/1.1","DownstreamStatus":200,'
        '"DownstreamContentSize":15,"StartUTC":"2026-11-24T09:15:00Z"}',
    ], 1, 0, ("/x", 200)),
}  # fmt: skip


def test_a_log_of_every_format_is_detected_and_loaded_through_a_pull(tmp_path, warehouse):
    from ingestion.logfiles.parsers import FORMATS

    assert set(FORMAT_SAMPLES) == set(FORMATS)  # a new format needs its sample here
    logs = tmp_path / "logs"
    logs.mkdir()
    sources = ""
    for name, (sample, *_rest) in FORMAT_SAMPLES.items():
        (logs / f"{name}.log").write_text("\n".join(sample) + "\n")
        sources += f"      - {{name: {name}, url: 'file://{logs}/{name}.log', format: auto}}\n"
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n    timezone: Europe/Berlin\n"
        f"    logfiles:\n{sources}"
    )
    for name, (_sample, hits, rejected, _last) in FORMAT_SAMPLES.items():
        pipeline = isolated_pipeline(f"test_formats_{name}", "test_formats", warehouse, tmp_path)
        report: dict = {}
        pipeline.run(logfiles("shop", name, sites_file=str(sites), report=report))
        [stats] = report["stats"]
        assert (stats.loaded, stats.rejected) == (hits, rejected), name
    with connect(os.environ["WAREHOUSE_URL"]) as conn:
        rows = conn.execute(
            "select source, count(*), count(distinct hit_id),"
            " (array_agg(path order by line_number desc))[1],"
            " (array_agg(status order by line_number desc))[1],"
            " date_trunc('second', min(requested_at)) = %s"
            " and date_trunc('second', max(requested_at)) = %s"
            " from test_formats.hits group by source",
            ("2026-11-24 09:15:00+00", "2026-11-24 09:15:00+00"),
        ).fetchall()
    loaded = {source: (n, distinct, last_path, last_status, same_time)
              for source, n, distinct, last_path, last_status, same_time in rows}  # fmt: skip
    for name, (_sample, hits, _rejected, (path, status)) in FORMAT_SAMPLES.items():
        # every hit once, the fields read, the time in UTC (all samples say 09:15 UTC)
        assert loaded[name] == (hits, hits, path, status, True), name


@pytest.mark.parametrize("protocol", ["https", "ftps"])
def test_an_untrusted_certificate_fails_at_once_with_the_reason(
    protocol, tmp_path, monkeypatch, warehouse
):
    """A server whose certificate no trusted CA signed is refused, not retried (it will not
    pass); credentials never go over such a connection."""
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "access.log").write_text(lines(0, 5))
    ca, *tls = tls_certificate(tmp_path)
    if protocol == "https":
        base, stop = http_file_server(logs, tls=tls)
    else:
        base, stop = ftp_server(logs, "loguser", "s3cret-pw", tls=tls)
    monkeypatch.setenv("TEST_LOG_USER", "loguser")
    monkeypatch.setenv("TEST_LOG_PASSWORD", "s3cret-pw")
    sites = tmp_path / "sites.yml"

    def configure(extra: str) -> None:
        sites.write_text(
            "sites:\n  - id: shop\n    domains: [shop.example]\n    logfiles:\n"
            f"      - name: web1\n        url: '{base}/access.log'\n"
            "        username_env: TEST_LOG_USER\n        password_env: TEST_LOG_PASSWORD\n" + extra
        )

    pipeline = isolated_pipeline(
        f"test_tls_{protocol}", f"test_tls_{protocol}", warehouse, tmp_path
    )
    try:
        configure("")
        with pytest.raises(Exception) as failure:
            pull(pipeline, sites)
        message = str(failure.value)
        assert "TLS certificate is not trusted (for a private CA set tls_ca_file)" in message
        assert "failed 5 times" not in message  # refused at once, not retried
        assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message

        configure(f"        tls_ca_file: {tmp_path / 'nope.pem'}\n")
        with pytest.raises(Exception, match=r"tls_ca_file .*nope.pem: not readable as PEM"):
            pull(pipeline, sites)

        configure(f"        tls_ca_file: {ca}\n")
        pull(pipeline, sites)
        assert counts(pipeline) == (5, 0)
    finally:
        stop()


SCHEDULED = """
import json
import dagster as dg
from orchestration.runtime import configure_environment
configure_environment()
from orchestration.defs.logfiles.definitions import defs
job = defs.get_job_def("pull_logfiles")
out = {"schedules": {s.name: s.cron_schedule for s in defs.schedules}}
with dg.DagsterInstance.ephemeral() as instance:
    for key in ("shop.good", "shop.bad"):
        result = job.execute_in_process(partition_key=key, instance=instance, raise_on_error=False)
        errors = [e.event_specific_data.error.to_string() for e in result.all_events
                  if e.event_type_value == "STEP_FAILURE"]
        out[key] = {"success": result.success, "errors": errors}
print(json.dumps(out))
"""


def test_each_source_has_its_schedule_and_a_failing_one_fails_only_its_own_run(tmp_path, warehouse):
    """The Dagster side of sites.yml: a schedule per source on its cron, a run per source
    (a partition); a source whose server is down fails its run with the reason, the other
    source's run loads its lines."""
    import json
    import subprocess
    import sys

    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "access.log").write_text(lines(0, 25))
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n    logfiles:\n"
        f"      - {{name: good, url: 'file://{logs}/access.log', schedule: '*/5 * * * *'}}\n"
        f"      - {{name: bad, url: 'http://127.0.0.1:{free_port()}/access.log',"
        " schedule: '0 * * * *'}\n"
    )
    env = {**os.environ, "SITELINE_SITES_FILE": str(sites), "SITELINE_DLT_DIR": str(tmp_path),
           "SITELINE_PULL_RETRIES": "1", "SITELINE_PULL_BACKOFF_SECONDS": "0.01"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", SCHEDULED], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["schedules"] == {
        "pull_logs_shop_good": "*/5 * * * *", "pull_logs_shop_bad": "0 * * * *",
    }  # fmt: skip
    assert out["shop.good"] == {"success": True, "errors": []}
    assert out["shop.bad"]["success"] is False
    [error] = out["shop.bad"]["errors"]
    assert "access.log: listing failed 2 times; last:" in error and "refused" in error.lower()
    with connect(warehouse) as conn:
        rows = conn.execute(
            "select source, count(*) from raw_logfiles.hits where site_id = 'shop' group by source"
        ).fetchall()
    assert rows == [("good", 25)]


def test_nul_bytes_in_a_log_are_loaded_as_replacement_characters(tmp_path, warehouse):
    """PostgreSQL cannot store NUL in text: a log line holding one (a corrupt user agent, a
    zeroed block after a crash) failed its COPY, and every later import with it."""
    logs = tmp_path / "logs"
    logs.mkdir()
    odd_agent = lines(3, 1).replace(UA, "Bot\x00Agent")
    odd_path = lines(4, 1).replace("/p/4?", "/p/\x004?")
    (logs / "access.log").write_text(lines(0, 3) + odd_agent + odd_path + "\x00\x00 zeroed\n")
    sites = tmp_path / "sites.yml"
    sites.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n"
        f"    logfiles:\n      - name: web1\n        url: 'file://{logs}/access.log'\n"
    )
    pipeline = isolated_pipeline("test_logs_nul", "test_logs_nul", warehouse, tmp_path)
    pull(pipeline, sites)
    with connect(warehouse) as conn:
        agents = {r[0] for r in conn.execute("select user_agent from test_logs_nul.hits")}
        paths = {r[0] for r in conn.execute("select path from test_logs_nul.hits")}
        (raw,) = conn.execute("select raw from test_logs_nul.rejected_lines").fetchone()
    assert agents == {UA, "Bot\ufffdAgent"}
    assert paths == {"/p/0", "/p/1", "/p/2", "/p/3", "/p/\ufffd4"}
    assert raw == "\ufffd\ufffd zeroed"
    (logs / "access.log").write_text(
        lines(0, 3) + odd_agent + odd_path + "\x00\x00 zeroed\n" + lines(5, 2)
    )
    pull(pipeline, sites)  # the offsets after those lines stay exact: only the new two
    with connect(warehouse) as conn:
        assert conn.execute("select count(*) from test_logs_nul.hits").fetchone()[0] == 7
