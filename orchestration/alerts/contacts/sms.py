"""SMS through an HTTP API in Twilio's message API shape: one POST per recipient of the form
fields ``To``, ``From``, ``Body`` to ``{base}/Accounts/{account}/Messages.json`` with HTTP
basic auth (the account id and token from the variables ``account_env``/``token_env``).

``base`` is Twilio's (:data:`TWILIO_API`) unless the contact point gives ``url`` or
``url_env``: another provider with the same shape, or a loopback receiver in tests. The body
holds one line of at most :data:`LINE` characters per alert (a single SMS each).
"""

from __future__ import annotations

import httpx

from ingestion.core.alert_config import ContactPoint
from orchestration.alerts.contacts import DeliveryError, Message, Secrets, mask_url
from orchestration.alerts.contacts import render as r

TWILIO_API = "https://api.twilio.com/2010-04-01"
LINE = 160
MAX_BODY = 1600  # Twilio's limit for one message (it splits it into segments)


def body(message: Message) -> str:
    """The text: one short line per alert, the rest counted."""
    lines, size = [], 0
    for index, item in enumerate(message.items):
        line = r.one_line(item, LINE)
        if size + len(line) + 1 > MAX_BODY - 20:
            lines.append(f"... and {len(message.items) - index} more")
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)


def send(point: ContactPoint, message: Message, done: frozenset[str]) -> list[str]:
    """One request per recipient not yet reached; the numbers reached."""
    secrets = Secrets()
    account = secrets.env(point, point.account_env, "the SMS account id")
    token = secrets.env(point, point.token_env, "the SMS auth token")
    if point.url_env:
        base = secrets.env(point, point.url_env, "the SMS API URL")
    else:
        base = point.url or TWILIO_API
    if not point.from_address:
        raise DeliveryError(f"contact point '{point.name}' needs 'from' (the sending number)")
    endpoint = f"{base.rstrip('/')}/Accounts/{account}/Messages.json"
    text = body(message)
    reached: list[str] = []
    problems: list[str] = []
    with httpx.Client(timeout=point.timeout_seconds, auth=(account, token)) as client:
        for number in point.to:
            if number in done:
                continue
            try:
                response = client.post(
                    endpoint, data={"To": number, "From": point.from_address, "Body": text}
                )
            except httpx.TimeoutException:
                problems.append(f"{number}: no answer within {point.timeout_seconds:g} s")
                continue
            except httpx.HTTPError as exc:
                problems.append(f"{number}: {type(exc).__name__}: {exc}")
                continue
            if response.is_success:
                reached.append(number)
            else:
                problems.append(f"{number}: HTTP {response.status_code} {_detail(response)}")
    if problems:
        where = f"SMS API {mask_url(endpoint)}"
        raise DeliveryError(secrets.scrub(f"{where}: {'; '.join(problems)}"), reached)
    return reached


def _detail(response: httpx.Response) -> str:
    """The provider's own words (Twilio answers ``{"message": ...}``), shortened."""
    try:
        data = response.json()
        text = str(data.get("message") or data) if isinstance(data, dict) else str(data)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:200]
