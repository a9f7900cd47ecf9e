"""Great Expectations suites (``expectations/suites``) as Dagster asset checks.

One check per suite, on the asset of its table. A blocking suite that fails stops the assets
downstream of its table in the same run (the dbt models are not built on bad data) and the
check's metadata in the Dagster UI lists every failed expectation with examples.
"""

from __future__ import annotations

import dagster as dg

from expectations import Suite, load_suites, validate_suite


def _check_for(suite: Suite) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(suite.asset_key),
        name="great_expectations",
        blocking=suite.blocking,
        description=f"Great Expectations suite {suite.name}: {suite.description}",
    )
    def _check() -> dg.AssetCheckResult:
        from ingestion.core.warehouse import warehouse_url

        result = validate_suite(suite, warehouse_url())
        metadata = {
            "suite": suite.name,
            "expectations evaluated": result.evaluated,
            "failed": len(result.failures),
        }
        if result.table_missing:
            metadata["note"] = f"{suite.schema}.{suite.table} does not exist yet; nothing to check"
        if result.failures:
            metadata["failures"] = dg.MetadataValue.md(
                "\n".join(f"- {failure}" for failure in result.failures)
            )
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description="; ".join(result.failures)[:1000] if result.failures else None,
        )

    return _check


great_expectations_checks = [_check_for(suite) for suite in load_suites()]
