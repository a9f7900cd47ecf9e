"""The schema of ``sites.yml``'s ``alerts:`` section: contact points and alert rules.

Validated with the rest of the file (``ingestion.core.sites.load_sites``): an error names the
file, the rule (or contact point) and the field, e.g. ``sites.yml: alert rule 'revenue_drop':
condition.by: is required for a 'decrease' condition``. What the rules mean, and how they are
evaluated, is in docs/alerts.md; the evaluator is ``orchestration/alerts/``.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ingestion.core.metrics import METRICS, SPLITTABLE, metric

RULE_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

Grain = Literal["hour", "day", "week", "month"]
Severity = Literal["critical", "warning", "info"]


def parse_duration(value: str | int | float) -> int:
    """Seconds of a duration written ``90s``, ``30m``, ``4h``, ``2d`` or ``1w`` (a bare
    number is seconds); ``ValueError`` saying how to write one otherwise."""
    if isinstance(value, bool):
        raise ValueError("is not a duration (write e.g. 30m, 4h, 1d)")
    if isinstance(value, int | float):
        seconds = value
    else:
        match = DURATION.match(str(value))
        if not match:
            raise ValueError(f"'{value}' is not a duration (write e.g. 90s, 30m, 4h, 1d, 1w)")
        seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"'{value}' is not a duration (write e.g. 90s, 30m, 4h, 1d, 1w)")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return int(seconds)


class _Strict(BaseModel):
    # inf/nan are no thresholds (a rule 'above nan' could never fire): refused like text
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False
    )


def _env(value: str | None) -> str | None:
    if value is not None and not ENV_VAR.match(value):
        raise ValueError(
            f"'{value}' is not an environment variable name (upper case, digits, _); put the "
            "secret itself in the environment, never in sites.yml"
        )
    return value


class ContactPoint(_Strict):
    """Where notifications go: ``email`` (SMTP), ``sms`` (an HTTP SMS API; Twilio's message
    API shape by default), ``webhook`` (plain JSON or Slack-compatible) or ``apprise`` (any
    service Apprise knows, by an Apprise URL held in an environment variable).

    Secrets (SMTP password, SMS token, a webhook URL that carries a token) are named by the
    environment variable that holds them (``*_env``), never written here."""

    name: str
    type: Literal["email", "sms", "webhook", "apprise"]
    # email
    to: list[str] = Field(default_factory=list, description="Recipients (e-mail or phone).")
    bcc: list[str] = Field(default_factory=list)
    from_address: str | None = Field(None, alias="from", description="Sender (e-mail or phone).")
    smtp_host: str = "localhost"
    smtp_port: int = Field(25, ge=1, le=65535)
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    username_env: str | None = None
    password_env: str | None = None
    # sms / webhook
    url: str | None = Field(None, description="Endpoint, when it holds no secret.")
    url_env: str | None = Field(None, description="Variable holding the endpoint URL.")
    account_env: str | None = Field(None, description="SMS: variable with the account id.")
    token_env: str | None = Field(None, description="SMS: variable with the auth token.")
    format: Literal["json", "slack"] = "json"
    timeout_seconds: float = Field(10, gt=0, le=120)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("username_env", "password_env", "url_env", "account_env", "token_env")
    @classmethod
    def _env_names(cls, value: str | None) -> str | None:
        return _env(value)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError(f"'{value}' is not an http(s) URL")
        return value

    @model_validator(mode="after")
    def _complete(self) -> ContactPoint:
        if self.type == "email":
            if not self.to and not self.bcc:
                raise ValueError("an email contact point needs 'to' (or 'bcc') addresses")
            for address in (*self.to, *self.bcc, self.from_address):
                if address and not re.match(r"^[^@\s]+@[^@\s]+$", address):
                    raise ValueError(f"'{address}' is not an e-mail address")
        elif self.type == "sms":
            if not self.to:
                raise ValueError("an sms contact point needs 'to' phone numbers")
            for number in (*self.to, *([self.from_address] if self.from_address else [])):
                if not re.match(r"^\+?[0-9]{3,15}$", number):
                    raise ValueError(
                        f"'{number}' is not a phone number (E.164, e.g. +4915112345678)"
                    )
            if not self.from_address:
                raise ValueError("an sms contact point needs 'from' (the sending number)")
        elif self.type == "webhook":
            if not (self.url or self.url_env):
                raise ValueError("a webhook contact point needs 'url' or 'url_env'")
        elif self.type == "apprise" and not self.url_env:
            raise ValueError("an apprise contact point needs 'url_env' (an Apprise URL)")
        if self.url and self.url_env:
            raise ValueError("give 'url' or 'url_env', not both")
        return self


class AlertCondition(_Strict):
    """When a period's value breaches.

    - ``below`` / ``above``: the value is below / above ``value``.
    - ``decrease`` / ``increase``: the value fell / rose by more than ``by`` (``unit``:
      percent or absolute) against ``compared_to`` (the previous period, the same period last
      week or last year) - Matomo's six conditions.
    - ``anomaly``: the value is outside a seasonal robust baseline: the same period (weekday
      for days, hour of the week for hours) of the last ``weeks`` weeks, median ± ``threshold``
      robust deviations (MAD), in ``direction``; and only when the baseline holds at least
      ``min_volume`` and the change is at least ``min_change`` percent.
    """

    type: Literal["below", "above", "decrease", "increase", "anomaly"]
    value: float | None = None
    by: float | None = Field(None, gt=0)
    unit: Literal["percent", "absolute"] = "percent"
    compared_to: Literal["previous_period", "same_period_last_week", "same_period_last_year"] = (
        "previous_period"
    )
    direction: Literal["down", "up", "both"] = "both"
    weeks: int = Field(8, ge=2, le=52)
    threshold: float = Field(3.5, gt=0, le=50)
    min_volume: float = Field(0, ge=0)
    min_change: float = Field(20, ge=0, le=1000, description="Percent.")

    @model_validator(mode="after")
    def _complete(self) -> AlertCondition:
        if self.type in ("below", "above") and self.value is None:
            raise ValueError(f"'value' is required for a '{self.type}' condition")
        if self.type in ("decrease", "increase") and self.by is None:
            raise ValueError(f"'by' is required for a '{self.type}' condition")
        if self.type in ("below", "above") and self.by is not None:
            raise ValueError(
                f"'by' is for decrease/increase; a '{self.type}' condition takes 'value'"
            )
        if self.type not in ("below", "above") and self.value is not None:
            raise ValueError(
                f"'value' is for below/above; a '{self.type}' condition does not take it"
            )
        if self.type == "decrease" and self.unit == "percent" and self.by >= 100:
            raise ValueError(
                "a decrease by 100% or more can never happen (the value would go below 0); "
                "use 'below' for a value that must not fall to nothing"
            )
        return self


class AlertFilters(_Strict):
    """Rows the metric counts: each dimension given keeps the rows whose value is one of the
    listed ones (a single value or a list). ``goal`` is a goal id, ``funnel`` a funnel id and
    ``step`` its step number (from 2: the drop-off into that step)."""

    channel: list[str] | None = None
    device: list[str] | None = None
    country: list[str] | None = None
    page_label: list[str] | None = None
    campaign: list[str] | None = None
    goal: list[str] | None = None
    funnel: str | None = None
    step: int | None = Field(None, ge=2, le=50)

    @field_validator("channel", "device", "country", "page_label", "campaign", "goal",
                     mode="before")  # fmt: skip
    @classmethod
    def _listed(cls, value):
        return [value] if isinstance(value, str | int) else value

    def given(self) -> dict[str, object]:
        """The dimensions this filter restricts, with their values."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class AlertRule(_Strict):
    """A KPI rule: one instance per site it applies to (and per value of ``by``)."""

    id: str
    name: str = ""
    description: str = ""
    enabled: bool = True
    sites: Literal["all"] | list[str] = "all"
    metric: str
    sql: str | None = Field(
        None, description="For metric 'custom': SQL over web.*/crm.* returning (period, value)."
    )
    grain: Grain = "day"
    window: int | None = Field(
        None, description="Real-time metrics: the sliding window, seconds (write 5m)."
    )
    filters: AlertFilters = AlertFilters()
    by: str | None = None
    by_limit: int = Field(20, ge=1, le=1000, description="At most this many values of `by`.")
    condition: AlertCondition
    severity: Severity = "warning"
    for_periods: int = Field(1, alias="for", ge=1, le=100)
    repeat_interval: int = Field(
        4 * 3600, description="While firing, notify again after this long (write 4h)."
    )
    no_data: Literal["nodata", "ok", "alerting"] = "nodata"
    contact_points: list[str] = Field(default_factory=list)
    dashboard: str | None = None

    @field_validator("id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("repeat_interval", "window", mode="before")
    @classmethod
    def _duration(cls, value):
        return None if value is None else parse_duration(value)

    @field_validator("sites")
    @classmethod
    def _sites(cls, value):
        if isinstance(value, list) and not value:
            raise ValueError("name at least one site, or write 'all'")
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        try:
            metric(value)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        return value

    @field_validator("by")
    @classmethod
    def _by(cls, value: str | None) -> str | None:
        if value is not None and value not in SPLITTABLE:
            dims = ", ".join(SPLITTABLE)
            raise ValueError(f"'{value}' is not a dimension to split by; use {dims}")
        return value

    @model_validator(mode="after")
    def _fits_metric(self) -> AlertRule:
        m = METRICS[self.metric]
        given = set(self.filters.given()) | ({self.by} if self.by else set())
        missing = [d for d in sorted(given) if d not in m.dimensions]
        if missing:
            has = ", ".join(m.dimensions) or "none"
            raise ValueError(
                f"metric '{m.name}' has no dimension {', '.join(repr(d) for d in missing)} "
                f"(its dimensions: {has})"
            )
        for needed in m.required:
            if needed not in self.filters.given():
                raise ValueError(f"metric '{m.name}' needs filters.{needed}")
        if m.name == "custom" and not (self.sql and self.sql.strip()):
            raise ValueError("metric 'custom' needs 'sql' (a query returning period, value)")
        if m.name != "custom" and self.sql:
            raise ValueError("'sql' is only for metric 'custom'")
        if m.realtime:
            if self.window is None:
                raise ValueError(f"real-time metric '{m.name}' needs 'window' (e.g. 5m)")
            if not 60 <= self.window <= 3600:
                raise ValueError("window: must be from 1m to 60m")
            if self.condition.type in ("decrease", "increase") and (
                self.condition.compared_to == "same_period_last_year"
            ):
                raise ValueError("real-time rules compare with recent windows or weeks, not years")
        elif self.window is not None:
            raise ValueError(f"'window' is only for real-time metrics; '{m.name}' has a grain")
        if self.condition.type == "anomaly" and self.grain in ("week", "month") and not m.realtime:
            raise ValueError("condition 'anomaly' needs grain hour or day (a seasonal baseline)")
        return self


class AlertsConfig(_Strict):
    contact_points: list[ContactPoint] = Field(default_factory=list)
    rules: list[AlertRule] = Field(default_factory=list)

    @field_validator("contact_points", "rules")
    @classmethod
    def _unique(cls, value: list) -> list:
        names = [getattr(item, "name", None) if isinstance(item, ContactPoint) else item.id
                 for item in value]  # fmt: skip
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"'{name}' is defined twice; names must be unique")
        return value

    def contact_point(self, name: str) -> ContactPoint:
        for point in self.contact_points:
            if point.name == name:
                return point
        known = ", ".join(p.name for p in self.contact_points) or "none"
        raise KeyError(f"no contact point '{name}' (defined: {known})")

    def rule(self, rule_id: str) -> AlertRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        known = ", ".join(r.id for r in self.rules) or "none"
        raise KeyError(f"no alert rule '{rule_id}' (defined: {known})")


def _identifier(value: str) -> str:
    if not RULE_ID.match(value):
        raise ValueError("must start with a lower-case letter and hold only a-z, 0-9 and _")
    return value
