"""Webhooks: a JSON POST of the notification (``format: json``, the items exactly as stored:
``AlertNews.payload()``), or a Slack-compatible message (``format: slack``: ``text`` for
notifications and clients without blocks, ``blocks`` for the rest; Mattermost, Rocket.Chat
and Discord's Slack endpoint read the same).

Every request carries ``Idempotency-Key: siteline-notification-<id>``: a receiver that
honours it drops the copy a retry after an unclear failure would send.
"""

from __future__ import annotations

import httpx

from ingestion.core.alert_config import ContactPoint
from orchestration.alerts.contacts import DeliveryError, Message, Secrets, mask_url
from orchestration.alerts.contacts import render as r

MAX_BLOCKS = 45  # Slack accepts 50 blocks per message


def json_payload(message: Message) -> dict:
    """The plain JSON body."""
    firing = sum(r.is_firing(item) for item in message.items)
    return {
        "version": 1,
        "source": "siteline",
        "notification_id": message.notification_id,
        "contact_point": message.contact_point,
        "subject": message.subject,
        "status": "firing" if firing else message.items[0].get("kind", "resolved"),
        "firing": firing,
        "resolved": sum(item.get("kind") == "resolved" for item in message.items),
        "created_at": message.created_at.isoformat(),
        "alerts": [
            {**item, "dashboard_url": r.dashboard_url(item, r.superset_base_url())}
            for item in message.items
        ],
    }


def slack_payload(message: Message) -> dict:
    """Slack's ``{"text", "blocks"}``: a header, one section per alert, a link each."""
    base = r.superset_base_url()
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.subject[:150]}}
    ]
    for index, item in enumerate(message.items):
        if len(blocks) >= MAX_BLOCKS:
            rest = len(message.items) - index
            blocks.append({"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"... and {rest} more"}]})  # fmt: skip
            break
        icon = {"resolved": ":white_check_mark:", "test": ":wrench:"}.get(
            item.get("kind"), ":rotating_light:"
        )
        value = r.value_text(item.get("value"), item.get("unit"), item.get("currency"))
        expected = ""
        if item.get("baseline") is not None:
            expected = " · expected " + r.value_text(
                item.get("baseline"), item.get("unit"), item.get("currency")
            )
        word = r.KIND_WORD.get(item.get("kind"), "FIRING")
        text = (
            f"{icon} *{word}* {_escape(r.instance_name(item))}\n"
            f"{_escape(item.get('reason') or '')}\n"
            f"{_escape(item.get('metric_label') or '')}: *{value}*{expected} · "
            f"{r.period_text(item)} · <{r.dashboard_url(item, base)}|dashboard>"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}})
    lines = [message.subject, *(r.one_line(item, 300) for item in message.items[:20])]
    return {"text": "\n".join(lines), "blocks": blocks}


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def send(point: ContactPoint, message: Message, done: frozenset[str]) -> list[str]:
    """POST the message; ``["webhook"]`` when the receiver answered 2xx."""
    if "webhook" in done:
        return []
    secrets = Secrets()
    url = secrets.env(point, point.url_env, "the webhook URL") if point.url_env else point.url
    payload = slack_payload(message) if point.format == "slack" else json_payload(message)
    where = f"webhook {mask_url(url)}"
    headers = {"Idempotency-Key": f"siteline-notification-{message.notification_id}",
               "User-Agent": "siteline-alerts"}  # fmt: skip
    try:
        response = httpx.post(url, json=payload, headers=headers, timeout=point.timeout_seconds)
    except httpx.TimeoutException:
        raise DeliveryError(f"{where}: no answer within {point.timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(secrets.scrub(f"{where}: {type(exc).__name__}: {exc}")) from None
    if not response.is_success:
        text = " ".join(response.text.split())[:200]
        code = response.status_code
        raise DeliveryError(secrets.scrub(f"{where}: HTTP {code} {text}"),
                            permanent=400 <= code < 500 and code not in (408, 429))  # fmt: skip
    return ["webhook"]
