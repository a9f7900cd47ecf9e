"""The real-time engine's variables, read through the settings object: defaults, values and
the error a bad value gives."""

import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.sites import SitesConfig
from realtime.engine.bus import InProcessBus, backlog_limit_bytes, make_bus
from realtime.engine.customers import CustomerStates
from realtime.engine.engine import Engine
from realtime.engine.store import MemoryStore, make_store

VARIABLES = (
    "SITELINE_ENGINE_BACKLOG_MB",
    "SITELINE_EVENT_BUS",
    "SITELINE_ENGINE_STORE",
    "SITELINE_ENGINE_MAX_SESSIONS",
    "SITELINE_CUSTOMER_TTL",
)
SITES = SitesConfig.model_validate({"sites": [{"id": "shop", "domains": ["shop.example"]}]})


@pytest.fixture
def unset(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_defaults(unset):
    assert backlog_limit_bytes() == 64 * 1024 * 1024
    assert Engine(SITES).max_backlog_bytes == 64 * 1024 * 1024
    assert isinstance(make_bus(), InProcessBus)
    store = make_store()
    assert isinstance(store, MemoryStore) and store.max_sessions == 1_000_000
    customers = CustomerStates(None)
    assert customers.ttl == 300.0
    customers.close()


def test_values_from_the_environment(unset):
    unset.setenv("SITELINE_ENGINE_BACKLOG_MB", "0.5")
    unset.setenv("SITELINE_ENGINE_MAX_SESSIONS", "2000")
    unset.setenv("SITELINE_CUSTOMER_TTL", "15")
    unset.setenv("SITELINE_EVENT_BUS", "")  # empty counts as unset
    unset.setenv("SITELINE_ENGINE_STORE", "memory")
    assert backlog_limit_bytes() == 512 * 1024
    assert isinstance(make_bus(), InProcessBus)
    assert make_store().max_sessions == 2000
    assert MemoryStore(max_sessions=3).max_sessions == 3  # an explicit bound wins
    customers = CustomerStates(None)
    assert customers.ttl == 15.0
    customers.close()


def test_a_bad_value_names_the_variable_and_the_value(unset):
    unset.setenv("SITELINE_ENGINE_BACKLOG_MB", "0")
    with pytest.raises(SitelineError, match="SITELINE_ENGINE_BACKLOG_MB='0': "):
        Engine(SITES)
    unset.delenv("SITELINE_ENGINE_BACKLOG_MB")
    unset.setenv("SITELINE_CUSTOMER_TTL", "soon")
    with pytest.raises(SitelineError, match="SITELINE_CUSTOMER_TTL='soon': "):
        CustomerStates(None)
    unset.delenv("SITELINE_CUSTOMER_TTL")
    unset.setenv("SITELINE_EVENT_BUS", "kafka://broker")
    with pytest.raises(ValueError, match="SITELINE_EVENT_BUS='kafka://broker' is not supported"):
        make_bus()
    unset.setenv("SITELINE_ENGINE_STORE", "disk")
    with pytest.raises(ValueError, match="SITELINE_ENGINE_STORE='disk' is not supported"):
        make_store()


def test_a_collector_without_rate_limit_starts_its_engine(unset):
    """``SITELINE_RATE_LIMIT=0`` turns the limit off; the engine reads the same settings."""
    unset.setenv("SITELINE_RATE_LIMIT", "0")
    assert Engine(SITES).max_backlog_bytes == 64 * 1024 * 1024
