"""Great Expectations suites for raw and mart tables, run as Dagster asset checks.

Each suite is a GE suite file in ``expectations/suites/<schema>.<table>.json``; its ``meta``
names the table and whether a failure blocks what is built from it. ``validate_suite`` runs
one suite against the warehouse with an ephemeral GE context (nothing is written to disk) and
returns what failed, in words a person can act on. Dagster wiring lives in
``orchestration/defs/quality``; this package never imports Dagster.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

SUITES_DIR = Path(__file__).resolve().parent / "suites"


@dataclass(frozen=True)
class Suite:
    name: str
    schema: str
    table: str
    blocking: bool
    description: str
    definition: dict = field(repr=False)

    @property
    def asset_key(self) -> list[str]:
        return [self.schema, self.table]


@dataclass
class SuiteResult:
    passed: bool
    evaluated: int
    failures: list[str]
    table_missing: bool = False


def load_suites(folder: Path = SUITES_DIR) -> list[Suite]:
    """Every suite file, validated enough to fail loudly on a typo."""
    suites = []
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text())
        meta = data.get("meta") or {}
        table = meta.get("table", "")
        if table.count(".") != 1:
            raise ValueError(f"{path.name}: meta.table must be '<schema>.<table>', got '{table}'")
        schema, name = table.split(".")
        suites.append(
            Suite(
                name=data["name"],
                schema=schema,
                table=name,
                blocking=bool(meta.get("blocking", False)),
                description=meta.get("description", ""),
                definition=data,
            )
        )
    return suites


def _describe(result) -> str:
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    detail = result.result or {}
    parts = [f"{config.type}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"]
    if "unexpected_count" in detail:
        parts.append(
            f"{detail['unexpected_count']} of {detail.get('element_count')} rows unexpected"
        )
        sample = detail.get("partial_unexpected_list") or []
        if sample:
            parts.append(f"e.g. {sample[:3]!r}")
    elif "observed_value" in detail:
        parts.append(f"observed {detail['observed_value']!r}")
    if result.exception_info and result.exception_info.get("raised_exception"):
        parts.append(f"error: {result.exception_info.get('exception_message')}")
    return "; ".join(parts)


def validate_suite(suite: Suite, url: str) -> SuiteResult:
    """Run one suite on its table in the warehouse at ``url`` (a postgresql:// DSN)."""
    import great_expectations as gx
    import sqlalchemy as sa

    engine_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
    engine = sa.create_engine(engine_url)
    try:
        if not sa.inspect(engine).has_table(suite.table, schema=suite.schema):
            # Not loaded yet (e.g. no logfile source configured): nothing to check.
            return SuiteResult(passed=True, evaluated=0, failures=[], table_missing=True)
    finally:
        engine.dispose()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_postgres(name="warehouse", connection_string=engine_url)
        asset = source.add_table_asset(
            name=suite.name, table_name=suite.table, schema_name=suite.schema
        )
        batch = asset.add_batch_definition_whole_table("whole table")
        gx_suite = context.suites.add(
            gx.ExpectationSuite(name=suite.name, expectations=suite.definition["expectations"])
        )
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=gx_suite)
        )
        outcome = validation.run(result_format="SUMMARY")
    failures = [_describe(r) for r in outcome.results if not r.success]
    return SuiteResult(passed=bool(outcome.success), evaluated=len(outcome.results),
                       failures=failures)  # fmt: skip
