"""A deterministic simulator of a web shop's traffic, with its ground truth.

The same visits are written twice, as a real deployment would see them:

* tracker events in the landing format the collector writes (``ingestion.core.landing``),
  with device clocks that drift, retried (duplicated) deliveries and late (offline) deliveries;
* web-server access log lines (Apache/Nginx combined), including what no tracker sees:
  static assets, declared crawlers, vulnerability scanners and visitors who block tracking.

The ground truth (every visit, identity, transaction and item) is written beside them so tests
can check the models exactly. Visits obey the warehouse's session rules by construction: no
gap of 30 minutes inside a visit, at least 31 minutes between two visits on one device.
Incidents (``incidents.py``: a checkout outage, a campaign spike, a bot flood, slow pages)
can be injected, with their own ground truth.

Everything is drawn from one seeded ``random.Random``: the same config gives the same bytes.
Memory is bounded by the population (visitors and devices), not by the number of events:
events are released from two small heaps (landing order = receive time, log order = request
time) as soon as no later visit can precede them.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from ingestion.demo_traffic import catalogue as cat
from ingestion.demo_traffic.incidents import (
    FLOOD_NETWORK,
    FLOOD_USER_AGENT,
    OUTAGE_STATUS,
    SPIKE_SOURCE,
    Incident,
    truth_rows,
)

WEEKDAY_FACTOR = [1.0, 1.02, 1.0, 1.05, 1.1, 0.82, 0.88]  # Monday .. Sunday
# Share of the day's visits starting in each local hour: quiet nights, evening peak.
HOUR_WEIGHTS = [
    0.6, 0.4, 0.3, 0.25, 0.25, 0.4, 0.9, 1.8, 2.8, 3.4, 3.6, 3.8,
    4.0, 3.9, 3.7, 3.6, 3.7, 4.0, 4.6, 5.2, 5.5, 4.8, 3.2, 1.6,
]  # fmt: skip
MIN_GAP = timedelta(minutes=31)
FUNNEL = ["/cart", "/checkout/shipping", "/checkout/payment", "/checkout/complete"]


@dataclass(frozen=True)
class SimulationConfig:
    site_id: str = "demo"
    host: str = "shop.siteline.test"
    site_timezone: str = "Europe/Berlin"
    start: date = date(2026, 11, 1)
    days: int = 14
    visits_per_day: int = 400
    seed: int = 42
    sneaky_bot_share: float = 0.02  # of visits: JS-running bots
    blocked_share: float = 0.05  # of human visits: tracking blocked (DNT, ad blocker)
    crawler_hits_per_day: int = 150
    scanner_hits_per_day: int = 20
    offline_share: float = 0.01  # visits whose last page's events arrive hours later
    retry_share: float = 0.003  # events delivered twice (lost acknowledgement)
    skewed_clock_share: float = 0.03  # devices whose clock is off by minutes to hours
    reload_share: float = 0.03  # page views (after the first) reloaded within ~2 s
    # The site's visit rules the truth follows (sites.yml sessions: the demo site's values).
    split_at_midnight: bool = False
    max_session_hours: float = 12
    # Each day, one visit of each kind that a visit rule splits (or, for midnight, splits
    # when split_at_midnight): a campaign link followed inside a visit, a tab reloaded for
    # longer than max_session_hours, a visit across local midnight.
    rule_visits: bool = True
    population: int = 100_000  # people who may come back; beyond it the oldest drift away
    # Incidents injected into the traffic (incidents.Incident; demo_incidents() gives the
    # demo's). None: the traffic is what it always was, byte for byte.
    incidents: tuple[Incident, ...] = ()


EVENTS_PER_VISIT = 13.0  # about, in the simulated shop's traffic


def visits_for_events(events: int, days: int) -> int:
    """The visits a day that give about ``events`` tracker events over ``days`` days."""
    return max(1, round(events / EVENTS_PER_VISIT / days))


@dataclass
class Device:
    visitor_id: str
    device_type: str
    user_agent: str
    screen: str
    viewport: str
    ip: str
    clock_skew: timedelta
    blocked: bool
    last_end: datetime | None = None
    consented: bool = False
    identified: bool = False


@dataclass
class Person:
    person_id: int
    place: tuple
    loyalty: float
    devices: list[Device] = field(default_factory=list)
    user_id: str | None = None
    buyer_bias: float = 1.0


@dataclass
class Output:
    """What the simulator yields, in order, for the writers."""

    kind: str  # "event" (landing record), "log" (access log line), or a truth table name
    at: datetime  # release order key
    data: object


class Simulator:
    def __init__(self, config: SimulationConfig) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        # Reloads and the visits a rule splits draw from a stream of their own (_side_stream),
        # so adding them left every other visit of a seed as it was.
        self.side_rng = random.Random(f"{config.seed}/side")
        # Incidents draw from a stream of their own too: without them, nothing changes.
        self.incident_rng = random.Random(f"{config.seed}/incidents")
        self.tz = ZoneInfo(config.site_timezone)
        self.incidents = tuple(config.incidents)
        self._incident_windows = [i.window_utc(self.tz) for i in self.incidents]
        self.incident_affected = [0] * len(self.incidents)  # see incidents.truth_rows
        self.products = cat.products()
        # A bounded pool of people who may return: memory stays flat however long the run.
        self.people: list[Person] = []
        self._people_seen = 0
        self._devices_per_place: dict[str, int] = {}
        self._source_weights = [s[1] for s in cat.SOURCES]
        self._device_weights = [d[1] for d in cat.DEVICES]
        self._place_weights = [p[1] for p in cat.PLACES]
        self._landing: list = []  # heap of (received_at, seq, record)
        self._log: list = []  # heap of (request time, seq, line)
        self._seq = 0
        self.stats = {
            "visits": 0, "human_visits": 0, "bot_visits": 0, "blocked_visits": 0,
            "page_views": 0, "events": 0, "landing_records": 0, "duplicates": 0,
            "late_events": 0, "log_lines": 0, "transactions": 0, "revenue": 0.0,
            "reloads": 0, "rule_visits": 0,
        }  # fmt: skip

    # -- ids and helpers --------------------------------------------------------------------
    @contextmanager
    def _side_stream(self) -> Iterator[None]:
        """Draw from the side stream (self.rng is it meanwhile)."""
        self.rng, self.side_rng = self.side_rng, self.rng
        try:
            yield
        finally:
            self.rng, self.side_rng = self.side_rng, self.rng

    @contextmanager
    def _incident_stream(self) -> Iterator[None]:
        """Draw from the incidents' stream (self.rng is it meanwhile)."""
        self.rng, self.incident_rng = self.incident_rng, self.rng
        try:
            yield
        finally:
            self.rng, self.incident_rng = self.incident_rng, self.rng

    def _incident(self, kind: str, at: datetime) -> int | None:
        """The index of the incident of ``kind`` going on at ``at`` (UTC), if any."""
        for index, incident in enumerate(self.incidents):
            start, end = self._incident_windows[index]
            if incident.kind == kind and start <= at < end:
                return index
        return None

    def incident_truth(self) -> list[dict]:
        """The ground truth of the incidents (truth/incidents.csv), complete after run()."""
        return truth_rows(self.incidents, self.cfg.site_id, self.tz, self.incident_affected)

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _iso(self, ts: datetime) -> str:
        return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _url(self, path: str, query: dict | None = None) -> str:
        return f"https://{self.cfg.host}{path}" + (f"?{urlencode(query)}" if query else "")

    def _new_device(self, place: tuple) -> Device:
        kind, _, ua, screen, viewport = self.rng.choices(cat.DEVICES, self._device_weights)[0]
        # Logfile hits are sessionised by IP + user agent, so a device's address is unique:
        # taken from a per-country counter over its /16 prefixes (65,024 hosts each). The
        # space is reused only after every address of the country was handed out once.
        n = self._devices_per_place.get(place[0], 0)
        self._devices_per_place[place[0]] = n + 1
        prefixes = place[4]
        prefix = prefixes[(n // 65_024) % len(prefixes)]
        host = n % 65_024
        ip = f"{prefix}.{host // 254}.{host % 254 + 1}"
        skew = timedelta(seconds=self.rng.gauss(0, 20))
        if self.rng.random() < self.cfg.skewed_clock_share:
            skew = timedelta(minutes=self.rng.choice([-1, 1]) * self.rng.uniform(5, 300))
        return Device(
            visitor_id=self._uuid(), device_type=kind, user_agent=ua, screen=screen,
            viewport=viewport, ip=ip, clock_skew=skew,
            blocked=self.rng.random() < self.cfg.blocked_share,
        )  # fmt: skip

    def _new_person(self) -> Person:
        place = self.rng.choices(cat.PLACES, self._place_weights)[0]
        self._people_seen += 1
        person = Person(
            person_id=self._people_seen,
            place=place,
            loyalty=self.rng.betavariate(1.2, 3.0),
            buyer_bias=self.rng.uniform(0.5, 2.0),
        )
        if self.rng.random() < 0.12:  # existing customers from before the simulated period
            person.user_id = f"cust-{person.person_id:07d}"
        person.devices.append(self._new_device(place))
        if len(self.people) < self.cfg.population:
            self.people.append(person)
        else:
            self.people[self._people_seen % self.cfg.population] = person
        return person

    def _pick_device(self, start: datetime) -> tuple[Person, Device]:
        """A returning visitor (by loyalty) or a new one, on a device free at ``start``."""
        rng = self.rng
        returning_share = min(0.45, 0.1 + 0.004 * self._people_seen**0.5)
        for _ in range(8):
            if not self.people or rng.random() >= returning_share:
                break
            person = rng.choice(self.people)
            if rng.random() > person.loyalty:
                continue
            if len(person.devices) < 3 and rng.random() < 0.06:
                person.devices.append(self._new_device(person.place))
            device = rng.choice(person.devices)
            if device.last_end is None or start - device.last_end >= MIN_GAP:
                return person, device
        person = self._new_person()
        return person, person.devices[0]

    # -- emitting ---------------------------------------------------------------------------
    def _push_log(self, at: datetime, ip: str, method: str, path: str, status: int, size: int,
                  referrer: str | None, ua: str) -> None:  # fmt: skip
        local = at.astimezone(self.tz)
        stamp = local.strftime("%d/%b/%Y:%H:%M:%S %z")
        line = (
            f'{ip} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} '
            f'"{referrer or "-"}" "{ua}"'
        )
        self._seq += 1
        heapq.heappush(self._log, (at, self._seq, line))
        self.stats["log_lines"] += 1

    def _push_event(self, device: Device, visit: dict, at: datetime, etype: str,
                    fields: dict, delay: timedelta | None = None) -> None:  # fmt: skip
        """One tracker event: what the collector would land for it."""
        rng = self.rng
        send_at = at + timedelta(milliseconds=rng.randint(50, 1500))
        if delay is not None:
            send_at = at + delay
            self.stats["late_events"] += 1
        received = send_at + timedelta(milliseconds=rng.randint(20, 250))
        record = {
            "event_id": self._uuid(),
            "type": etype,
            "site_id": self.cfg.site_id,
            "visitor_id": device.visitor_id,
            "session_id": visit["session_id"],
            "occurred_at": self._iso(at + device.clock_skew),
            "sent_at": self._iso(send_at + device.clock_skew),
            "received_at": self._iso(received),
            "user_agent": device.user_agent,
            "ip": device.ip,
            **fields,
        }
        self._seq += 1
        heapq.heappush(self._landing, (received, self._seq, record))
        self.stats["events"] += 1
        if rng.random() < self.cfg.retry_share:
            retry_at = received + timedelta(seconds=rng.randint(2, 60))
            self._seq += 1
            # A resend is a new request: the tracker stamps a new sent_at on it.
            resent = dict(record, received_at=self._iso(retry_at))
            resent["sent_at"] = self._iso(send_at + (retry_at - received) + device.clock_skew)
            heapq.heappush(self._landing, (retry_at, self._seq, resent))
            self.stats["duplicates"] += 1

    def _release(self, before: datetime | None) -> Iterator[Output]:
        for heap, kind in ((self._landing, "event"), (self._log, "log")):
            while heap and (before is None or heap[0][0] < before):
                at, _, data = heapq.heappop(heap)
                if kind == "event":
                    self.stats["landing_records"] += 1
                yield Output(kind, at, data)

    # -- one human visit ----------------------------------------------------------------------
    def _page_path(self, kind: str, product: dict | None = None) -> tuple[str, str]:
        if kind == "home":
            return "/", "Demo Shop"
        if kind == "category":
            category = product["category"] if product else self.rng.choice(cat.CATEGORIES)
            return f"/c/{category}", f"{category.title()} | Demo Shop"
        if kind == "product":
            return f"/p/{product['slug']}", f"{product['name']} | Demo Shop"
        if kind == "search":
            return "/search", "Search | Demo Shop"
        if kind == "blog":
            n = self.rng.randint(1, 12)
            return f"/blog/post-{n}", f"Blog post {n} | Demo Shop"
        if kind == "login":
            return "/login", "Sign in | Demo Shop"
        if kind == "notfound":
            return f"/p/discontinued-{self.rng.randint(1, 50)}", "Page not found | Demo Shop"
        return kind, kind.strip("/").replace("/", " ").title() + " | Demo Shop"

    def _plan_pages(self, person: Person, channel: str) -> list[tuple]:
        """The ordered pages of a visit and what happens on them."""
        rng = self.rng
        intent_roll = rng.random() / person.buyer_bias
        if channel == "email":
            intent_roll *= 0.7
        intent = "buy" if intent_roll < 0.09 else ("bounce" if intent_roll > 0.62 else "browse")
        favourite = rng.choice(self.products)
        pages: list[tuple] = []  # (path, title, status, actions)
        landing_kind = rng.choices(
            ["home", "category", "product", "blog", "notfound"],
            {
                "direct": [70, 10, 15, 4, 1],
                "organic_search": [25, 20, 40, 14, 1],
                "paid_search": [20, 30, 50, 0, 0],
                "email": [10, 50, 40, 0, 0],
            }.get(channel, [25, 30, 40, 4, 1]),
        )[0]
        path, title = self._page_path(landing_kind, favourite)
        pages.append((path, title, 404 if landing_kind == "notfound" else 200, []))
        if intent == "bounce" or (landing_kind == "notfound" and rng.random() < 0.7):
            return pages
        cart: list[tuple[dict, int]] = []
        n_browse = rng.randint(1, 7)
        for _ in range(n_browse):
            kind = rng.choices(["category", "product", "search", "home", "blog"],
                               [25, 50, 12, 8, 5])[0]  # fmt: skip
            product = favourite if rng.random() < 0.3 else rng.choice(self.products)
            if kind == "product":
                favourite = product
            path, title = self._page_path(kind, product)
            actions = []
            if kind == "product" and (intent == "buy" or rng.random() < 0.12):
                qty = 1 if rng.random() < 0.85 else 2
                cart.append((product, qty))
                actions.append(("add_to_cart", product, qty))
            elif kind != "product" and rng.random() < 0.04:
                actions.append(("custom", rng.choice(cat.EVENT_KINDS)))
            pages.append((path, title, 200, actions))
        if intent == "buy" and not cart:
            qty = 1
            cart.append((favourite, qty))
            path, title = self._page_path("product", favourite)
            pages.append((path, title, 200, [("add_to_cart", favourite, qty)]))
        login_wanted = person.user_id is not None and rng.random() < (
            0.7 if intent == "buy" else 0.15
        )
        if login_wanted and intent != "buy":
            path, title = self._page_path("login")
            pages.append((path, title, 200, [("identify",)]))
        if not cart:
            return pages
        go_on = [0.55 if intent == "browse" else 1.0, 0.7, 0.72, 0.82]
        for step, path in enumerate(FUNNEL):
            if rng.random() >= go_on[step]:
                break
            if step == 1 and login_wanted:
                lpath, ltitle = self._page_path("login")
                pages.append((lpath, ltitle, 200, [("identify",)]))
            actions = []
            if path == "/checkout/complete":
                actions.append(("transaction", list(cart)))
                if person.user_id is None and rng.random() < 0.3:
                    actions.append(("signup",))
            pages.append((path, self._page_path(path)[1], 200, actions))
        return pages

    def _visit(self, start: datetime, person: Person, device: Device,
               source: tuple | None = None) -> Iterator[Output]:  # fmt: skip
        """A person's visit; ``source`` (as in ``catalogue.SOURCES``) when it is given."""
        rng = self.rng
        cfg = self.cfg
        channel, _, referrer, utm = source or rng.choices(cat.SOURCES, self._source_weights)[0]
        pages = self._plan_pages(person, channel)
        visit = {"session_id": self._uuid()}
        tracked = not device.blocked
        offline = tracked and rng.random() < cfg.offline_share
        lang, tz = person.place[2], person.place[3]
        now = start
        last_at = start
        engaged_total = 0
        prev_url = referrer
        page_views = 0
        revenue = 0.0
        orders = []
        funnel_step = 0
        first_path = last_path = None
        identified_user = None
        for index, (path, title, status, actions) in enumerate(pages):
            outage = self._incident("checkout_outage", now) if path == FUNNEL[3] else None
            if outage is not None:  # paid on a page loaded before the outage: fails too
                last_at = max(last_at, self._failed_payments(device, visit, prev_url, now,
                                                             tracked))  # fmt: skip
                self.incident_affected[outage] += 1
                break
            query = dict(utm) if (index == 0 and utm) else None
            if path == "/search":
                query = {"q": rng.choice(["jacket", "shoes", "gift", "wool socks", "watch"])}
            url = self._url(path, query)
            full_path = path + (f"?{urlencode(query)}" if query else "")
            size = rng.randint(8_000, 60_000) if status == 200 else 1_532
            self._push_log(now, device.ip, "GET", full_path, status, size, prev_url,
                           device.user_agent)  # fmt: skip
            if index == 0 or rng.random() < 0.05:
                for asset in cat.STATIC_ASSETS:
                    self._push_log(now + timedelta(milliseconds=rng.randint(80, 600)),
                                   device.ip, "GET", asset, 200, rng.randint(2_000, 90_000),
                                   url, device.user_agent)  # fmt: skip
            page_views += 1
            first_path = first_path or path
            last_path = path
            if path in FUNNEL:
                funnel_step = max(funnel_step, FUNNEL.index(path) + 1)
            dwell = min(timedelta(seconds=rng.lognormvariate(3.6, 0.9)), timedelta(minutes=20))
            is_last = index == len(pages) - 1
            delay = timedelta(hours=rng.uniform(1, 30)) if offline and is_last else None
            if tracked:
                slow = 1.8 if device.device_type == "mobile" else 1.0
                ttfb = int(rng.lognormvariate(5.0, 0.5) * slow)
                perf = {
                    "dns_ms": rng.randint(0, 40), "connect_ms": rng.randint(5, 90),
                    "ttfb_ms": ttfb,
                    "dom_interactive_ms": ttfb + int(rng.lognormvariate(6.4, 0.4) * slow),
                    "load_ms": ttfb + int(rng.lognormvariate(7.0, 0.4) * slow),
                }  # fmt: skip
                regression = self._incident("page_speed_regression", now)
                if regression is not None:  # a heavier page: slower after the first byte
                    factor = self.incidents[regression].factor
                    for key in ("dom_interactive_ms", "load_ms"):
                        perf[key] = ttfb + int((perf[key] - ttfb) * factor)
                    self.incident_affected[regression] += 1
                if index == 0 and not device.consented:
                    device.consented = True
                    self._push_event(device, visit, now, "consent",
                                     {"url": url, "granted": True}, delay)  # fmt: skip
                self._push_event(device, visit, now, "page_view", {
                    "url": url, "referrer": prev_url, "title": title, "performance": perf,
                    "screen": device.screen, "viewport": device.viewport, "language": lang,
                    "timezone": tz,
                    "connection": "4g" if device.device_type == "mobile" else "wifi",
                }, delay)  # fmt: skip
            t = now
            if index > 0 and status == 200 and self.side_rng.random() < cfg.reload_share:
                # A quick reload: the same URL again within ~2 s, a log line and a page view
                # each (two views near two hits: the warehouse must match them one to one).
                with self._side_stream():
                    t = now + timedelta(seconds=self.rng.uniform(0.8, 2.0))
                    self._push_log(t, device.ip, "GET", full_path, status, size, prev_url,
                                   device.user_agent)  # fmt: skip
                    if tracked:
                        self._push_event(device, visit, t, "page_view", {
                            "url": url, "referrer": prev_url, "title": title,
                            "performance": perf, "screen": device.screen,
                            "viewport": device.viewport, "language": lang, "timezone": tz,
                            "connection": "4g" if device.device_type == "mobile" else "wifi",
                        }, delay)  # fmt: skip
                page_views += 1
                self.stats["reloads"] += 1
            for action in actions:
                t += timedelta(seconds=rng.randint(3, 20))
                if action[0] == "identify" or action[0] == "signup":
                    if action[0] == "signup":
                        person.user_id = f"cust-{person.person_id:07d}"
                    if tracked:
                        identified_user = person.user_id
                        self._push_event(device, visit, t, "identify", {
                            "url": url, "user_id": person.user_id,
                            "traits": {"signup": action[0] == "signup"},
                        }, delay)  # fmt: skip
                    if tracked and not device.identified:
                        device.identified = True
                        yield Output("identities", t, {
                            "visitor_id": device.visitor_id, "user_id": person.user_id,
                            "first_identified_at": self._iso(t),
                        })  # fmt: skip
                elif action[0] == "add_to_cart" and tracked:
                    _, product, qty = action
                    self._push_event(device, visit, t, "event", {
                        "url": url, "category": "ecommerce", "action": "add_to_cart",
                        "label": product["sku"], "value": round(product["price"] * qty, 2),
                        "properties": {"quantity": qty},
                    }, delay)  # fmt: skip
                elif action[0] == "custom" and tracked:
                    category, act = action[1]
                    self._push_event(device, visit, t, "event", {
                        "url": url, "category": category, "action": act, "label": None,
                        "value": None, "properties": {},
                    }, delay)  # fmt: skip
                elif action[0] == "transaction":
                    order_id = f"ORD-{self.stats['transactions'] + 1:08d}"
                    items = [
                        {"sku": p["sku"], "name": p["name"], "category": p["category"],
                         "price": p["price"], "quantity": q}
                        for p, q in action[1]
                    ]  # fmt: skip
                    subtotal = round(sum(i["price"] * i["quantity"] for i in items), 2)
                    shipping = 0.0 if subtotal >= 50 else 4.9
                    total = round(subtotal + shipping, 2)
                    tax = round(total - total / 1.19, 2)
                    if tracked:
                        self._push_event(device, visit, t, "transaction", {
                            "url": url, "order_id": order_id, "revenue": total,
                            "shipping": shipping, "tax": tax, "currency": "EUR",
                            "items": items,
                        }, delay)  # fmt: skip
                    self.stats["transactions"] += 1
                    self.stats["revenue"] = round(self.stats["revenue"] + total, 2)
                    revenue = round(revenue + total, 2)
                    orders.append(order_id)
                    yield Output("transactions", t, {
                        "order_id": order_id, "session_id": visit["session_id"],
                        "visitor_id": device.visitor_id, "person_id": person.person_id,
                        "user_id": person.user_id, "ordered_at": self._iso(t),
                        "revenue": total, "shipping": shipping, "tax": tax,
                        "items": len(items), "quantity": sum(i["quantity"] for i in items),
                        "tracked": tracked,
                    })  # fmt: skip
                    for line_no, item in enumerate(items, start=1):
                        yield Output("transaction_items", t, {
                            "order_id": order_id, "line": line_no, "sku": item["sku"],
                            "category": item["category"], "price": item["price"],
                            "quantity": item["quantity"],
                        })  # fmt: skip
            outage = self._incident("checkout_outage", now) if path == FUNNEL[2] else None
            if outage is not None:  # the payment page loads, paying fails
                t = self._failed_payments(device, visit, url, t, tracked)
                self.incident_affected[outage] += 1
            # Heartbeats: one page_ping per 15 s of engaged time (at most 8 per page).
            pings = min(int(dwell.total_seconds() * rng.uniform(0.3, 0.9) // 15), 8)
            page_end = t
            if tracked:
                for k in range(1, pings + 1):
                    page_end = max(page_end, now + timedelta(seconds=15 * k))
                    self._push_event(device, visit, now + timedelta(seconds=15 * k),
                                     "page_ping", {"url": url, "engaged_seconds": 15},
                                     delay)  # fmt: skip
                engaged_total += 15 * pings
            last_at = max(last_at, page_end)
            prev_url = url
            now = max(page_end, now + dwell)
            if outage is not None:  # no order can be placed: the visitor gives up
                break
        device.last_end = last_at
        self.stats["page_views"] += page_views
        yield Output("sessions", start, {
            "session_id": visit["session_id"], "site_id": cfg.site_id,
            "visitor_id": device.visitor_id, "person_id": person.person_id,
            "user_id": identified_user, "started_at": self._iso(start),
            "ended_at": self._iso(last_at), "engaged_seconds": engaged_total,
            "page_views": page_views, "channel": channel,
            "campaign": (utm or {}).get("utm_campaign"), "referrer": referrer,
            "landing_path": first_path, "exit_path": last_path,
            "device_type": device.device_type, "country": person.place[0],
            "is_bot": False, "tracked": tracked, "transactions": len(orders),
            "revenue": revenue, "funnel_step": funnel_step, "part": 0,
        })  # fmt: skip

    def _failed_payments(self, device: Device, visit: dict, url: str, at: datetime,
                         tracked: bool) -> datetime:  # fmt: skip
        """A checkout outage, on the payment page ``url``: placing the order answers 5xx,
        the page reports it, the visitor tries again once or twice. Returns the last
        attempt's time."""
        with self._incident_stream():
            for _ in range(self.rng.randint(2, 3)):
                at += timedelta(seconds=self.rng.randint(5, 40))
                self._push_log(at, device.ip, "POST", FUNNEL[2], OUTAGE_STATUS, 612, url,
                               device.user_agent)  # fmt: skip
                if tracked:
                    self._push_event(device, visit, at, "event", {
                        "url": url, "category": "ecommerce", "action": "payment_failed",
                        "label": str(OUTAGE_STATUS), "value": None, "properties": {},
                    })  # fmt: skip
        return at

    # -- bots -----------------------------------------------------------------------------------
    def _sneaky_bot(self, start: datetime) -> Iterator[Output]:
        rng = self.rng
        ua = rng.choice(cat.SNEAKY_BOTS)
        device = Device(
            visitor_id=self._uuid(), device_type="desktop", user_agent=ua, screen="800x600",
            viewport="800x600", ip=f"34.120.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            clock_skew=timedelta(0), blocked=False,
        )  # fmt: skip
        visit = {"session_id": self._uuid()}
        now = last = start
        n = rng.randint(15, 60)
        for _ in range(n):
            last = now
            product = rng.choice(self.products)
            path = f"/p/{product['slug']}"
            url = self._url(path)
            self._push_log(now, device.ip, "GET", path, 200, rng.randint(8_000, 60_000), None, ua)
            self._push_event(device, visit, now, "page_view",
                             {"url": url, "referrer": None, "title": product["name"]})  # fmt: skip
            now += timedelta(seconds=rng.uniform(0.5, 4))
        yield Output("sessions", start, {
            "session_id": visit["session_id"], "site_id": self.cfg.site_id,
            "visitor_id": device.visitor_id, "person_id": None, "user_id": None,
            "started_at": self._iso(start), "ended_at": self._iso(last),
            "engaged_seconds": 0, "page_views": n, "channel": "direct",
            "campaign": None, "referrer": None, "landing_path": None, "exit_path": None,
            "device_type": "desktop", "country": None, "is_bot": True, "tracked": True,
            "transactions": 0, "revenue": 0.0, "funnel_step": 0, "part": 0,
        })  # fmt: skip

    # -- visits a rule splits ---------------------------------------------------------------
    def _rule_visit(self, kind: str, start: datetime) -> Iterator[Output]:
        """A visit of browsing pages only (no cart, login or order) that a visit rule splits:
        'campaign' - a newsletter link followed after three pages: a new visit from it;
        'long' - a tab reloaded every 20 minutes for over max_session_hours: cut at that
        length; 'midnight' - pages before and after local midnight: two visits when the
        site splits at midnight. Page times keep well clear of each boundary, so the
        collector's clock (a fraction of a second later) puts every page on the same side.
        One truth row per visit the warehouse is to build, numbered by ``part``."""
        with self._side_stream():
            pages, device, place, visit = self._rule_pages(kind, start)
        self.stats["page_views"] += len(pages)
        self.stats["rule_visits"] += 1
        for number in range(pages[-1][5] + 1):
            own = [p for p in pages if p[5] == number]
            campaign = (own[0][3] or {}).get("utm_campaign")
            if number > 0:  # counted once per visit the warehouse builds
                self.stats["visits"] += 1
                self.stats["human_visits"] += 1
            yield Output("sessions", own[0][0], {
                "session_id": visit["session_id"], "site_id": self.cfg.site_id,
                "visitor_id": device.visitor_id, "person_id": None,
                "user_id": None, "started_at": self._iso(own[0][0]),
                "ended_at": self._iso(own[-1][0]), "engaged_seconds": 0,
                "page_views": len(own), "channel": "email" if campaign else "direct",
                "campaign": campaign, "referrer": None, "landing_path": own[0][1],
                "exit_path": own[-1][1], "device_type": device.device_type,
                "country": place[0], "is_bot": False, "tracked": True,
                "transactions": 0, "revenue": 0.0, "funnel_step": 0, "part": number,
            })  # fmt: skip

    def _rule_pages(self, kind: str, start: datetime) -> tuple[list, Device, tuple, dict]:
        """The pages of a rule visit, emitted, on a new device of a new person who does not
        come back: (at, path, title, query, referrer, part) each."""
        rng = self.rng
        cfg = self.cfg
        place = rng.choices(cat.PLACES, self._place_weights)[0]
        device = self._new_device(place)
        device.blocked = False
        visit = {"session_id": self._uuid()}
        cap = timedelta(hours=cfg.max_session_hours)
        minutes: list[float]
        if kind == "campaign":
            minutes = [0, 2, 4, 6, 8, 10]
        elif kind == "long":
            whole = cap + timedelta(minutes=50)
            minutes = [0] + [20 * k + 7 for k in range(1, int(whole.total_seconds() // 1200))]
        else:
            minutes = [0, 7, 14, 26, 33]
        utm = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly_digest"}
        pages = []  # (at, path, title, query, referrer, part)
        prev_url = None
        part = 0
        local_day = start.astimezone(self.tz).date()
        for index, minute in enumerate(minutes):
            at = start + timedelta(minutes=minute, seconds=rng.uniform(0, 20))
            query = None
            if kind == "campaign" and index == 3:
                query, prev_url, part = utm, None, 1  # opened from the newsletter
            elif kind == "long" and at - start >= cap:
                part = 1
            elif kind == "midnight" and cfg.split_at_midnight:
                part = int(at.astimezone(self.tz).date() != local_day)
            product = rng.choice(self.products)
            page_kind = rng.choice(["category", "product", "blog"]) if index else "home"
            path, title = self._page_path(page_kind, product)
            pages.append((at, path, title, query, prev_url, part))
            prev_url = self._url(path, query)
        for at, path, title, query, referrer, _ in pages:
            url = self._url(path, query)
            full_path = path + (f"?{urlencode(query)}" if query else "")
            self._push_log(at, device.ip, "GET", full_path, 200, rng.randint(8_000, 60_000),
                           referrer, device.user_agent)  # fmt: skip
            if not device.consented:
                device.consented = True
                self._push_event(device, visit, at, "consent", {"url": url, "granted": True})
            self._push_event(device, visit, at, "page_view", {
                "url": url, "referrer": referrer, "title": title, "screen": device.screen,
                "viewport": device.viewport, "language": place[2], "timezone": place[3],
            })  # fmt: skip
        device.last_end = pages[-1][0]
        return pages, device, place, visit

    def _crawler_hits(self, day_start: datetime) -> None:
        """Declared crawlers and scanners: log only (they run no JavaScript)."""
        rng = self.rng
        for _ in range(self.cfg.crawler_hits_per_day):
            at = day_start + timedelta(seconds=rng.uniform(0, 86_399))
            ua = rng.choice(cat.DECLARED_CRAWLERS)
            ip = f"66.249.{rng.randint(64, 79)}.{rng.randint(1, 254)}"
            if rng.random() < 0.05:
                self._push_log(at, ip, "GET", "/robots.txt", 200, 120, None, ua)
            else:
                product = rng.choice(self.products)
                self._push_log(at, ip, "GET", f"/p/{product['slug']}", 200,
                               rng.randint(8_000, 60_000), None, ua)  # fmt: skip
        for _ in range(self.cfg.scanner_hits_per_day):
            at = day_start + timedelta(seconds=rng.uniform(0, 86_399))
            ip = f"45.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
            self._push_log(at, ip, rng.choice(["GET", "POST"]), rng.choice(cat.SCANNER_PATHS),
                           404, 162, None, "python-requests/2.31.0")  # fmt: skip

    # -- incidents that add traffic --------------------------------------------------------
    def _incident_hours(self, kind: str, day_start: datetime) -> Iterator[tuple]:
        """(incident index, start, seconds) of each ``kind`` incident's part in the local
        day that starts at ``day_start``."""
        day_end = day_start + timedelta(days=1)  # wall-clock arithmetic: the next midnight
        lo, hi = day_start.astimezone(UTC), day_end.astimezone(UTC)
        for index, incident in enumerate(self.incidents):
            start, end = self._incident_windows[index]
            start, end = max(start, lo), min(end, hi)
            if incident.kind == kind and start < end:
                yield index, start, (end - start).total_seconds()

    def _spike_visits(self, day_start: datetime) -> list[tuple[datetime, str]]:
        """The start times of a campaign spike's extra visits on this day."""
        planned = []
        hourly = self.cfg.visits_per_day / 24
        with self._incident_stream():
            for index, start, seconds in self._incident_hours("campaign_spike", day_start):
                n = round(self.incidents[index].factor * hourly * seconds / 3600)
                for _ in range(n):
                    planned.append((start + timedelta(seconds=self.rng.uniform(0, seconds)),
                                    "spike"))  # fmt: skip
                self.incident_affected[index] += n
        return planned

    def _flood_hits(self, day_start: datetime) -> None:
        """A bot flood's requests on this day: a scraper walking the shop's pages fast from
        a few addresses, in the access log only."""
        hourly = self.cfg.visits_per_day / 24
        with self._incident_stream():
            rng = self.rng
            for index, start, seconds in self._incident_hours("bot_flood", day_start):
                n = round(self.incidents[index].factor * hourly * seconds / 3600)
                for _ in range(n):
                    at = start + timedelta(seconds=rng.uniform(0, seconds))
                    ip = f"{FLOOD_NETWORK}.{rng.randint(1, 8)}"
                    product = rng.choice(self.products)
                    kind = rng.choices(["product", "category", "search"], [70, 20, 10])[0]
                    path = self._page_path(kind, product)[0]
                    if kind == "search":
                        path += "?" + urlencode({"q": product["name"].split()[1].lower()})
                    self._push_log(at, ip, "GET", path, 200, rng.randint(8_000, 60_000), None,
                                   FLOOD_USER_AGENT)  # fmt: skip
                self.incident_affected[index] += n

    # -- the run --------------------------------------------------------------------------------
    def run(self) -> Iterator[Output]:
        """Every output in release order; truth rows as their visits complete."""
        rng = self.rng
        cfg = self.cfg
        for day in range(cfg.days):
            local_day = cfg.start + timedelta(days=day)
            day_start = datetime(local_day.year, local_day.month, local_day.day, tzinfo=self.tz)
            factor = WEEKDAY_FACTOR[local_day.weekday()] * rng.gauss(1.0, 0.05)
            n_visits = max(1, int(cfg.visits_per_day * factor))
            starts = []
            for _ in range(n_visits):
                hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
                offset = timedelta(hours=hour, seconds=rng.uniform(0, 3599.999))
                # Add in UTC so the DST change day still maps every local instant once.
                starts.append(day_start.astimezone(UTC) + offset)
            planned = [(start, "") for start in starts]
            if cfg.rule_visits:
                for kind, hour, minute in (("long", 7, 30), ("campaign", 14, 0),
                                           ("midnight", 23, 40)):  # fmt: skip
                    local = datetime(local_day.year, local_day.month, local_day.day, hour,
                                     minute, tzinfo=self.tz)  # fmt: skip
                    planned.append((local.astimezone(UTC), kind))
            planned += self._spike_visits(day_start)
            planned.sort()
            self._crawler_hits(day_start.astimezone(UTC))
            self._flood_hits(day_start)
            for start, kind in planned:
                yield from self._release(start)
                self.stats["visits"] += 1
                if kind == "spike":
                    self.stats["human_visits"] += 1
                    with self._incident_stream():
                        person, device = self._pick_device(start)
                        if device.blocked:
                            self.stats["blocked_visits"] += 1
                        yield from self._visit(start, person, device, SPIKE_SOURCE)
                    continue
                if kind:
                    self.stats["human_visits"] += 1
                    yield from self._rule_visit(kind, start)
                    continue
                if rng.random() < cfg.sneaky_bot_share:
                    self.stats["bot_visits"] += 1
                    yield from self._sneaky_bot(start)
                    continue
                person, device = self._pick_device(start)
                self.stats["human_visits"] += 1
                if device.blocked:
                    self.stats["blocked_visits"] += 1
                yield from self._visit(start, person, device)
        yield from self._release(None)
