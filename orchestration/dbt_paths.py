"""Where the dbt project, its executable and the CLI's artifacts are.

Kept apart from ``orchestration.defs.models`` (which imports Dagster and dagster-dbt, about
4 s): ``siteline dbt`` and ``siteline docs`` need only these paths before they hand over to
dbt.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ingestion.core.home import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt_project"

# dbt's command line, with the scheduler of orchestration/dbt_main.py
DBT_EXECUTABLE = str(Path(sys.executable).with_name("siteline-dbt"))

# The pipeline's `dbt build` arguments: dbt's unit tests (fixed inputs, expected rows: the
# models' logic, not the data) are left to the test suite and to ``siteline dbt build``, as
# dbt advises for production (in every run they took 2 s before the sessionisation started).
PIPELINE_BUILD = ("build", "--exclude-resource-type", "unit_test")


def cli_target_dir() -> Path:
    """Where `siteline dbt` and `siteline docs` write dbt's artifacts: under the data
    directory, not in the project's ``target/``, whose manifest Dagster reads (a dbt command
    rewriting it while a run loads it would be read half-written)."""
    from ingestion.core.home import siteline_home

    return siteline_home() / "dbt" / "target"
