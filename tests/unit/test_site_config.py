from pathlib import Path

import pytest

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT
from ingestion.core.sites import IpPolicy, load_sites


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


# -- operator input meets visitor input (issue 26, A6) ---------------------------------------------

NESTED_QUANTIFIER = r"^/(\w+/?)*$"  # backtracks exponentially in Python's re
HOSTILE_PATH = "/" + "a" * 40 + "!"  # re would backtrack on it for hours


def test_operator_patterns_are_compiled_by_re2_and_rejected_when_re2_cannot_match_them(tmp_path):
    import re2

    from ingestion.core.sites import compile_pattern

    assert isinstance(compile_pattern(NESTED_QUANTIFIER), re2._Regexp)
    path = write(
        tmp_path,
        "sites:\n  - id: shop\n    domains: [shop.example]\n"
        "    page_labels: [{label: Twice, path: '^/(\\w+)/\\1$'}]\n"
        "    goals: [{id: thanks, path: '^/(?=thanks)'}]\n"
        "    funnels: [{id: f, steps: [{name: a, path: '^/a'}, {name: b, path: '(?<!x)/b'}]}]\n"
        "    logfiles: [{name: web, url: 'file:///l.log', format: custom,\n"
        "                regex: '^(?P<ip>\\S+) (?P=ip)', exclude: {user_agents: ['(?!bot)']}}]\n",
    )
    with pytest.raises(SitelineError) as exc:
        load_sites(path)
    message = str(exc.value)
    for where, pattern in [
        ("page_labels[0].path", "^/(\\w+)/\\1$"),
        ("goals[0].path", "^/(?=thanks)"),
        ("funnels[0].steps[1].path", "(?<!x)/b"),
        ("logfiles[0].regex", "^(?P<ip>\\S+) (?P=ip)"),
        ("logfiles[0].exclude.user_agents", "(?!bot)"),
    ]:
        assert (
            f"sites.yml: site 'shop': {where}: '{pattern}' is not a valid regex for RE2 ("
            in message
        )
    assert "Siteline matches patterns with RE2, in linear time" in message


@pytest.mark.timeout(60)  # before RE2 this test did not end (hours at 40 characters)
def test_a_nested_quantifier_label_meets_a_hostile_path_in_linear_time():
    from ingestion.core.sites import SitesConfig
    from realtime.engine.rules import SiteRules

    site = {
        "id": "shop",
        "domains": ["shop.example"],
        "page_labels": [{"label": "Words", "path": NESTED_QUANTIFIER}],
        "goals": [{"id": "deep", "path": NESTED_QUANTIFIER}],
    }
    rules = SiteRules(SitesConfig.model_validate({"sites": [site]}).sites[0])
    assert rules.page_label(HOSTILE_PATH) == "Other"
    assert rules.page_label("/shop/shoes/") == "Words"
    goal = rules.goals[0][1]
    assert not rules.matches(goal, "page_view", HOSTILE_PATH, None, None)
    assert rules.matches(goal, "page_view", "/a/b", None, None)


@pytest.mark.timeout(60)
def test_log_exclusions_match_hostile_paths_in_linear_time():
    from ingestion.core.sites import IpPolicy, LogSource
    from ingestion.logfiles.columnar import Enricher

    source = LogSource(
        name="web",
        url="file:///l.log",
        exclude={"paths": [NESTED_QUANTIFIER], "user_agents": [r"^(\w+\s?)*$"]},
    )
    enricher = Enricher("shop", source, IpPolicy(), b"k" * 32)
    assert enricher.paths.compute(HOSTILE_PATH) is False
    assert enricher.paths.compute("/a/b/") is True
    assert enricher.agent_excluded.compute("Mozilla " * 30 + "!") is False


def bomb(levels: int = 11) -> str:
    """A rule's ``then`` whose aliases expand to 4^levels leaves (11: 4.2M) in ~700 bytes."""
    lines = [
        "sites:\n  - id: shop\n    domains: [shop.example]\n    realtime_rules:\n"
        "      - id: offer\n        when: {cart.value: {gt: 1}}\n        then:",
        "          a0: &a0 [" + ",".join(["xxxxxxxxxxxxxxxxxxxx"] * 4) + "]",
    ]
    lines += [
        f"          a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 4) + "]" for i in range(1, levels)
    ]
    return "\n".join(lines) + "\n"


def test_aliases_may_not_expand_without_bound(tmp_path):
    with pytest.raises(SitelineError) as exc:
        load_sites(write(tmp_path, bomb()))
    assert str(exc.value) == (
        "sites.yml: line 16: aliases (*name) repeat more than 100,000 nodes; write the values "
        "out or use fewer aliases"
    )
    small = load_sites(write(tmp_path, bomb(levels=4)))  # 4^4 leaves: ordinary reuse
    assert len(small.sites[0].realtime_rules[0].then["a3"][0][0]) == 4
    with pytest.raises(SitelineError, match=r"^sites\.yml: line 2: an alias refers to a node"):
        load_sites(write(tmp_path, "version: 1\nsites: &s\n  - id: shop\n    x: *s\n"))
    with pytest.raises(SitelineError, match=r"^sites\.yml: nested too deeply"):
        load_sites(write(tmp_path, "sites: " + "[" * 5000))


def test_sites_yml_has_a_size_limit(tmp_path):
    path = write(
        tmp_path,
        "sites:\n  - id: shop\n    domains: [shop.example]\n" + "# padding\n" * 110_000,
    )
    with pytest.raises(SitelineError) as exc:
        load_sites(path)
    assert str(exc.value) == (
        f"{path}: larger than the limit of 1 MiB for sites.yml; it holds configuration only"
    )
