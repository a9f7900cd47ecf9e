"""Hit enrichment, the same functions for every source of hits: the client's IP, country,
bot reason, user-agent facts, the network key (a keyed hash of IP and user agent) and URL parts.

Callers: the collector (``realtime/collector/service.py``, once per request, before anything
is landed), the logfile import (``ingestion/logfiles/columnar.py``, once per distinct value)
and the demo traffic writer (``ingestion/demo_traffic/writer.py``); the engine and the events
loader use its URL and user-agent parsing. The country and the network key come from the
full address; each caller stores only what the site's IP policy keeps of it
(``ingestion/core/sites.py``), so no full address is stored unless the policy is ``full``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from functools import cache, lru_cache
from urllib.parse import urlsplit

from ingestion.core.errors import SitelineError
from ingestion.core.home import remembered_secret
from ingestion.core.settings import settings
from ingestion.core.sites import Site


@cache
def _geo():
    """The lookup: a MaxMind-format database when ``SITELINE_GEOIP_MMDB`` names one
    (GeoLite2/GeoIP2 Country or City), else the database shipped inside geoip2fast."""
    path = settings().geoip_mmdb
    if path:
        import maxminddb

        try:
            reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise SitelineError(
                f"SITELINE_GEOIP_MMDB={path}: cannot open it as a MaxMind database ({exc}); "
                "point it at a GeoLite2/GeoIP2 .mmdb file or unset it"
            ) from None

        def lookup(ip: str) -> str | None:
            record = reader.get(ip) or {}
            country = record.get("country") or record.get("registered_country") or {}
            return country.get("iso_code")

        return lookup
    from geoip2fast import GeoIP2Fast

    db = GeoIP2Fast()

    def lookup(ip: str) -> str | None:
        code = getattr(db.lookup(ip), "country_code", None)
        return code if code and code != "--" and len(code) == 2 else None

    return lookup


def country_of(ip: str | None) -> str | None:
    """ISO country code of an address from the offline database (None if unknown)."""
    if not ip:
        return None
    try:
        return _geo()(ip)
    except SitelineError:
        raise
    except Exception:  # a malformed address must never fail a request
        return None


CRAWLER_CHUNK = 25
# A user agent is kept, parsed and cached to this many characters (real ones are under 400):
# a megabyte-long one blocked every client while it was matched against the crawler
# patterns, and the caches below held every one of them.
MAX_USER_AGENT = 512


@cache
def _crawler_chunks() -> list[tuple[re.Pattern, list[str]]]:
    """The crawler-user-agents patterns in order, in chunks of 25 joined into one regex."""
    import crawleruseragents

    patterns = [c["pattern"] for c in crawleruseragents.CRAWLER_USER_AGENTS_DATA]
    chunks = [patterns[i : i + CRAWLER_CHUNK] for i in range(0, len(patterns), CRAWLER_CHUNK)]
    return [(re.compile("|".join(chunk)), chunk) for chunk in chunks]


@cache
def _crawler_regex(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def bot_reason(user_agent: str | None) -> str | None:
    """Why a user agent (its first :data:`MAX_USER_AGENT` characters) is a bot, or None."""
    return _bot_reason(user_agent[:MAX_USER_AGENT] if user_agent else user_agent)


@lru_cache(maxsize=4096)
def _bot_reason(user_agent: str | None) -> str | None:
    """Why a user agent is a bot (the first crawler-user-agents pattern it matches), or None.

    The first chunk of patterns that matches holds the first pattern that does; only that
    chunk's 25 are tried one by one. (``crawleruseragents.matching_crawlers`` passes each of
    its patterns to ``re.search``, more than ``re``'s cache holds: every crawler's user
    agent recompiled them all.)"""
    if not user_agent:
        return "empty user agent"
    for chunk_regex, chunk in _crawler_chunks():
        if chunk_regex.search(user_agent):
            for pattern in chunk:
                if _crawler_regex(pattern).search(user_agent):
                    return f"user agent matches crawler pattern '{pattern}'"
    return None


def client_ip(peer: str | None, forwarded_for: str | None, site: Site) -> str | None:
    """The visitor's address: the TCP peer, or X-Forwarded-For when the peer is trusted.

    Walks X-Forwarded-For from the right, skipping trusted proxies, so a client cannot
    spoof its address by sending the header itself.
    """
    if not peer:
        return None
    if not forwarded_for or not site.trusted_proxies:
        return peer
    networks = _networks(tuple(site.trusted_proxies))

    def trusted(addr: str) -> bool:
        try:
            ip = ipaddress.ip_address(addr)
        except ValueError:
            return False
        return any(ip in net for net in networks)

    if not trusted(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


@cache
def _networks(nets: tuple[str, ...]):
    return [ipaddress.ip_network(n, strict=False) for n in nets]


def user_agent_facts(agent: str) -> dict:
    """Browser, OS and device of a user agent (its first :data:`MAX_USER_AGENT` characters;
    ua-parser with its native accelerator)."""
    return _user_agent_facts(agent[:MAX_USER_AGENT])


@lru_cache(maxsize=8192)
def _user_agent_facts(agent: str) -> dict:
    from ua_parser import parse

    result = parse(agent)
    ua, os_, device = result.user_agent, result.os, result.device
    family = device.family if device else None
    if family in (None, "Other", "Mac"):  # ua-parser names every Mac "Mac": a desktop
        desktop = ("Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS")
        device_type = "desktop" if os_ and os_.family in desktop else None
    elif family == "Spider":
        device_type = "bot"
    elif "iPad" in family or "Tablet" in family:
        device_type = "tablet"
    else:
        device_type = "mobile"
    return {
        "browser": ua.family if ua else None,
        "browser_version": ua.major if ua else None,
        "os": os_.family if os_ else None,
        "os_version": os_.major if os_ else None,
        "device_family": family,
        "device_type": device_type,
    }


@cache
def network_key_secret() -> bytes:
    """The key of the IP + user-agent hash: ``SITELINE_VISITOR_KEY``, else generated once and
    kept under the data directory. The collector and the logfile loader of one installation
    share it, so a tracker event and the log line of the same request carry the same key."""
    return (settings().visitor_key or remembered_secret("logfile-visitor-key")).encode()


def network_key(ip: str | None, user_agent: str | None, secret: bytes) -> str:
    """Keyed hash of the full IP address + user agent: sessionises cookieless log hits and
    ties them to tracker events without keeping the address (the key never leaves the
    installation)."""
    message = f"{ip or ''}\x00{user_agent or ''}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


@lru_cache(maxsize=65536)
def url_parts(url: str | None) -> tuple[str | None, str | None, str | None]:
    """(host, path, query) of a URL - host lower case without port, path '/' when empty,
    query without '?' (None when empty); (None, None, None) when it is not a URL."""
    if not url or "://" not in url:
        return None, None, None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None, None, None
    return host, parts.path or "/", parts.query or None
