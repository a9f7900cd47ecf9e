"""Any service Apprise knows (Telegram, Teams, Signal, Pushover, ntfy, other SMS providers
...), by an Apprise URL held in the environment variable ``url_env`` names (the URL carries
the service's credentials)."""

from __future__ import annotations

from ingestion.core.alert_config import ContactPoint
from orchestration.alerts.contacts import DeliveryError, Message, Secrets
from orchestration.alerts.contacts import render as r


def send(point: ContactPoint, message: Message, done: frozenset[str]) -> list[str]:
    if "apprise" in done:
        return []
    import apprise

    secrets = Secrets()
    url = secrets.env(point, point.url_env, "the Apprise URL")
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise DeliveryError(
            f"contact point '{point.name}': the value of {point.url_env} is not an Apprise URL "
            "Apprise knows (https://github.com/caronc/apprise/wiki)"
        )
    base = r.superset_base_url()
    lines = [f"{r.one_line(item, 300)}\n{r.dashboard_url(item, base)}" for item in message.items]
    try:
        ok = notifier.notify(title=message.subject, body="\n\n".join(lines))
    except Exception as exc:  # a plugin's own failure: reported like a refusal
        raise DeliveryError(secrets.scrub(f"apprise ({point.url_env}): {exc}")) from None
    if not ok:
        scheme = url.split("://", 1)[0]
        raise DeliveryError(f"apprise ({scheme}:// from {point.url_env}) could not deliver; "
                            "its log says why (logger 'apprise')")  # fmt: skip
    return ["apprise"]
