"""Contact points: how one notification of the outbox reaches people.

Each kind is one module with one function, ``send(point, message, done) -> list[str]``:

    email    SMTP (smtplib): an HTML mail with an inline chart per instance, a plain-text
             alternative and a link to the Superset dashboard
    sms      an HTTP SMS API in Twilio's message API shape, one request per recipient
    webhook  a JSON POST: the items as they are stored, or Slack's ``{"text", "blocks"}``
    apprise  any service Apprise knows, from an Apprise URL held in an environment variable

``done`` lists the recipients an earlier attempt already reached (SMS sends one request per
number): they are skipped, so a retry tells only those still waiting. ``send`` returns the
recipients it reached; it raises :class:`DeliveryError` (with the ones it did reach) when it
could not deliver. Credentials come only from the environment variables a contact point
names; error messages never carry them (:func:`scrub`, :func:`mask_url`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from ingestion.core.alert_config import ContactPoint


@dataclass(frozen=True)
class Message:
    """One notification as the outbox hands it to a contact point: its subject and the
    items it tells (the stored ``AlertNews`` payloads, silenced ones left out)."""

    notification_id: int
    contact_point: str
    subject: str
    items: list[dict]
    created_at: datetime


class DeliveryError(Exception):
    """A send that did not reach everyone; ``delivered_to`` lists whom it did reach.
    ``permanent``: the endpoint refused the message itself (an HTTP 4xx but 408/429): sending
    it again cannot succeed, so it is not retried."""

    def __init__(
        self, message: str, delivered_to: list[str] | None = None, permanent: bool = False
    ) -> None:
        super().__init__(message)
        self.delivered_to = list(delivered_to or [])
        self.permanent = permanent


@dataclass
class Secrets:
    """The secret values a send used, to scrub from any error message."""

    values: list[str] = field(default_factory=list)

    def env(self, point: ContactPoint, variable: str | None, what: str) -> str:
        """The value of ``variable`` (named by the contact point for ``what``); a
        :class:`DeliveryError` naming the variable (never a value) when it is unset."""
        if not variable:
            raise DeliveryError(f"contact point '{point.name}' names no variable for {what}")
        value = os.environ.get(variable, "")
        if not value:
            raise DeliveryError(
                f"contact point '{point.name}': environment variable {variable} ({what}) is not set"
            )
        self.values.append(value)
        return value

    def scrub(self, text: str) -> str:
        """``text`` with every secret replaced by ``***``."""
        for value in sorted(self.values, key=len, reverse=True):
            if len(value) >= 3:
                text = text.replace(value, "***")
        return text


def mask_url(url: str) -> str:
    """An endpoint as errors show it: scheme, host and port only (a webhook's path or query
    often is its secret, e.g. Slack's ``/services/T../B../token``)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    tail = "/***" if (parts.path.strip("/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def send(point: ContactPoint, message: Message, done: frozenset[str] = frozenset()) -> list[str]:
    """Deliver ``message`` through ``point``; the recipients reached (see the module doc)."""
    if point.type == "email":
        from orchestration.alerts.contacts import email

        return email.send(point, message, done)
    if point.type == "sms":
        from orchestration.alerts.contacts import sms

        return sms.send(point, message, done)
    if point.type == "webhook":
        from orchestration.alerts.contacts import webhook

        return webhook.send(point, message, done)
    from orchestration.alerts.contacts import apprise_url

    return apprise_url.send(point, message, done)
