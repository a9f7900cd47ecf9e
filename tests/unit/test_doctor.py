"""`siteline doctor`'s checks return what they found (orchestration/doctor.py)."""

import socket

from orchestration.doctor import (
    Check,
    WarehouseStatus,
    check_python,
    check_service,
    check_settings,
    check_sites,
    check_warehouse,
    warehouse_status,
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def test_python_must_be_3_11():
    assert check_python("3.11.9") == Check("python", True, "3.11.9")
    assert check_python("3.12.1") == Check("python", False, "3.12.1")
    assert check_python().detail.startswith("3.11.")  # this interpreter's


def test_a_sites_file_with_an_error_returns_the_error_text(tmp_path):
    bad = tmp_path / "sites.yml"
    bad.write_text("sites:\n  - id: Shop\n    domains: [x.example]\n")
    check = check_sites(bad)
    assert check.name == "sites.yml" and check.ok is False and check.problem
    assert check.detail.startswith("sites.yml: site 'Shop': id: must start with a lower-case")


def test_a_good_sites_file_returns_how_many_sites(tmp_path, monkeypatch):
    good = tmp_path / "sites.yml"
    good.write_text(
        "sites:\n  - id: shop\n    domains: [shop.example]\n"
        "  - id: blog\n    domains: [blog.example]\n"
    )
    assert check_sites(good) == Check("sites.yml", True, f"{good}: 2 site(s)")
    monkeypatch.setenv("SITELINE_SITES_FILE", str(good))
    assert check_sites() == Check("sites.yml", True, f"{good}: 2 site(s)")


def test_a_bad_warehouse_url_fails_with_the_masked_url_and_the_hint(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql://analyst:s3cret@127.0.0.1:{port}/siteline")
    check = check_warehouse()
    assert check.name == "warehouse (WAREHOUSE_URL)" and check.ok is False
    assert check.detail.startswith(
        f"cannot connect to the warehouse at postgresql://analyst:***@127.0.0.1:{port}/siteline: "
    )
    assert check.detail.endswith(
        "— is the server running? For the embedded warehouse run `siteline warehouse start`; "
        "otherwise check WAREHOUSE_URL"
    )
    assert "s3cret" not in check.detail


def test_an_embedded_warehouse_never_started_says_how_to_start_it(tmp_path, monkeypatch):
    monkeypatch.delenv("WAREHOUSE_URL", raising=False)
    monkeypatch.setenv("SITELINE_HOME", str(tmp_path / "home"))
    assert warehouse_status() == WarehouseStatus(external=False, state="not initialised")
    assert not warehouse_status().up
    assert check_warehouse() == Check(
        "warehouse (embedded)", False, "not initialised — run `siteline warehouse start`"
    )


def test_an_unreachable_external_warehouse_is_its_own_state(monkeypatch):
    port = closed_port()
    monkeypatch.setenv("WAREHOUSE_URL", f"postgresql://analyst:s3cret@127.0.0.1:{port}/siteline")
    status = warehouse_status()
    assert status.external is True and status.state == "unreachable" and not status.up
    assert status.detail.startswith(
        f"cannot connect to the warehouse at postgresql://analyst:***@127.0.0.1:{port}/siteline: "
    )


def test_the_warehouse_check_reads_the_status():
    stopped = WarehouseStatus(external=False, state="stopped")
    assert check_warehouse(stopped) == Check(
        "warehouse (embedded)", False, "stopped — run `siteline warehouse start`"
    )
    up = WarehouseStatus(True, "up", "PostgreSQL 18.1 at postgresql://a:***@db:5432/siteline")
    assert check_warehouse(up) == Check(
        "warehouse (WAREHOUSE_URL)", True, "PostgreSQL 18.1 at postgresql://a:***@db:5432/siteline"
    )


def test_a_service_that_is_not_up_is_not_a_problem():
    port = closed_port()
    down = check_service("collector", port)
    assert down == Check("collector", None, "not running (`siteline up`)")
    assert not down.problem
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert check_service("collector", port) == Check(
            "collector", True, f"http://127.0.0.1:{port}"
        )


def test_the_settings_check_lists_every_variable_that_does_not_fit(monkeypatch) -> None:
    for name in ("SITELINE_UI_LOGIN_LIMIT", "SITELINE_DURABLE"):
        monkeypatch.delenv(name, raising=False)
    assert check_settings() == Check(
        "settings", True, "every SITELINE_* variable fits (docs/settings.md)"
    )
    monkeypatch.setenv("SITELINE_UI_LOGIN_LIMIT", "0")
    monkeypatch.setenv("SITELINE_DURABLE", "maybe")
    assert check_settings() == Check(
        "settings",
        False,
        "SITELINE_DURABLE='maybe': Input should be a valid boolean, unable to interpret input; "
        "use 1 or 0 (or true/false, yes/no, on/off); "
        "SITELINE_UI_LOGIN_LIMIT='0': Input should be greater than or equal to 1",
    )
