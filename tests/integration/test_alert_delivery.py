"""The outbox and the contact points against real servers on loopback: an SMTP server
(aiosmtpd) that receives the mail with its inline chart, an HTTP server in the SMS provider's
place (Twilio's message API shape: a stand-in at the edge of the world, no SMS leaves this
machine) and in the webhooks' place, Apprise posting to the same; the outbox in the test
warehouse. Time is passed to ``deliver`` (``now``): retries are due by the clock the test
holds, nothing waits for a backoff."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.sites import SitesConfig
from ingestion.core.warehouse import connect
from orchestration.alerts import outbox
from orchestration.alerts.news import AlertNews
from orchestration.alerts.store import ensure_schema
from tests.integration.servers import HttpReceiver, SmtpReceiver, free_port

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)
SERIES = [[f"2026-12-{d:02d}T00:00:00", 1300.0 + 10 * d, 1100.0, 1500.0] for d in range(1, 6)]
SERIES.append(["2026-12-06T00:00:00", 760.0, 1100.0, 1500.0])


@pytest.fixture()
def conn(warehouse):
    with connect(warehouse, autocommit=True) as conn:
        ensure_schema(conn)
        conn.execute(
            "truncate alerts.delivery_attempts, alerts.notification_items, "
            "alerts.notifications, alerts.silences restart identity"
        )
        yield conn


@pytest.fixture()
def smtp():
    receiver = SmtpReceiver(user="alerts", password="smtp-secret-pw").start()
    yield receiver
    receiver.stop()


@pytest.fixture()
def env(monkeypatch):
    """The secrets, where sites.yml names them: only in the environment."""
    for name, value in {
        "TEST_SMTP_USER": "alerts",
        "TEST_SMTP_PASSWORD": "smtp-secret-pw",
        "TEST_SMS_ACCOUNT": "AC0123456789",
        "TEST_SMS_TOKEN": "sms-token-0123456789",
        "SITELINE_PUBLIC_SUPERSET_URL": "https://bi.example.com",
    }.items():
        monkeypatch.setenv(name, value)


def config(smtp_port: int, sms_url: str = "http://127.0.0.1:9", hook_url: str = "http://127.0.0.1:9",
           **extra) -> SitesConfig:  # fmt: skip
    points = [
        {"name": "ops_mail", "type": "email", "to": ["ops@example.com", "shop@example.com"],
         "from": "siteline@example.com", "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
         "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD"},
        {"name": "oncall_sms", "type": "sms", "to": ["+4915100000001", "+4915100000002"],
         "from": "+4915199999999", "url": sms_url + "/2010-04-01",
         "account_env": "TEST_SMS_ACCOUNT", "token_env": "TEST_SMS_TOKEN", "timeout_seconds": 15},
        {"name": "hook", "type": "webhook", "url": hook_url + "/alerts", "format": "json"},
        {"name": "chat", "type": "webhook", "url": hook_url + "/slack", "format": "slack"},
        *extra.get("points", []),
    ]  # fmt: skip
    return SitesConfig.model_validate({
        "sites": [{"id": "demo", "name": "Demo shop", "domains": ["demo.example"],
                   "timezone": "Europe/Berlin"},
                  {"id": "outlet", "domains": ["outlet.example"]}],
        "alerts": {"contact_points": points},
    })  # fmt: skip


def news(kind="firing", site="demo", points=("ops_mail",), rule="revenue_drop", period="2026-12-06",
         value=760.0, **kw) -> AlertNews:  # fmt: skip
    instance = f"{rule}|{site}"
    return AlertNews(
        kind=kind, dedupe_key=f"{instance}|{kind}|{period}T00:00:00", instance_id=instance,
        rule_id=rule, rule_name="Revenue drop", severity="critical", site_id=site,
        site_name="Demo shop" if site == "demo" else site, timezone="Europe/Berlin",
        metric="revenue", metric_label="Revenue", unit="currency", grain="day",
        period_start=f"{period}T00:00:00", period_end="2026-12-07T00:00:00", value=value,
        baseline=1340.0, lower=1100.0, upper=1500.0,
        reason=f"Revenue {value:,.0f} EUR is 43% below its usual level (1,340 EUR)",
        state="firing" if kind != "resolved" else "resolved", at=T0.isoformat(),
        contact_points=tuple(points), currency="EUR", series=SERIES, **kw,
    )  # fmt: skip


def rows(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def parts(message) -> dict:
    """The MIME tree of a mail: its content types, the text, the HTML, the images by cid."""
    found = {"types": [p.get_content_type() for p in message.walk()], "images": {}}
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            found["text"] = part.get_content()
        elif part.get_content_type() == "text/html":
            found["html"] = part.get_content()
        elif part.get_content_type() == "image/png":
            found["images"][part["Content-ID"].strip("<>")] = part.get_content()
    return found


# -- e-mail ---------------------------------------------------------------------------------------


def test_firing_mail_has_an_inline_chart_a_text_alternative_and_the_dashboard_link(conn, smtp, env):
    cfg = config(smtp.port)
    ids = outbox.enqueue(conn, "ev1", [news()], cfg, T0)
    assert len(ids) == 1
    # written before anything is sent
    assert rows(conn, "select status, subject, attempts from alerts.notifications") == [
        ("pending", "[FIRING:1] critical - Revenue drop (Demo shop)", 0)
    ]
    assert smtp.messages == []

    report = outbox.deliver(conn, cfg, T0)

    assert report.sent == ids and report.retrying == []
    assert smtp.logins == ["alerts"]  # the login from the variables sites.yml names
    [(recipients, mail)] = smtp.messages
    assert recipients == ["ops@example.com", "shop@example.com"]
    assert mail["Subject"] == "[FIRING:1] critical - Revenue drop (Demo shop)"
    assert mail["From"] == "siteline@example.com"
    assert mail["Message-ID"] == f"<siteline.notification.{ids[0]}@example.com>"
    found = parts(mail)
    assert found["types"] == ["multipart/alternative", "text/plain", "multipart/related",
                              "text/html", "image/png"]  # fmt: skip
    [(cid, png)] = found["images"].items()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    assert f'src="cid:{cid}"' in found["html"]
    assert "data:" not in found["html"]
    for text in (found["text"], found["html"]):
        assert "Revenue 760 EUR is 43% below its usual level (1,340 EUR)" in text
        assert "760 EUR" in text and "1,340 EUR" in text and "1,100 EUR" in text
        assert "2026-12-06 (Europe/Berlin)" in text
        assert "https://bi.example.com/superset/dashboard/ecommerce/" in text
    assert rows(conn, "select status, attempts, sent_at from alerts.notifications") == [
        ("sent", 1, T0)
    ]
    assert rows(conn, "select attempt, ok, error from alerts.delivery_attempts") == [
        (1, True, None)
    ]


def test_two_instances_make_one_mail_and_their_recovery_a_resolved_one(conn, smtp, env):
    cfg = config(smtp.port)
    ids = outbox.enqueue(conn, "ev1", [news(site="demo"), news(site="outlet")], cfg, T0)
    outbox.deliver(conn, cfg, T0)
    assert len(ids) == 1
    [(_, mail)] = smtp.messages
    assert mail["Subject"] == "[FIRING:2] critical - Revenue drop (2 sites)"
    found = parts(mail)
    assert len(found["images"]) == 2
    assert "Revenue drop - Demo shop" in found["text"] and "Revenue drop - outlet" in found["text"]

    resolved = news(kind="resolved", site="demo", period="2026-12-07", value=1390.0)
    outbox.enqueue(conn, "ev2", [resolved], cfg, T0 + timedelta(days=1))
    outbox.deliver(conn, cfg, T0 + timedelta(days=1))
    assert len(smtp.messages) == 2
    mail = smtp.messages[1][1]
    assert mail["Subject"] == "[RESOLVED] critical - Revenue drop (Demo shop)"
    found = parts(mail)
    assert "RESOLVED CRITICAL: Revenue drop - Demo shop" in found["text"]
    assert "1,390 EUR" in found["text"]
    assert len(found["images"]) == 1


def test_running_enqueue_again_sends_nothing_twice(conn, smtp, env):
    cfg = config(smtp.port)
    first = outbox.enqueue(conn, "ev1", [news(), news()], cfg, T0)  # the same news twice
    assert len(first) == 1
    assert outbox.enqueue(conn, "ev1", [news()], cfg, T0) == []  # not sent yet: nothing new
    outbox.deliver(conn, cfg, T0)
    # the evaluation run again, under its own id or another: nothing new
    assert outbox.enqueue(conn, "ev1", [news()], cfg, T0) == []
    assert outbox.enqueue(conn, "ev1-rerun", [news()], cfg, T0) == []
    report = outbox.deliver(conn, cfg, T0 + timedelta(hours=1))
    assert report.attempts == []
    assert len(smtp.messages) == 1
    assert rows(conn, "select count(*) from alerts.notification_items") == [(1,)]
    # news the same evaluation hands over after its notification went out: a follow-up
    late = news(site="outlet")
    [follow_up] = outbox.enqueue(conn, "ev1", [late], cfg, T0)
    assert rows(conn, "select evaluation_id from alerts.notifications where notification_id = %s",
                follow_up) == [("ev1#2",)]  # fmt: skip


def test_silences_hold_notifications_back(conn, smtp, env):
    cfg = config(smtp.port)
    silence = outbox.add_silence(conn, "revenue_drop", "demo", 2 * 3600, "deploy", "ops", T0)
    [listed] = outbox.silences(conn, T0)
    assert (listed.silence_id, listed.site_id, listed.active) == (silence, "demo", True)
    assert listed.ends_at == T0 + timedelta(hours=2)

    # one instance silenced, the other not: the mail tells only the other
    [mixed] = outbox.enqueue(conn, "ev1", [news(site="demo"), news(site="outlet")], cfg, T0)
    # all silenced: stored, status silenced, never sent
    [quiet] = outbox.enqueue(conn, "ev2", [news(site="demo", period="2026-12-07")], cfg, T0)
    report = outbox.deliver(conn, cfg, T0)
    assert report.sent == [mixed]
    [(_, mail)] = smtp.messages
    assert mail["Subject"] == "[FIRING:1] critical - Revenue drop (outlet)"
    assert "Demo shop" not in parts(mail)["text"]
    assert rows(conn, "select notification_id, status from alerts.notifications order by 1") == [
        (mixed, "sent"),
        (quiet, "silenced"),
    ]
    assert rows(conn, "select instance_id, silence_id from alerts.notification_items"
                      " order by 1") == [("revenue_drop|demo", silence), ("revenue_drop|demo", silence),
                                         ("revenue_drop|outlet", None)]  # fmt: skip

    # a silence of every site, made after the enqueue and before the send: held back too
    [queued] = outbox.enqueue(conn, "ev3", [news(site="outlet", period="2026-12-08")], cfg, T0)
    outbox.add_silence(conn, "revenue_drop", None, 3600, "maintenance", None, T0)
    report = outbox.deliver(conn, cfg, T0 + timedelta(minutes=1))
    assert report.silenced == [queued] and len(smtp.messages) == 1

    # once the silences have ended, news are told again
    later = T0 + timedelta(hours=3)
    assert outbox.silences(conn, later) == []
    outbox.enqueue(conn, "ev4", [news(site="demo", period="2026-12-09")], cfg, later)
    assert outbox.deliver(conn, cfg, later).sent
    assert len(smtp.messages) == 2


def test_smtp_server_down_is_retried_and_the_mail_delivered_once_when_it_is_back(conn, smtp, env):
    cfg = config(smtp.port)
    outbox.enqueue(conn, "ev0", [news(period="2026-12-05")], cfg, T0)
    assert outbox.deliver(conn, cfg, T0).sent  # the server works ...
    smtp.stop()  # ... then goes down
    [notification] = outbox.enqueue(conn, "ev1", [news()], cfg, T0)

    report = outbox.deliver(conn, cfg, T0)
    assert report.retrying == [notification]
    [(status, attempts, next_at, error)] = rows(
        conn, "select status, attempts, next_attempt_at, last_error from alerts.notifications"
              " where notification_id = %s", notification)  # fmt: skip
    assert (status, attempts, next_at) == ("pending", 1, T0 + timedelta(seconds=30))
    assert error.startswith(f"SMTP server 127.0.0.1:{smtp.port}: ") and "refused" in error.lower()
    assert outbox.deliver(conn, cfg, T0 + timedelta(seconds=31)).retrying == [notification]
    assert rows(conn, "select next_attempt_at from alerts.notifications where notification_id = %s",
                notification) == [(T0 + timedelta(seconds=31 + 60),)]  # doubled  # fmt: skip

    smtp.start()  # back, on the same port
    assert outbox.deliver(conn, cfg, T0 + timedelta(seconds=60)).attempts == []  # not yet due
    assert outbox.deliver(conn, cfg, T0 + timedelta(seconds=95)).sent == [notification]
    assert outbox.deliver(conn, cfg, T0 + timedelta(hours=2)).attempts == []
    assert [mail["Subject"] for _, mail in smtp.messages] == [
        "[FIRING:1] critical - Revenue drop (Demo shop)"
    ] * 2  # the first notification's, and this one's once
    assert rows(conn, "select attempt, ok from alerts.delivery_attempts where notification_id = %s"
                " order by 1", notification) == [(1, False), (2, False), (3, True)]  # fmt: skip


def test_a_notification_is_given_up_after_the_policy_s_attempts(conn, env):
    cfg = config(free_port())  # nothing listens there
    [notification] = outbox.enqueue(conn, "ev1", [news()], cfg, T0)
    policy = outbox.RetryPolicy(first_wait=10, max_attempts=2)
    assert outbox.deliver(conn, cfg, T0, policy=policy).retrying == [notification]
    report = outbox.deliver(conn, cfg, T0 + timedelta(seconds=10), policy=policy)
    assert report.failed == [notification]
    [(status, error)] = rows(conn, "select status, last_error from alerts.notifications")
    assert status == "failed" and error.endswith(" - gave up after 2 attempts")
    assert outbox.deliver(conn, cfg, T0 + timedelta(days=1), policy=policy).attempts == []


def test_a_send_interrupted_by_a_crash_is_not_repeated(conn, smtp, env):
    """A deliverer that marked a notification 'sending' and died before recording the
    outcome: nobody knows whether it went out; it is failed, not sent again."""
    cfg = config(smtp.port)
    [notification] = outbox.enqueue(conn, "ev1", [news()], cfg, T0)
    lease_end = T0 + timedelta(minutes=5)
    conn.execute("update alerts.notifications set status = 'sending', attempts = 1,"
                 " next_attempt_at = %s", (lease_end,))  # fmt: skip
    assert outbox.deliver(conn, cfg, T0 + timedelta(minutes=1)).attempts == []  # still its own
    report = outbox.deliver(conn, cfg, lease_end)
    assert report.interrupted == [notification] and report.sent == []
    assert smtp.messages == []
    [(status, error)] = rows(conn, "select status, last_error from alerts.notifications")
    assert status == "failed" and error.startswith("interrupted: ")
    assert rows(conn, "select attempt, ok from alerts.delivery_attempts") == [(1, False)]


def test_two_deliverers_never_take_the_same_notification(conn, smtp, env, warehouse):
    cfg = config(smtp.port)
    [held] = outbox.enqueue(conn, "ev1", [news(site="demo")], cfg, T0)
    [free] = outbox.enqueue(conn, "ev2", [news(site="outlet")], cfg, T0)
    with connect(warehouse) as other:  # another deliverer, in the middle of its claim
        other.execute("select 1 from alerts.notifications where notification_id = %s"
                      " for update", (held,))  # fmt: skip
        report = outbox.deliver(conn, cfg, T0)
        assert report.sent == [free]
        other.rollback()
    assert outbox.deliver(conn, cfg, T0).sent == [held]
    assert outbox.deliver(conn, cfg, T0).attempts == []
    assert len(smtp.messages) == 2


# -- SMS, webhooks, Apprise -----------------------------------------------------------------------


def test_sms_goes_to_each_number_in_twilio_s_shape_and_a_500_is_retried_for_that_number(conn, env):
    provider = HttpReceiver([201, 500, 201])  # the second number's first request fails
    try:
        cfg = config(free_port(), sms_url=provider.url)
        [notification] = outbox.enqueue(conn, "ev1", [news(points=["oncall_sms"])], cfg, T0)
        report = outbox.deliver(conn, cfg, T0)
        assert report.retrying == [notification]
        [(error, reached)] = rows(conn, "select last_error, delivered_to from alerts.notifications")
        assert reached == ["+4915100000001"]
        assert error == (f"SMS API http://127.0.0.1:{provider.port}/***: +4915100000002: HTTP 500 Internal Server "
                         "Error")  # fmt: skip
        assert "sms-token" not in error and "AC0123456789" not in error

        assert outbox.deliver(conn, cfg, T0 + timedelta(seconds=30)).sent == [notification]
        sent = [(parse_qs(r["body"].decode())["To"][0], r["status"]) for r in provider.requests]
        assert sent == [("+4915100000001", 201), ("+4915100000002", 500),
                        ("+4915100000002", 201)]  # fmt: skip
        request = provider.requests[0]
        assert request["path"] == "/2010-04-01/Accounts/AC0123456789/Messages.json"
        assert request["headers"]["Authorization"] == "Basic " + base64.b64encode(
            b"AC0123456789:sms-token-0123456789").decode()  # fmt: skip
        form = parse_qs(request["body"].decode())
        assert form["From"] == ["+4915199999999"]
        [body] = form["Body"]
        assert body == ("FIRING critical Revenue drop - Demo shop: Revenue 760 EUR is 43% below "
                        "its usual level (1,340 EUR)")  # fmt: skip
        assert len(body) <= 160
    finally:
        provider.close()


def test_an_sms_api_that_does_not_answer_in_time_is_retried(conn, env):
    release = threading.Event()

    def hang(request):
        release.wait(10)
        return 201

    provider = HttpReceiver([hang, 201])
    try:
        cfg = config(free_port(), sms_url=provider.url, points=[])
        point = cfg.alerts.contact_point("oncall_sms").model_copy(
            update={"to": ["+4915100000001"], "timeout_seconds": 0.5})  # fmt: skip
        cfg = cfg.model_copy(update={"alerts": cfg.alerts.model_copy(update={
            "contact_points": [point]})})  # fmt: skip
        [notification] = outbox.enqueue(conn, "ev1", [news(points=["oncall_sms"])], cfg, T0)
        report = outbox.deliver(conn, cfg, T0)
        release.set()
        assert report.retrying == [notification]
        assert report.attempts[0].error.endswith("+4915100000001: no answer within 0.5 s")
        assert outbox.deliver(conn, cfg, T0 + timedelta(seconds=30)).sent == [notification]
    finally:
        release.set()
        provider.close()


def test_webhooks_post_json_and_slack_messages(conn, env):
    receiver = HttpReceiver([200])
    try:
        cfg = config(free_port(), hook_url=receiver.url)
        items = [news(points=["hook", "chat"]), news(site="outlet", points=["hook", "chat"])]
        ids = outbox.enqueue(conn, "ev1", items, cfg, T0)
        assert len(ids) == 2  # one per contact point, each telling both instances
        assert sorted(outbox.deliver(conn, cfg, T0).sent) == sorted(ids)
        by_path = {r["path"]: r for r in receiver.requests}
        plain = json.loads(by_path["/alerts"]["body"])
        assert plain["subject"] == "[FIRING:2] critical - Revenue drop (2 sites)"
        assert (plain["status"], plain["firing"], plain["resolved"]) == ("firing", 2, 0)
        assert [a["site_id"] for a in plain["alerts"]] == ["demo", "outlet"]
        alert = plain["alerts"][0]
        assert (alert["value"], alert["baseline"], alert["kind"]) == (760.0, 1340.0, "firing")
        assert alert["dashboard_url"] == "https://bi.example.com/superset/dashboard/ecommerce/"
        assert by_path["/alerts"]["headers"]["Idempotency-Key"].startswith("siteline-notification-")
        slack = json.loads(by_path["/slack"]["body"])
        assert set(slack) == {"text", "blocks"}
        assert slack["text"].startswith("[FIRING:2] critical - Revenue drop (2 sites)\n")
        assert [b["type"] for b in slack["blocks"]] == ["header", "section", "section"]
        assert "<https://bi.example.com/superset/dashboard/ecommerce/|dashboard>" in (
            slack["blocks"][1]["text"]["text"])  # fmt: skip
    finally:
        receiver.close()


def test_an_unreachable_webhook_is_retried_and_its_secret_url_never_shown(conn, env, monkeypatch):
    port = free_port()
    monkeypatch.setenv("TEST_HOOK_URL", f"http://127.0.0.1:{port}/hooks/T0001/B0002/s3cr3t-path")
    hook = {"name": "secret_hook", "type": "webhook", "url_env": "TEST_HOOK_URL"}
    cfg = config(free_port(), points=[hook])
    [notification] = outbox.enqueue(conn, "ev1", [news(points=["secret_hook"])], cfg, T0)
    report = outbox.deliver(conn, cfg, T0)
    assert report.retrying == [notification]
    [(error,)] = rows(conn, "select error from alerts.delivery_attempts")
    assert error.startswith(f"webhook http://127.0.0.1:{port}/***: ConnectError")
    assert "s3cr3t" not in error


def test_a_webhook_that_refuses_the_message_is_not_retried_a_busy_one_is(conn, env):
    receiver = HttpReceiver([429, 404])
    try:
        hook = {"name": "refusing_hook", "type": "webhook", "url": f"{receiver.url}/alerts"}
        cfg = config(free_port(), points=[hook])
        [notification] = outbox.enqueue(conn, "ev1", [news(points=["refusing_hook"])], cfg, T0)
        assert outbox.deliver(conn, cfg, T0).retrying == [notification]  # 429: busy, later
        later = T0 + timedelta(hours=1)
        assert outbox.deliver(conn, cfg, later).failed == [notification]  # 404: never
        assert rows(conn, "select status from alerts.notifications") == [("failed",)]
        [(error,)] = rows(conn, "select error from alerts.delivery_attempts where attempt = 2")
        assert ": HTTP 404 " in error
        assert error.endswith(" - not retried: the endpoint refused the message itself")
        assert outbox.deliver(conn, cfg, later + timedelta(days=1)).attempts == []
        assert len(receiver.requests) == 2
    finally:
        receiver.close()


def test_apprise_urls_reach_their_service(conn, env, monkeypatch):
    receiver = HttpReceiver([200])
    try:
        monkeypatch.setenv("TEST_APPRISE_URL", f"json://127.0.0.1:{receiver.port}/notify")
        point = {"name": "pager", "type": "apprise", "url_env": "TEST_APPRISE_URL"}
        cfg = config(free_port(), points=[point])
        outbox.enqueue(conn, "ev1", [news(points=["pager"])], cfg, T0)
        assert outbox.deliver(conn, cfg, T0).sent
        [request] = receiver.requests
        body = json.loads(request["body"])
        assert request["path"] == "/notify"
        assert body["title"] == "[FIRING:1] critical - Revenue drop (Demo shop)"
        assert "Revenue 760 EUR is 43% below its usual level" in body["message"]
    finally:
        receiver.close()


def test_a_failing_channel_holds_up_no_other(conn, smtp, env, warehouse):
    """The SMS provider answers only once the mail's outcome is recorded (or gives up after
    10 s): sent one after the other, the mail would wait for the SMS and the check fail."""
    seen = {}

    def answer_after_the_mail(request):
        with connect(warehouse, autocommit=True) as watcher:
            for _ in range(100):
                status = watcher.execute("select status from alerts.notifications where"
                                         " contact_point = 'ops_mail'").fetchone()  # fmt: skip
                if status and status[0] == "sent":
                    seen["mail recorded while the SMS waited"] = True
                    break
                time.sleep(0.1)
        return 503

    provider = HttpReceiver([answer_after_the_mail])
    try:
        cfg = config(smtp.port, sms_url=provider.url, hook_url=f"http://127.0.0.1:{free_port()}")
        points = ["oncall_sms", "hook", "ops_mail"]
        outbox.enqueue(conn, "ev1", [news(points=points)], cfg, T0)
        report = outbox.deliver(conn, cfg, T0)
        assert seen == {"mail recorded while the SMS waited": True}
        by_point = {a.contact_point: a.status for a in report.attempts}
        assert by_point == {"ops_mail": "sent", "hook": "pending", "oncall_sms": "pending"}
        assert len(smtp.messages) == 1
    finally:
        provider.close()


# -- test messages and the mail sink --------------------------------------------------------------


def test_test_notify_sends_a_test_message_through_the_outbox(conn, smtp, env):
    cfg = config(smtp.port)
    report = outbox.test_notify(conn, cfg, "ops_mail", T0)
    assert len(report.sent) == 1
    [(_, mail)] = smtp.messages
    assert mail["Subject"] == "[TEST] Siteline alerts - Test notification"
    found = parts(mail)
    assert "This is a test message" in found["text"] and len(found["images"]) == 1
    assert rows(conn, "select kind from alerts.notification_items") == [("test",)]
    with pytest.raises(SitelineError, match="no contact point 'nobody'"):
        outbox.test_notify(conn, cfg, "nobody", T0)
    # a failing test message is reported at once, not retried behind the user's back
    report = outbox.test_notify(conn, config(free_port()), "ops_mail", T0)
    assert report.failed and not report.retrying


def test_the_mail_sink_keeps_each_mail_as_an_eml_file(conn, env, tmp_path):
    port = free_port()
    folder = tmp_path / "mail"
    sink = subprocess.Popen(
        [sys.executable, "-m", "orchestration.alerts.mail_sink", "--port", str(port),
         "--folder", str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert sink.stdout.readline().startswith(f"mail sink: smtp://127.0.0.1:{port}")
        demo_point = {"name": "demo_mail", "type": "email", "to": ["you@localhost"],
                      "smtp_host": "127.0.0.1", "smtp_port": port}  # fmt: skip
        cfg = config(free_port(), points=[demo_point])
        outbox.enqueue(conn, "ev1", [news(points=["demo_mail"])], cfg, T0)
        assert outbox.deliver(conn, cfg, T0).sent
        [eml] = folder.glob("*.eml")
        mail = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
        assert mail["Subject"] == "[FIRING:1] critical - Revenue drop (Demo shop)"
        assert mail["X-Siteline-Envelope-To"] == "you@localhost"
        assert len(parts(mail)["images"]) == 1
    finally:
        sink.terminate()
        assert sink.wait(10) == 0
    assert not list(folder.glob("*.part"))


def test_a_command_can_run_the_sink_for_a_while(conn, env, tmp_path):
    from orchestration.alerts import mail_sink

    port = free_port()
    demo_point = {"name": "demo_mail", "type": "email", "to": ["you@localhost"],
                  "smtp_host": "127.0.0.1", "smtp_port": port}  # fmt: skip
    cfg = config(free_port(), points=[demo_point])
    outbox.enqueue(conn, "ev1", [news(points=["demo_mail"])], cfg, T0)
    with mail_sink.running(port, tmp_path / "mail") as folder:
        assert outbox.deliver(conn, cfg, T0).sent
    assert len(list(folder.glob("*.eml"))) == 1


def test_news_without_a_value_are_stored_and_told_as_no_data(conn, smtp, env):
    """An Error or NoData instance's news carry NaN (numpy's "no data"): jsonb refuses NaN."""
    cfg = config(smtp.port)
    series = [*SERIES, ["2026-12-07T00:00:00", float("nan"), None, None]]
    broken = news(value=float("nan"), period="2026-12-07", kind="firing")
    broken = AlertNews(**{**broken.payload(), "series": series, "reason": "the query failed"})
    outbox.enqueue(conn, "ev1", [broken], cfg, T0)
    assert rows(conn, "select payload->'value', payload->'series'->6->1"
                " from alerts.notification_items") == [(None, None)]  # fmt: skip
    assert outbox.deliver(conn, cfg, T0).sent
    text = parts(smtp.messages[0][1])["text"]
    assert "the query failed" in text and "Revenue: no data" in text
