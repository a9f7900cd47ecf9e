"""`siteline dbt` adds the run's scope models to a selection of models."""

from orchestration.dbt_paths import SCOPE_SELECTOR, with_scope_models


def test_a_selection_of_models_gets_the_scope_models():
    assert with_scope_models(["run", "--select", "int_sessions", "agg_daily_site_kpis"]) == [
        "run", "--select", "int_sessions", "agg_daily_site_kpis", SCOPE_SELECTOR,
    ]  # fmt: skip
    assert with_scope_models(["build", "-s", "int_sessions+", "--full-refresh"]) == [
        "build", "-s", "int_sessions+", SCOPE_SELECTOR, "--full-refresh",
    ]  # fmt: skip
    assert with_scope_models(["run", "--select=fct_sessions", "--threads", "2"]) == [
        "run", "--select", "fct_sessions", SCOPE_SELECTOR, "--threads", "2",
    ]  # fmt: skip


def test_other_commands_and_whole_runs_are_left_as_they_are():
    for args in (
        ["run"],
        ["test", "--select", "fct_sessions"],
        ["run", "--select", "fct_sessions", "--exclude", SCOPE_SELECTOR],
        ["docs", "generate"],
    ):
        assert with_scope_models(args) == args
