"""Siteline's core: what every part uses, importing nothing else of Siteline's.

- ``errors``     the one expected-error type (``SitelineError``)
- ``home``       the data directory, its folders, and secrets generated once
- ``settings``   every ``SITELINE_*`` variable, typed, with its default and meaning
- ``sites``      the schema of ``sites.yml`` and its loading
- ``enrich``     a hit's enrichment: user agent, bot, country, IP policy, network key
- ``landing``    the landing format: segments written by the collector, read by the loader
- ``warehouse``  the warehouse client: DSN, connect, the read-only role

It lives under ``ingestion/`` because the top level of the repository is fixed; the layers
(core < ingestion < realtime, orchestration) are checked by import-linter (``make lint``).
"""
