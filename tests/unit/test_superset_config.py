"""superset_config.py: everything from the environment; no start without a real secret key."""

import importlib.util
import os

import pytest

from ingestion.core.home import PROJECT_ROOT

CONFIG = PROJECT_ROOT / "superset_config" / "superset_config.py"
GOOD_KEY = "k" * 20 + "-random-enough-0123456789"


def load(monkeypatch, **env):
    for name in ("SUPERSET_SECRET_KEY", "SUPERSET_PREVIOUS_SECRET_KEY", "SUPERSET_METADATA_URL",
                 "SUPERSET_ROW_LIMIT", "SUPERSET_LOGIN_RATE_LIMIT",
                 "SUPERSET_RATELIMIT_STORAGE_URI"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("superset_config_under_test", CONFIG)
    module = importlib.util.module_from_spec(spec)
    umask = os.umask(0o022)  # the config sets Superset's process umask: keep this process's
    try:
        spec.loader.exec_module(module)
    finally:
        os.umask(umask)
    return module


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "SUPERSET_SECRET_KEY is not set"),
        ("   ", "SUPERSET_SECRET_KEY is not set"),
        ("CHANGE_ME_TO_A_COMPLEX_RANDOM_SECRET", "is a published default"),
        ("thisISaSECRET_1234", "is a published default"),
        ("only-twenty-chars-xx", "has 20 characters; use at least 32"),
    ],
)
def test_a_missing_default_or_short_secret_key_is_refused(monkeypatch, key, message):
    env = {} if key is None else {"SUPERSET_SECRET_KEY": key}
    with pytest.raises(RuntimeError, match=message):
        load(monkeypatch, **env)


def test_settings_come_from_the_environment(monkeypatch, tmp_path):
    config = load(monkeypatch, SUPERSET_SECRET_KEY=GOOD_KEY, SITELINE_HOME=str(tmp_path))
    assert config.SECRET_KEY == GOOD_KEY
    metadata_url = config.SQLALCHEMY_DATABASE_URI
    assert metadata_url == f"sqlite:///{tmp_path}/superset/superset.db"
    assert config.ROW_LIMIT == 50_000
    assert config.PREVIOUS_SECRET_KEY is None
    assert (config.RATELIMIT_ENABLED, config.AUTH_RATE_LIMIT) == (True, "10 per minute")
    assert config.RATELIMIT_STORAGE_URI == "memory://"
    config = load(
        monkeypatch,
        SUPERSET_SECRET_KEY=GOOD_KEY,
        SUPERSET_METADATA_URL="postgresql://superset@db.internal/superset",
        SUPERSET_ROW_LIMIT="1000",
    )
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql://superset@db.internal/superset"
    assert config.ROW_LIMIT == 1000
