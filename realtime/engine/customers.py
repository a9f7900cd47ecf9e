"""Customer state from the warehouse: the CRM datamart row and back-office attributes.

Fetched when a visit starts (and when a visitor logs in), off the request path, and cached
per visitor with a TTL (``SITELINE_CUSTOMER_TTL`` seconds, default 300). When the warehouse
cannot be reached the engine keeps serving: cached states are returned with
``stale: true``, unknown ones as ``status: "unavailable"``, and the warehouse is not asked
again for ``RETRY_AFTER`` seconds, so a dead warehouse costs no latency.

Reads ``web.dim_visitors`` (visitor id → customer key), ``crm.customers`` and
``crm.customer_attributes``; the engine needs only ``select`` on them (``bi_reader`` is
enough: ``SITELINE_ENGINE_WAREHOUSE_URL``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal

from ingestion.core.settings import settings

log = logging.getLogger("siteline.engine.customers")

RETRY_AFTER = 10.0
MAX_PENDING = 1000  # fetches queued at most; more visits starting at once wait to be asked
CUSTOMER_FIELDS = (
    "customer_key", "is_identified", "user_id", "visitor_ids", "first_seen_at", "last_seen_at",
    "visits", "page_views", "engaged_seconds", "goal_conversions", "transactions", "revenue",
    "average_order_value", "first_transaction_at", "last_transaction_at",
    "days_since_last_visit", "recency_score", "frequency_score", "monetary_score",
    "rfm_segment", "first_touch_channel_id", "first_touch_campaign", "last_touch_channel_id",
    "last_touch_campaign",
)  # fmt: skip
_CUSTOMER_SQL = f"""
select {", ".join("c." + f for f in CUSTOMER_FIELDS)}
from crm.customers as c
where c.site_id = %(site)s and c.customer_key = coalesce(
    %(user)s,
    (select v.customer_key from web.dim_visitors as v
     where v.site_id = %(site)s and v.visitor_id = %(visitor)s),
    %(visitor)s
)
"""
_ATTRIBUTES_SQL = """
select attribute_name, attribute_value, updated_at
from crm.customer_attributes
where site_id = %(site)s and customer_key = %(key)s
order by attribute_name
"""


def _plain(value):
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class CustomerStates:
    """Cache of customer states keyed by (site, user id or visitor id)."""

    def __init__(
        self,
        url: str | None,
        ttl: float | None = None,
        max_entries: int = 200_000,
        on_update=None,
    ) -> None:
        self.url = url
        self.ttl = ttl if ttl is not None else settings().customer_ttl
        self.max_entries = max_entries
        self.on_update = on_update  # called (site, visitor, state) after a fetch
        self._cache: OrderedDict[tuple, dict] = OrderedDict()
        self._pending: set[tuple] = set()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="customer-state")
        self._local = threading.local()
        self.down_until = 0.0
        self.failing = False  # the last fetch failed
        self.counters = {"fetches": 0, "hits": 0, "failures": 0, "deferred": 0}

    # -- reading ----------------------------------------------------------------------------------
    @staticmethod
    def key(site_id: str, visitor_id: str, user_id: str | None) -> tuple:
        return (site_id, "u", user_id) if user_id else (site_id, "v", visitor_id)

    def peek(self, site_id: str, visitor_id: str, user_id: str | None) -> dict | None:
        """The cached state (marked stale when older than the TTL), or None."""
        key = self.key(site_id, visitor_id, user_id)
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return None
        self.counters["hits"] += 1
        age = time.time() - entry["_fetched"]
        state = {k: v for k, v in entry.items() if not k.startswith("_")}
        state["stale"] = bool(entry["_failed"]) or age > self.ttl
        return state

    def want(self, site_id: str, visitor_id: str, user_id: str | None) -> None:
        """Fetch in the background unless cached and fresh or already being fetched."""
        key = self.key(site_id, visitor_id, user_id)
        now = time.time()
        with self._lock:
            entry = self._cache.get(key)
            fresh = entry is not None and now - entry["_fetched"] <= self.ttl
            if fresh or key in self._pending or self.url is None:
                return
            if now < self.down_until or (self.failing and self._pending):
                return  # the warehouse is down: serve what we have; one probe at a time
            if len(self._pending) >= MAX_PENDING:
                self.counters["deferred"] += 1  # a burst: fetched when someone asks
                return
            self._pending.add(key)
        self._pool.submit(self._fetch, key, site_id, visitor_id, user_id)

    def get(self, site_id: str, visitor_id: str, user_id: str | None, timeout: float = 2.0):
        """The state now: cached, else fetched (waiting at most ``timeout``)."""
        state = self.peek(site_id, visitor_id, user_id)
        if state is not None and not state["stale"]:
            return state
        if self.url is None:
            return state or {"status": "unavailable", "reason": "no warehouse configured"}
        if time.time() < self.down_until:
            return state or {"status": "unavailable", "reason": "warehouse unreachable"}
        future = self._pool.submit(
            self._fetch, self.key(site_id, visitor_id, user_id), site_id, visitor_id, user_id
        )
        with contextlib.suppress(Exception):  # a failed fetch is recorded by _fetch
            future.result(timeout)
        return self.peek(site_id, visitor_id, user_id) or {
            "status": "unavailable",
            "reason": "warehouse unreachable",
        }

    # -- fetching ---------------------------------------------------------------------------------
    def _connection(self):
        import psycopg

        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=2,
                options="-c statement_timeout=2000 -c default_transaction_read_only=on",
                application_name="siteline-engine",
            )
            self._local.conn = conn
        return conn

    def _fetch(self, key: tuple, site_id: str, visitor_id: str, user_id: str | None) -> None:
        import psycopg

        if time.time() < self.down_until:  # queued before the warehouse went away
            with self._lock:
                self._pending.discard(key)
            return
        self.counters["fetches"] += 1
        try:
            conn = self._connection()
            with conn.cursor() as cur:
                params = {"site": site_id, "user": user_id, "visitor": visitor_id}
                try:
                    cur.execute(_CUSTOMER_SQL, params)
                    row = cur.fetchone()
                except psycopg.errors.UndefinedTable:
                    row = None  # no marts built yet: nobody is known
                state: dict = {"status": "ok", "known": row is not None}
                if row is None:
                    state["customer_key"] = user_id or visitor_id
                    state["attributes"] = {}
                else:
                    state.update({f: _plain(v) for f, v in zip(CUSTOMER_FIELDS, row, strict=True)})
                    try:
                        cur.execute(
                            _ATTRIBUTES_SQL, {"site": site_id, "key": state["customer_key"]}
                        )
                        state["attributes"] = {name: value for name, value, _ in cur.fetchall()}
                    except psycopg.errors.UndefinedTable:
                        state["attributes"] = {}
            state["fetched_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
            entry = {**state, "_fetched": time.time(), "_failed": False}
        except Exception as exc:  # any warehouse failure: serve stale
            self.counters["failures"] += 1
            self.down_until = time.time() + RETRY_AFTER
            self.failing = True
            self._drop_connection()
            log.warning("customer state of %s unavailable: %s", key, str(exc).splitlines()[0])
            with self._lock:
                self._pending.discard(key)
                old = self._cache.get(key)
                if old is not None:
                    old["_failed"] = True
            return
        self.failing = False
        with self._lock:
            self._pending.discard(key)
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self.max_entries:
                self._cache.popitem(last=False)
        if self.on_update is not None:
            self.on_update(site_id, visitor_id, self.peek(site_id, visitor_id, user_id))

    def examples(self, site_id: str, limit: int = 5) -> list[tuple[str, float]]:
        """(user id, lifetime revenue) of the site's top identified customers, for the demo
        page's "log in as" list; empty when the warehouse cannot say."""
        if self.url is None or time.time() < self.down_until:
            return []

        def query():
            with self._connection().cursor() as cur:
                cur.execute(
                    "select customer_key, revenue from crm.customers where site_id = %s "
                    "and is_identified order by revenue desc, customer_key limit %s",
                    (site_id, limit),
                )
                return [(key, float(revenue)) for key, revenue in cur.fetchall()]

        try:
            return self._pool.submit(query).result(timeout=3)
        except Exception as exc:  # no marts yet, or no warehouse: the page still works
            log.warning("no example customers: %s", str(exc).splitlines()[0] if str(exc) else exc)
            return []

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
