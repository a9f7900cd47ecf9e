"""The dlt source that loads ``sites.yml`` into ``config.*`` (``source.py``).

The schema and loading of ``sites.yml`` are in ``ingestion.core.sites``: every part uses them.
"""
