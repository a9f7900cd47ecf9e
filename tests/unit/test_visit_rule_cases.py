"""The table of visit-rule cases (tests/cases/visit_rules.yml) and the dbt unit tests written
from it: the written file is what the table makes, and the table refuses cases it cannot
test."""

import shutil

import pytest
import yaml

from tests.cases.generate import (
    CASES,
    CHANNEL_RULES,
    GENERATED,
    CaseError,
    load_cases,
    render,
    session_id,
)


def test_the_generated_dbt_unit_tests_are_up_to_date():
    assert GENERATED.read_text() == render(), (
        f"{GENERATED.name} is stale: run `make cases` (python tests/cases/generate.py)"
    )


def test_a_case_edited_without_regenerating_makes_the_file_stale(tmp_path):
    edited = tmp_path / CASES.name
    text = CASES.read_text()
    assert "'2026-01-05 11:00:01'" in text
    edited.write_text(text.replace("'2026-01-05 11:00:01'", "'2026-01-05 11:00:02'", 1))
    assert render(edited) != GENERATED.read_text()
    rules = tmp_path / CHANNEL_RULES.name
    shutil.copy(CHANNEL_RULES, rules)
    with open(rules, "a") as fh:
        fh.write("campaign_medium,podcast,referral\n")
    assert render(CASES, rules) != GENERATED.read_text()  # the seed's rows are inputs too


def test_every_case_becomes_a_unit_test_with_every_hit_expected():
    cases, channels = load_cases()
    tests = {test["name"]: test for test in yaml.safe_load(GENERATED.read_text())["unit_tests"]}
    assert set(tests) == {case.name for case in cases} | {"channels_follow_the_seed_channel_rules"}
    for case in cases:
        expected = {row["event_id"]: row for row in tests[case.name]["expect"]["rows"]}
        assert set(expected) == {hit.id for hit in case.hits}
        for visit in case.visits:
            first = next(hit for hit in case.hits if hit.id == visit[0])
            name = session_id(first.site, first.device, first.id)
            assert {expected[hit_id]["session_id"] for hit_id in visit} == {name}
        for hit in case.hits:
            if hit.held_out:
                assert expected[hit.id]["session_id"] is None
    channel_rows = tests["channels_follow_the_seed_channel_rules"]["expect"]["rows"]
    assert [row["channel_id"] for row in channel_rows] == [case["channel"] for case in channels]


def test_session_ids_are_named_as_the_warehouse_names_them():
    assert session_id("s", "v", "a") == "e734fd485b73c6e3896f0b110c6810ee"  # md5("s|v|a")


CASE = """
cases:
  - name: two_hits
    sites:
      s: {timezone: UTC}
    hits:
      - {id: a, at: '2026-01-05 10:00:00'}
      - {id: b, at: '2026-01-05 10:05:00'}
    visits: %s
"""


@pytest.mark.parametrize(
    ("visits", "message"),
    [
        ("[[a]]", r"not placed: \['b'\]"),
        ("[[b, a]]", r"list its hits in time \(then id\) order"),
        ("[[a, b], [b]]", "each at most once"),
        ("[[a, c]]", "each at most once"),
    ],
)
def test_the_table_refuses_visits_that_do_not_place_each_hit_once(tmp_path, visits, message):
    table = tmp_path / "cases.yml"
    table.write_text(CASE % visits)
    with pytest.raises(CaseError, match=f"case 'two_hits': .*{message}"):
        load_cases(table)


def test_the_table_refuses_unknown_hit_fields(tmp_path):
    table = tmp_path / "cases.yml"
    table.write_text(CASE.replace("{id: b,", "{id: b, referer: x,") % "[[a, b]]")
    with pytest.raises(CaseError, match=r"hit 'b': unknown field\(s\) \['referer'\]"):
        load_cases(table)


def test_the_table_refuses_names_dbt_cannot_make_a_relation_of(tmp_path):
    table = tmp_path / "cases.yml"
    table.write_text((CASE % "[[a, b]]").replace("two_hits", "a" * 64))
    with pytest.raises(CaseError, match="at most 63 characters"):
        load_cases(table)
