"""The demo shop's fixed world: products, traffic sources, devices and places.

Pure data, no randomness: the simulator draws from these with its own seeded generator.
"""

from __future__ import annotations

CATEGORIES = ["shoes", "jackets", "shirts", "trousers", "bags", "hats", "socks", "watches"]
SINGULAR = {"watches": "Watch", "trousers": "Trousers", "socks": "Socks"}
PRODUCT_NAMES = ["Classic", "Trail", "Urban", "Alpine", "Coastal", "Nordic", "Vintage", "Studio"]
PRICES = [9.9, 14.9, 19.9, 24.9, 29.9, 39.9, 49.9, 59.9, 79.9, 99.0, 129.0, 189.0]


def products() -> list[dict]:
    """200 products: sku, name, category, price (deterministic)."""
    items = []
    for i in range(200):
        category = CATEGORIES[i % len(CATEGORIES)]
        kind = SINGULAR.get(category, category[:-1].title())
        name = f"{PRODUCT_NAMES[(i // 8) % len(PRODUCT_NAMES)]} {kind} {i:03d}"
        items.append(
            {
                "sku": f"SKU-{i:04d}",
                "name": name,
                "category": category,
                "price": PRICES[(i * 7) % len(PRICES)],
                "slug": f"{category}-{i:03d}",
            }
        )
    return items


# Traffic sources: (channel the ground truth expects, weight, referrer or None, utm or None).
# Channels use the grouping of the warehouse models: direct, organic_search, paid_search,
# social, email, referral, display, affiliate.
SOURCES = [
    ("direct", 26, None, None),
    ("organic_search", 14, "https://www.google.com/", None),
    ("organic_search", 4, "https://www.bing.com/", None),
    ("organic_search", 2, "https://duckduckgo.com/", None),
    ("paid_search", 8, "https://www.google.com/",
     {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand_search"}),
    ("paid_search", 3, "https://www.google.com/",
     {"utm_source": "google", "utm_medium": "cpc", "utm_campaign": "winter_sale"}),
    ("social", 6, "https://www.facebook.com/", None),
    ("social", 3, "https://t.co/", None),
    ("social", 3, "https://www.instagram.com/",
     {"utm_source": "instagram", "utm_medium": "social", "utm_campaign": "winter_sale"}),
    ("email", 7, None,
     {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "weekly_digest"}),
    ("email", 3, None,
     {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "winter_sale"}),
    ("referral", 6, "https://www.outdoor-blog.example/best-jackets", None),
    ("referral", 3, "https://forum.hiking.example/t/123", None),
    ("display", 3, "https://ads.news-site.example/",
     {"utm_source": "news_site", "utm_medium": "display", "utm_campaign": "autumn_banner"}),
    ("affiliate", 3, "https://deals.example/",
     {"utm_source": "dealsite", "utm_medium": "affiliate", "utm_campaign": "partner_q4"}),
]  # fmt: skip

# (device_type, weight, user agent, screen, viewport)
DEVICES = [
    ("desktop", 30,
     "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Safari/537.36", "1920x1080", "1903x961"),
    ("desktop", 10,
     "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Safari/605.1.15", "2560x1440", "1440x789"),
    ("desktop", 8,
     "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
     "1920x1080", "1920x955"),
    ("mobile", 25,
     "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
     "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "390x844", "390x664"),
    ("mobile", 20,
     "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/131.0.0.0 Mobile Safari/537.36", "412x915", "412x775"),
    ("tablet", 7,
     "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/18.1 Mobile/15E148 Safari/604.1", "820x1180", "820x1050"),
]  # fmt: skip

# (country, weight, language, time zone, public IPv4 /16 prefixes the addresses are drawn from)
PLACES = [
    ("DE", 40, "de-DE", "Europe/Berlin", ["91.64", "84.128", "217.229"]),
    ("AT", 8, "de-AT", "Europe/Vienna", ["80.108", "178.190"]),
    ("CH", 7, "de-CH", "Europe/Zurich", ["83.76", "178.197"]),
    ("FR", 10, "fr-FR", "Europe/Paris", ["90.16", "176.128"]),
    ("NL", 8, "nl-NL", "Europe/Amsterdam", ["84.80", "145.53"]),
    ("GB", 12, "en-GB", "Europe/London", ["81.96", "86.128"]),
    ("US", 15, "en-US", "America/New_York", ["24.0", "73.0", "98.0"]),
]

DECLARED_CRAWLERS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
]
# Bots that run JavaScript and do not declare themselves plainly.
SNEAKY_BOTS = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36 PTST/240201.140408",
]
SCANNER_PATHS = ["/wp-login.php", "/.env", "/admin/config.php", "/xmlrpc.php", "/.git/config"]
STATIC_ASSETS = ["/static/app.css", "/static/app.js", "/static/logo.svg"]
EVENT_KINDS = [
    ("engagement", "newsletter_signup"),
    ("video", "play"),
    ("outbound", "click"),
    ("engagement", "share"),
]
