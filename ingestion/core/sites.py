"""The schema of ``sites.yml``: every site ("dataset") Siteline collects and models.

Validation errors name the file, the site and the field, and say what is allowed, e.g.
``sites.yml: site 'shop': sessions.inactivity_timeout_minutes: Input should be less than or
equal to 1440``.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import re2
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ingestion.core.alert_config import AlertsConfig, parse_duration
from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT

SITE_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
ENV_VAR = re.compile(r"^[A-Z_][A-Z0-9_]*$")

MAX_FILE_BYTES = 1024 * 1024  # sites.yml is configuration, not data
MAX_ALIAS_NODES = 100_000  # nodes that aliases (*name) may repeat, in all


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # the error is raised (and named) here, not printed
    return options


_RE2_OPTIONS = _re2_options()


def compile_pattern(pattern: str):
    """An operator's regex from ``sites.yml``, compiled by RE2.

    These patterns are matched against what visitors send (page paths, user agents, log
    lines). Python's ``re`` backtracks, so one pattern such as ``^/(\\w+/?)*$`` and one
    28-character path can hold a process for seconds; RE2 matches in time linear in the
    input, and refuses what it cannot match that way (backreferences, lookaround). Every
    operator pattern is compiled here, so it is validated and matched by the same engine."""
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"'{pattern}' is not a valid regex for RE2 ({reason}); Siteline matches patterns "
            "with RE2, in linear time: no backreferences, no lookaround"
        ) from None


def _networks(value: list[str]) -> list[str]:
    for net in value:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise ValueError(f"'{net}' is not an IP network (e.g. '10.0.0.0/8')") from None
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionRules(_Strict):
    """When a visit ends and a new one starts (the warehouse and the real-time engine agree)."""

    inactivity_timeout_minutes: float = Field(
        30,
        ge=0.05,
        le=1440,
        description="Minutes without an event that end a visit; fractions allowed (0.5 = 30 s), "
        "for kiosks and tests.",
    )
    new_session_on_campaign_change: bool = True
    split_at_midnight: bool = False
    max_session_hours: float = Field(12, gt=0, le=48)
    allowed_lateness_hours: int = Field(
        72,
        ge=1,
        le=24 * 90,
        description="Tracker events sent later than this after they happened (an offline "
        "queue) are counted in web.late_events instead of changing old visits.",
    )


class IpPolicy(_Strict):
    """What is kept of a visitor's IP address before anything is written.

    ``anonymize`` (default) zeroes the host part (IPv4 to a /24, IPv6 to a /48 by default);
    ``full`` keeps it (only where the site has a legal basis); ``drop`` keeps nothing.
    """

    mode: Literal["anonymize", "full", "drop"] = "anonymize"
    ipv4_prefix: int = Field(24, ge=0, le=32)
    ipv6_prefix: int = Field(48, ge=0, le=128)

    def apply(self, ip: str | None) -> str | None:
        """The address as it may be stored under this policy (None when dropped or invalid)."""
        if not ip or self.mode == "drop":
            return None
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return None
        if self.mode == "full":
            return str(addr)
        prefix = self.ipv4_prefix if addr.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)


LOG_SCHEMES = ("http", "https", "ftp", "ftps", "sftp", "file")
LOG_FORMATS = (
    "auto", "common", "combined", "vhost_combined", "iis", "w3c", "elb", "alb", "cloudfront",
    "s3", "haproxy", "gandi", "nginx_json", "caddy_json", "traefik_json", "custom",
)  # fmt: skip


class LogExclusions(_Strict):
    """Lines to drop (counted per reason). By default nothing is dropped, only flagged."""

    static_assets: bool = False
    paths: list[str] = Field(default_factory=list, description="Regexes on the path.")
    status: list[int] = Field(default_factory=list)
    ip_ranges: list[str] = Field(default_factory=list)
    user_agents: list[str] = Field(default_factory=list, description="Regexes on the user agent.")

    @field_validator("paths", "user_agents")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            compile_pattern(pattern)
        return value

    @field_validator("ip_ranges")
    @classmethod
    def _ranges(cls, value: list[str]) -> list[str]:
        return _networks(value)


class LogSource(_Strict):
    """A web server's logfiles, pulled on a schedule; only what is new each time."""

    name: str
    url: str = Field(description="http(s)/ftp(s)/sftp/file URL; the file part may be a glob.")
    format: str = "auto"
    log_format: str | None = None
    regex: str | None = None
    timezone: str | None = Field(None, description="For formats without an offset.")
    username_env: str | None = None
    password_env: str | None = None
    private_key_env: str | None = Field(None, description="Variable holding an SSH key path.")
    tls_ca_file: str | None = Field(
        None,
        description="PEM file of the CA that signed an https/ftps server's certificate, when "
        "it is not one the system trusts (e.g. a company CA or a self-signed certificate).",
    )
    schedule: str = "*/15 * * * *"
    last_line: Literal["wait", "read"] = Field(
        "wait",
        description="A last line without newline: wait for it (live logs) or read it "
        "(complete files; always for .gz/.bz2).",
    )
    exclude: LogExclusions = LogExclusions()
    bots: Literal["flag", "drop"] = "flag"
    lateness: int = Field(
        300,
        description="How long after a moment its log lines may still be written (a buffered "
        "writer, a log shipped in batches), as a duration (90s, 5m, 1h; default 5m): a period "
        "is complete once a pull started this long after its end (orchestration/completeness.py).",
    )

    @field_validator("lateness", mode="before")
    @classmethod
    def _lateness(cls, value):
        return parse_duration(value)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not SITE_ID.match(value):
            raise ValueError("must start with a lower-case letter and hold only a-z, 0-9 and _")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in LOG_SCHEMES:
            raise ValueError(
                f"scheme '{scheme or value[:20]}' is not supported; use http, https, ftp, ftps, "
                "sftp or file"
            )
        if "@" in value.split("://", 1)[1].split("/", 1)[0] and ":" in value.split("@")[0][8:]:
            raise ValueError(
                "put no password in the URL; name its environment variable in password_env"
            )
        return value

    @field_validator("format")
    @classmethod
    def _format(cls, value: str) -> str:
        if value not in LOG_FORMATS:
            raise ValueError(f"'{value}' is not a log format; use {', '.join(LOG_FORMATS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else Site._tz(value)

    @field_validator("regex")
    @classmethod
    def _line_regex(cls, value: str | None) -> str | None:
        return _regex(value)

    @field_validator("username_env", "password_env", "private_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        return Site._env(value)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"'{value}' is not a cron expression with 5 fields (m h dom mon dow)")
        return value

    @model_validator(mode="after")
    def _custom(self) -> LogSource:
        if self.format == "custom" and not (self.log_format or self.regex):
            raise ValueError("format 'custom' needs log_format (Apache LogFormat) or regex")
        return self


def _regex(value: str | None) -> str | None:
    if value is not None:
        compile_pattern(value)
    return value


class Match(_Strict):
    """What a goal or a funnel step matches: a page (path regex), an event, a purchase or a
    login. ``path`` is a regex on the page path (query string excluded), searched, so anchor
    it (``^/checkout/complete$``) to match whole paths."""

    type: Literal["page", "event", "transaction", "identify"] = "page"
    path: str | None = None
    category: str | None = Field(None, description="Event category (exact), for type event.")
    action: str | None = Field(None, description="Event action (exact), for type event.")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return _regex(value)

    @model_validator(mode="after")
    def _complete(self) -> Match:
        if self.type == "page" and not self.path:
            raise ValueError("a page match needs 'path' (a regex on the page path)")
        if self.type == "event" and not (self.category or self.action):
            raise ValueError("an event match needs 'category' and/or 'action'")
        if self.type != "page" and self.path and self.type != "event":
            raise ValueError(f"'path' is only for type page or event, not {self.type}")
        return self


class Goal(Match):
    """A conversion counted at most once per visit (as Matomo and GA do by default)."""

    id: str
    name: str = ""
    value: float | None = Field(
        None, ge=0, description="Fixed value per conversion; a transaction goal uses revenue."
    )

    @field_validator("id")
    @classmethod
    def _goal_id(cls, value: str) -> str:
        return _identifier(value)


class FunnelStep(Match):
    name: str


class Funnel(_Strict):
    """Ordered steps; a visit reaches step n when it matched steps 1..n in that order."""

    id: str
    name: str = ""
    steps: list[FunnelStep] = Field(min_length=2)

    @field_validator("id")
    @classmethod
    def _funnel_id(cls, value: str) -> str:
        return _identifier(value)


class PageLabel(_Strict):
    """URL pattern → page group (the first label whose regex matches a path wins)."""

    label: str
    path: str

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _regex(value)


class CampaignParameters(_Strict):
    """Query parameters read as campaign fields, first present wins (Matomo's mtm_/pk_
    parameters besides UTM by default; add your own, e.g. a newsletter tool's)."""

    campaign: list[str] = ["utm_campaign", "mtm_campaign", "pk_campaign"]
    source: list[str] = ["utm_source", "mtm_source", "pk_source"]
    medium: list[str] = ["utm_medium", "mtm_medium", "pk_medium"]
    term: list[str] = ["utm_term", "mtm_keyword", "pk_keyword"]
    content: list[str] = ["utm_content", "mtm_content", "pk_content"]

    @field_validator("campaign", "source", "medium", "term", "content")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.match(r"^[A-Za-z0-9_.\-]+$", name):
                raise ValueError(f"'{name}' is not a query parameter name")
        return value


RULE_FIELD = re.compile(
    r"^(session\.(page_views|events|custom_events|engaged_seconds|duration_seconds|idle_seconds"
    r"|transactions|revenue|channel|landing_path|current_path|current_label|device_type|country"
    r"|is_bot|goals|user_id)"
    r"|cart\.(value|quantity|skus)"
    r"|funnels\.[a-z][a-z0-9_]*\.step"
    r"|scores\.(engagement_score|purchase_intent|abandonment_risk)"
    r"|customer\.(known|is_identified|visits|page_views|transactions|revenue|average_order_value"
    r"|rfm_segment|days_since_last_visit|first_touch_channel_id|last_touch_channel_id"
    r"|attributes\.[A-Za-z0-9_.\-]+))$"
)
RULE_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "exists")


class RealtimeRule(_Strict):
    """A rule the real-time engine evaluates on every event of a visit: when every condition
    holds, the rule is listed in the visit's state with its ``then`` (e.g. an offer to show).

    ``when`` maps a state field to conditions, e.g. ``cart.value: {gt: 100}``,
    ``customer.transactions: {gte: 1}``, ``customer.rfm_segment: {in: [champion, loyal customer]}``
    (fields and operators: docs/realtime.md)."""

    id: str
    name: str = ""
    when: dict[str, dict[str, object]] = Field(min_length=1)
    then: dict[str, object] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        return _identifier(value)

    @field_validator("when")
    @classmethod
    def _conditions(cls, value: dict) -> dict:
        for name, conditions in value.items():
            if not RULE_FIELD.match(name):
                raise ValueError(
                    f"'{name}' is not a state field a rule can test (e.g. cart.value, "
                    "session.page_views, customer.transactions; see docs/realtime.md)"
                )
            if not conditions:
                raise ValueError(f"{name}: give at least one condition, e.g. {{gte: 1}}")
            for op, operand in conditions.items():
                if op not in RULE_OPERATORS:
                    raise ValueError(
                        f"{name}: '{op}' is not an operator; use {', '.join(RULE_OPERATORS)}"
                    )
                if op in ("in", "not_in") and not isinstance(operand, list):
                    raise ValueError(f"{name}: '{op}' needs a list")
                if op in ("gt", "gte", "lt", "lte") and (
                    isinstance(operand, bool) or not isinstance(operand, int | float)
                ):
                    raise ValueError(f"{name}: '{op}' needs a number")
        return value


def _identifier(value: str) -> str:
    if not SITE_ID.match(value):
        raise ValueError("must start with a lower-case letter and hold only a-z, 0-9 and _")
    return value


class Site(_Strict):
    id: str
    name: str = ""
    domains: list[str] = Field(min_length=1)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to send events; defaults to http(s)://<domain>.",
    )
    timezone: str = "UTC"
    currency: str = Field("EUR", pattern=r"^[A-Z]{3}$")
    sessions: SessionRules = SessionRules()
    ip_policy: IpPolicy = IpPolicy()
    respect_do_not_track: bool = True
    require_consent: bool = False
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Networks whose X-Forwarded-For header is trusted for the client IP.",
    )
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding this site's API key."
    )
    logfiles: list[LogSource] = Field(default_factory=list)
    page_labels: list[PageLabel] = Field(default_factory=list)
    campaign_parameters: CampaignParameters = CampaignParameters()
    goals: list[Goal] = Field(default_factory=list)
    funnels: list[Funnel] = Field(default_factory=list)
    realtime_rules: list[RealtimeRule] = Field(default_factory=list)

    @field_validator("goals", "funnels", "realtime_rules")
    @classmethod
    def _unique_ids(cls, value: list) -> list:
        ids = [item.id for item in value]
        for item_id in ids:
            if ids.count(item_id) > 1:
                raise ValueError(f"id '{item_id}' is used twice; ids must be unique")
        return value

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not SITE_ID.match(value):
            raise ValueError(
                "must start with a lower-case letter and hold only a-z, 0-9 and _ (max 63)"
            )
        return value

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        for domain in value:
            if "/" in domain or " " in domain or not domain:
                raise ValueError(f"'{domain}' is not a host name (write 'shop.example', no scheme)")
        return [d.lower() for d in value]

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not re.match(r"^https?://[^/\s]+$", origin):
                raise ValueError(
                    f"'{origin}' is not an origin (write scheme://host[:port], no path)"
                )
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"'{value}' is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')"
            ) from None
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: list[str]) -> list[str]:
        return _networks(value)

    @field_validator("api_key_env")
    @classmethod
    def _env(cls, value: str | None) -> str | None:
        if value is not None and not ENV_VAR.match(value):
            raise ValueError(
                f"'{value}' is not an environment variable name (upper case, digits, _); "
                "put the key itself in the environment, never in sites.yml"
            )
        return value

    @property
    def origins(self) -> list[str]:
        """The browser origins allowed to send events for this site."""
        if self.allowed_origins:
            return list(self.allowed_origins)
        return [f"{scheme}://{d}" for d in self.domains for scheme in ("https", "http")]


class SitesConfig(_Strict):
    version: Literal[1] = 1
    sites: list[Site] = Field(min_length=1)
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _unique(self) -> SitesConfig:
        seen: set[str] = set()
        for site in self.sites:
            if site.id in seen:
                raise ValueError(f"site id '{site.id}' is defined twice; ids must be unique")
            seen.add(site.id)
        return self

    @model_validator(mode="after")
    def _alert_references(self) -> SitesConfig:
        """Every site and contact point an alert rule names is defined, and its goal and
        funnel filters name goals and funnels of every site it applies to."""
        points = {p.name for p in self.alerts.contact_points}
        for rule in self.alerts.rules:
            where = f"alert rule '{rule.id}'"
            for name in rule.contact_points:
                if name not in points:
                    known = ", ".join(sorted(points)) or "none"
                    raise ValueError(
                        f"{where}: contact_points: '{name}' is not a contact point "
                        f"(alerts.contact_points defines: {known})"
                    )
            for site in self.sites_of(rule):
                goals = {g.id for g in site.goals}
                for goal in rule.filters.goal or []:
                    if goal not in goals:
                        raise ValueError(
                            f"{where}: filters.goal: site '{site.id}' has no goal '{goal}'"
                        )
                funnel = rule.filters.funnel
                if funnel is not None:
                    steps = {f.id: len(f.steps) for f in site.funnels}
                    if funnel not in steps:
                        raise ValueError(
                            f"{where}: filters.funnel: site '{site.id}' has no funnel '{funnel}'"
                        )
                    if rule.filters.step is not None and rule.filters.step > steps[funnel]:
                        raise ValueError(
                            f"{where}: filters.step: funnel '{funnel}' of site '{site.id}' "
                            f"has {steps[funnel]} steps"
                        )
        return self

    def sites_of(self, rule) -> list[Site]:
        """The sites an alert rule applies to (all, or the listed ones, which must exist)."""
        if rule.sites == "all":
            return list(self.sites)
        known = {s.id: s for s in self.sites}
        for site_id in rule.sites:
            if site_id not in known:
                raise ValueError(
                    f"alert rule '{rule.id}': sites: '{site_id}' is not a site "
                    f"(sites.yml defines: {', '.join(known)})"
                )
        return [known[site_id] for site_id in rule.sites]

    def site(self, site_id: str) -> Site:
        for site in self.sites:
            if site.id == site_id:
                return site
        known = ", ".join(s.id for s in self.sites)
        raise SitelineError(f"unknown site '{site_id}'; sites.yml defines: {known}")


def default_config_path() -> Path:
    from ingestion.core.settings import settings

    return settings().sites_file or PROJECT_ROOT / "sites.yml"


def _describe(error: dict, raw: dict, filename: str) -> str:
    loc = list(error["loc"])
    where = filename
    if len(loc) >= 2 and loc[0] == "sites" and isinstance(loc[1], int):
        idx = loc[1]
        sites = raw.get("sites") or []
        site_id = (
            sites[idx].get("id") if idx < len(sites) and isinstance(sites[idx], dict) else None
        )
        where += f": site '{site_id}'" if site_id else f": sites[{idx}]"
        loc = loc[2:]
    elif len(loc) >= 3 and loc[0] == "alerts" and isinstance(loc[2], int):
        kind, idx = loc[1], loc[2]
        section = raw.get("alerts") if isinstance(raw.get("alerts"), dict) else {}
        items = section.get(kind) or []
        items = items if isinstance(items, list) else []
        item = items[idx] if idx < len(items) and isinstance(items[idx], dict) else {}
        name = item.get("id" if kind == "rules" else "name")
        noun = "alert rule" if kind == "rules" else "contact point"
        where += f": {noun} '{name}'" if name else f": alerts.{kind}[{idx}]"
        loc = loc[3:]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; see docs/configuration.md)"
    elif error["type"] == "missing":
        message = "is required"
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents whose aliases expand without bound.

    An alias (``*name``) stands for its anchored node, which may itself hold aliases: ten
    levels of ten aliases are 10^10 leaves in a few hundred bytes. The loader builds shared
    objects, so memory stays small, but every reader that walks or serialises the values
    (a rule's ``then`` is sent with every state that matches it) pays the expanded size.
    """

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node


class _Unbounded(yaml.YAMLError):
    def __init__(self, problem: str, node: yaml.Node) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, node.start_mark.line + 1


def _check_expansion(root: yaml.Node) -> None:
    """Raise :class:`_Unbounded` when aliases repeat more than ``MAX_ALIAS_NODES`` nodes
    (or refer to themselves). Counts each node once (memoised), so a bomb costs no more to
    check than it is long."""
    sizes: dict[int, int] = {}  # node id -> nodes it expands to
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            entered.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] - len(sizes) > MAX_ALIAS_NODES:
                raise _Unbounded(
                    f"aliases (*name) repeat more than {MAX_ALIAS_NODES:,} nodes; write the "
                    "values out or use fewer aliases",
                    node,
                )
            continue
        if key in sizes:
            continue
        if key in entered:
            raise _Unbounded("an alias refers to a node that holds it", node)
        entered.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _read_config(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SitelineError(
            f"{path}: not found; create it (see docs/configuration.md) "
            "or set SITELINE_SITES_FILE to its location"
        ) from None
    if len(data) > MAX_FILE_BYTES:
        raise SitelineError(
            f"{path}: larger than the limit of {MAX_FILE_BYTES // (1024 * 1024)} MiB for "
            "sites.yml; it holds configuration only"
        )
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise SitelineError(f"{path}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None


def load_sites(path: Path | str | None = None) -> SitesConfig:
    """Read and validate ``sites.yml``; raise :class:`SitelineError` with every problem.

    The file may hold at most ``MAX_FILE_BYTES``, and its aliases may repeat at most
    ``MAX_ALIAS_NODES`` nodes."""
    path = Path(path) if path else default_config_path()
    text = _read_config(path)
    try:
        raw = yaml.load(text, Loader=_BoundedLoader)  # a SafeLoader
    except _Unbounded as exc:
        raise SitelineError(f"{path.name}: line {exc.line}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SitelineError(f"{path.name}:{where}: not valid YAML: {problem}") from None
    except RecursionError:
        raise SitelineError(f"{path.name}: nested too deeply to be a site configuration") from None
    if not isinstance(raw, dict):
        raise SitelineError(f"{path.name}: must be a mapping with a 'sites' list")
    try:
        return SitesConfig.model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(err, raw, path.name) for err in exc.errors()]
        raise SitelineError("; ".join(problems)) from None


def site_keys(sites: SitesConfig) -> dict[str, str]:
    """site id → API key: the variable named by ``api_key_env``, else a key generated once
    and remembered under ``$SITELINE_HOME/secrets`` (``siteline api-key SITE`` prints it).
    Sites without ``api_key_env`` have no API access."""
    from ingestion.core.home import remembered_secret

    return {
        site.id: remembered_secret(f"api-key-{site.id}", site.api_key_env)
        for site in sites.sites
        if site.api_key_env
    }
