"""E-mail over SMTP: an HTML message with one small chart per alert as an inline image
(``multipart/related``, referenced by ``cid:``), a plain-text alternative, and a link to the
metric's Superset dashboard.

The Message-ID is derived from the notification id: a retry after an unclear failure carries
the same id, so mail systems that deduplicate by it show the message once.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import format_datetime

from ingestion.core.alert_config import ContactPoint
from orchestration.alerts.chart import chart_png
from orchestration.alerts.contacts import DeliveryError, Message, Secrets
from orchestration.alerts.contacts import render as r

log = logging.getLogger(__name__)

MAX_CHARTS = 10  # a mail of 50 alerts gets charts for the first 10; the text lists them all
DEFAULT_FROM = "siteline-alerts@localhost"


def build(point: ContactPoint, message: Message) -> EmailMessage:
    """The MIME message: multipart/alternative of text/plain and multipart/related
    (text/html + image/png parts the HTML names by cid:)."""
    base = r.superset_base_url()
    test = all(item.get("kind") == "test" for item in message.items)
    entries, images = [], []
    for index, item in enumerate(message.items):
        png = _chart(item) if index < MAX_CHARTS else None
        cid = None
        if png is not None:
            cid = f"chart{index + 1}.notification{message.notification_id}@siteline"
            images.append((cid, png))
        entries.append({"item": item, "cid": cid, "link": r.dashboard_url(item, base)})
    context = {
        "subject": message.subject,
        "contact_point": point.name,
        "entries": entries,
        "created_at": message.created_at.strftime("%Y-%m-%d %H:%M UTC"),
        "test": test,
    }
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = point.from_address or DEFAULT_FROM
    if point.to:
        mail["To"] = ", ".join(point.to)
    mail["Date"] = format_datetime(message.created_at)
    domain = (point.from_address or DEFAULT_FROM).rsplit("@", 1)[1]
    mail["Message-ID"] = f"<siteline.notification.{message.notification_id}@{domain}>"
    mail["X-Siteline-Notification"] = str(message.notification_id)
    mail.set_content(r.render("email.txt", **context))
    mail.add_alternative(r.render("email.html", **context), subtype="html")
    html = mail.get_payload()[1]
    for cid, png in images:
        html.add_related(png, "image", "png", cid=f"<{cid}>", filename=f"{cid.split('@')[0]}.png",
                         disposition="inline")  # fmt: skip
    return mail


def _chart(item: dict) -> bytes | None:
    """The item's chart; None (the mail goes without it) when it cannot be drawn."""
    try:
        return chart_png(item)
    except Exception:  # a picture is not worth a lost alert
        log.warning(
            "no chart for %s: it could not be drawn", item.get("instance_id"), exc_info=True
        )
        return None


def send(point: ContactPoint, message: Message, done: frozenset[str]) -> list[str]:
    """Send the mail in one SMTP transaction to every recipient; the recipients reached."""
    secrets = Secrets()
    username = password = None
    if point.username_env or point.password_env:
        username = secrets.env(point, point.username_env, "the SMTP user name")
        password = secrets.env(point, point.password_env, "the SMTP password")
    recipients = [a for a in (*point.to, *point.bcc) if a not in done]
    if not recipients:
        return []
    mail = build(point, message)
    where = f"SMTP server {point.smtp_host}:{point.smtp_port}"
    try:
        if point.smtp_security == "ssl":
            client = smtplib.SMTP_SSL(point.smtp_host, point.smtp_port,
                                      timeout=point.timeout_seconds,
                                      context=ssl.create_default_context())  # fmt: skip
        else:
            client = smtplib.SMTP(point.smtp_host, point.smtp_port, timeout=point.timeout_seconds)
        with client:
            if point.smtp_security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if username is not None:
                client.login(username, password)
            refused = client.send_message(mail, to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{where} refused the login ({exc.smtp_code}); check "
                            f"{point.username_env} and {point.password_env}") from None  # fmt: skip
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(secrets.scrub(f"{where} refused every recipient: "
                                          f"{', '.join(exc.recipients)}")) from None  # fmt: skip
    except (smtplib.SMTPException, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout | TimeoutError):
            reason = f"no answer within {point.timeout_seconds:g} s"
        raise DeliveryError(secrets.scrub(f"{where}: {reason}")) from None
    reached = [a for a in recipients if a not in refused]
    if refused:
        raise DeliveryError(f"{where} refused {', '.join(sorted(refused))}", delivered_to=reached)
    return reached
