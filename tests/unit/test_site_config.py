from pathlib import Path

import pytest

from ingestion.site_config import IpPolicy, load_sites
from orchestration.home import PROJECT_ROOT, SitelineError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sites.yml"
    path.write_text(text)
    return path


def test_project_sites_file_has_the_demo_site():
    config = load_sites(PROJECT_ROOT / "sites.yml")
    demo = config.site("demo")
    assert demo.timezone == "Europe/Berlin"
    assert demo.sessions.inactivity_timeout_minutes == 30
    assert demo.ip_policy.mode == "anonymize"
    assert demo.api_key_env == "SITELINE_DEMO_API_KEY"
    assert "https://shop.siteline.test" in demo.origins


def test_errors_name_file_site_and_field(tmp_path):
    path = write(
        tmp_path,
        "sites:\n  - id: shop\n    domains: [shop.example]\n    timezone: Mars/Olympus\n"
        "    sessions: {inactivity_timeout_minutes: 0}\n    colour: red\n",
    )
    with pytest.raises(SitelineError) as exc:
        load_sites(path)
    message = str(exc.value)
    assert "sites.yml: site 'shop': timezone: 'Mars/Olympus' is not an IANA time zone" in message
    assert "sites.yml: site 'shop': sessions.inactivity_timeout_minutes:" in message
    assert "greater than or equal to 0.05" in message
    assert "sites.yml: site 'shop': colour: unknown field" in message


def test_site_without_id_is_named_by_position(tmp_path):
    path = write(tmp_path, "sites:\n  - domains: [a.example]\n")
    with pytest.raises(SitelineError, match=r"sites\[0\]: id: is required"):
        load_sites(path)


def test_duplicate_ids_and_bad_origin_and_secret_in_env_name(tmp_path):
    path = write(
        tmp_path,
        "sites:\n  - {id: a, domains: [a.example], allowed_origins: ['https://a.example/path']}\n"
        "  - {id: b, domains: [b.example], api_key_env: 'hunter2-secret'}\n",
    )
    with pytest.raises(SitelineError) as exc:
        load_sites(path)
    assert "site 'a': allowed_origins: 'https://a.example/path' is not an origin" in str(exc.value)
    assert "site 'b': api_key_env: 'hunter2-secret' is not an environment variable name" in str(
        exc.value
    )
    dup = write(
        tmp_path, "sites:\n  - {id: a, domains: [a.example]}\n  - {id: a, domains: [b.example]}\n"
    )
    with pytest.raises(SitelineError, match="site id 'a' is defined twice"):
        load_sites(dup)


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(SitelineError, match="not found; create it"):
        load_sites(tmp_path / "nope.yml")
    with pytest.raises(SitelineError, match=r"sites.yml: line 3, column 1: not valid YAML"):
        load_sites(write(tmp_path, "sites:\n  - id: [unclosed\n"))


def test_logfile_sources_are_validated(tmp_path):
    path = write(
        tmp_path,
        "sites:\n  - id: shop\n    domains: [shop.example]\n    logfiles:\n"
        "      - {name: web1, url: 'gopher://x/log'}\n"
        "      - {name: web2, url: 'sftp://u:secret@host/var/log/a.log'}\n"
        "      - {name: web3, url: 'file:///var/log/a.log', format: apache, schedule: hourly}\n"
        "      - {name: web4, url: 'https://h/a.log', format: custom}\n"
        "      - {name: web5, url: 'ftp://h/a.log', exclude: {paths: ['(']}}\n",
    )
    with pytest.raises(SitelineError) as exc:
        load_sites(path)
    message = str(exc.value)
    assert (
        "sites.yml: site 'shop': logfiles[0].url: scheme 'gopher' is not supported; use http, https, ftp, ftps, sftp or file"
        in message
    )
    assert "logfiles[1].url: put no password in the URL" in message
    assert "logfiles[2].format: 'apache' is not a log format" in message
    assert "logfiles[2].schedule: 'hourly' is not a cron expression" in message
    assert "logfiles[3]: format 'custom' needs log_format (Apache LogFormat) or regex" in message
    assert "logfiles[4].exclude.paths[0]" not in message and "'(' is not a valid regex" in message


def test_unknown_site_lists_known_ones():
    with pytest.raises(SitelineError, match=r"unknown site 'nope'; sites\.yml defines: demo"):
        load_sites(PROJECT_ROOT / "sites.yml").site("nope")


@pytest.mark.parametrize(
    ("policy", "ip", "expected"),
    [
        (IpPolicy(), "85.214.3.77", "85.214.3.0"),
        (IpPolicy(ipv4_prefix=16), "85.214.3.77", "85.214.0.0"),
        (IpPolicy(), "2001:db8:1234:5678::1", "2001:db8:1234::"),
        (IpPolicy(mode="full"), "85.214.3.77", "85.214.3.77"),
        (IpPolicy(mode="drop"), "85.214.3.77", None),
        (IpPolicy(), "not-an-ip", None),
    ],
)
def test_ip_policy(policy, ip, expected):
    assert policy.apply(ip) == expected
