"""Where the dbt project, its executable and the CLI's artifacts are.

Kept apart from ``orchestration.defs.models`` (which imports Dagster and dagster-dbt, about
4 s): ``siteline dbt`` and ``siteline docs`` need only these paths before they hand over to
dbt.
"""

from __future__ import annotations

import sys
from pathlib import Path

from orchestration.home import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt_project"

DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))


def cli_target_dir() -> Path:
    """Where `siteline dbt` and `siteline docs` write dbt's artifacts: under the data
    directory, not in the project's ``target/``, whose manifest Dagster reads (a dbt command
    rewriting it while a run loads it would be read half-written)."""
    from orchestration.home import siteline_home

    return siteline_home() / "dbt" / "target"
