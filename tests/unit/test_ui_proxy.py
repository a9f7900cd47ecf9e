"""The Dagster UI proxy's checks, and the run line of `siteline up` (pure functions)."""

import pytest

from ingestion.core.errors import SitelineError
from orchestration.supervisor import run_line
from orchestration.ui_proxy import (
    LoginThrottle,
    allowed_hosts,
    get_query_refusal,
    hash_password,
    host_allowed,
    login_limit,
    parse_basic,
    same_origin,
    verify_password,
)


def test_allowed_hosts_are_the_loopback_names_with_the_port_and_the_configured_names():
    allowed = allowed_hosts(3000, " ui.example.org , Dagster.Example.ORG:8443,")
    assert allowed == ["localhost:3000", "127.0.0.1:3000", "[::1]:3000", "ui.example.org",
                       "dagster.example.org:8443"]  # fmt: skip
    for host in ("localhost:3000", "127.0.0.1:3000", "[::1]:3000", "LOCALHOST:3000",
                 "ui.example.org", "ui.example.org:443", "dagster.example.org:8443"):  # fmt: skip
        assert host_allowed(host, allowed), host
    for host in (None, "", "localhost", "127.0.0.1:3001", "attacker.test:3000",
                 "127.0.0.1.attacker.test:3000", "[::1]", "dagster.example.org",
                 "dagster.example.org:443", "ui.example.org.attacker.test"):  # fmt: skip
        assert not host_allowed(host, allowed), host


def test_same_origin_compares_host_and_port_with_default_ports():
    assert same_origin("http://127.0.0.1:3000", "127.0.0.1:3000")
    assert same_origin("https://ui.example.org", "ui.example.org")
    assert same_origin("https://ui.example.org:443", "ui.example.org")
    assert same_origin("http://[::1]:3000", "[::1]:3000")
    assert not same_origin("http://127.0.0.1:3001", "127.0.0.1:3000")
    assert not same_origin("https://evil.example", "127.0.0.1:3000")
    assert not same_origin("null", "127.0.0.1:3000")
    assert not same_origin("file://", "127.0.0.1:3000")
    assert not same_origin("http://ui.example.org", "ui.example.org:8080")


def test_a_get_may_only_carry_queries():
    assert get_query_refusal("query=%7B%20version%20%7D") is None
    assert get_query_refusal("") is None
    assert get_query_refusal("query=query%20Q%20%7B%20a%20%7D&operationName=Q") is None
    assert "mutation" in get_query_refusal("query=mutation%20%7B%20launchRun%20%7D")
    # a mutation after a query, a subscription, broken syntax: all refused
    assert get_query_refusal("query=%7Ba%7D%20mutation%20M%20%7Bb%7D") is not None
    assert get_query_refusal("query=subscription%20%7B%20a%20%7D") is not None
    assert get_query_refusal("query=mutation%7B") == "the query is not valid GraphQL"
    # a second `query` parameter cannot smuggle one in either
    assert get_query_refusal("query=%7Ba%7D&query=mutation%7Bb%7D") is not None


def test_basic_credentials_parse_or_are_none():
    assert parse_basic("Basic YWRtaW46cyNjcjp0") == ("admin", "s#cr:t")
    assert parse_basic("basic YWRtaW46") == ("admin", "")
    for header in ("Bearer abc", "Basic", "Basic %%%", "Basic YWRtaW4=", "Basic //79"):
        assert parse_basic(header) is None, header


def test_password_hash_verifies_only_its_password():
    stored = hash_password("open sesame")
    assert stored.startswith("scrypt$") and "open sesame" not in stored
    assert verify_password("open sesame", stored)
    assert not verify_password("open sesame!", stored)
    assert not verify_password("open sesame", "garbage")
    assert hash_password("x") != hash_password("x")  # salted


def test_run_line():
    line = run_line("3f2a1b2c-0000", "load_collector_events", "success", 41.4, 48)
    assert line == "run 3f2a1b2c load_collector_events: success in 41 s, 48 assets"
    assert run_line("0123456789", "__ASSET_JOB", "failure", None, 0) == (
        "run 01234567 pipeline: failure, 0 assets"
    )


def test_wrong_logins_are_throttled_per_address_for_a_window():
    now = [1000.0]
    throttle = LoginThrottle(limit=3, window=60, clock=lambda: now[0])
    for _ in range(2):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") is None  # two wrong ones: may try again
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 61  # the third: refused for the window
    assert throttle.retry_after("10.0.0.2") is None  # other addresses are not affected
    now[0] += 30
    assert throttle.retry_after("10.0.0.1") == 31
    now[0] += 30
    assert throttle.retry_after("10.0.0.1") is None  # the wrong ones are a window old
    assert throttle._failures == {}  # and forgotten


def test_the_login_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("SITELINE_UI_LOGIN_LIMIT", raising=False)
    assert login_limit() == 10
    monkeypatch.setenv("SITELINE_UI_LOGIN_LIMIT", "3")
    assert login_limit() == 3
    for bad in ("0", "many"):
        monkeypatch.setenv("SITELINE_UI_LOGIN_LIMIT", bad)
        with pytest.raises(SitelineError, match=f"SITELINE_UI_LOGIN_LIMIT='{bad}'"):
            login_limit()
