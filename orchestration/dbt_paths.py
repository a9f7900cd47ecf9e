"""Where the dbt project, its executable and the CLI's artifacts are, and ``siteline dbt`` /
``siteline docs``, which hand the process over to dbt.

Kept apart from ``orchestration.defs.models`` (which imports Dagster and dagster-dbt, slow to
import): these commands need only the paths before they hand over to dbt.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ingestion.core.errors import SitelineError
from ingestion.core.home import PROJECT_ROOT

DBT_DIR = PROJECT_ROOT / "dbt_project"

# dbt's command line, with the scheduler of orchestration/dbt_main.py
DBT_EXECUTABLE = str(Path(sys.executable).with_name("siteline-dbt"))

# The pipeline's `dbt build` arguments: dbt's unit tests (fixed inputs, expected rows: the
# models' logic, not the data) are left to the test suite and to ``siteline dbt build``, as
# dbt advises for production (in every run they would delay the sessionisation).
PIPELINE_BUILD = ("build", "--exclude-resource-type", "unit_test")


# The run's plan, manifest and scope models (dbt_project/models/intermediate/incremental/):
# an incremental model selected without them is built whole.
SCOPE_SELECTOR = "tag:incremental_scope"
SELECTING_COMMANDS = {"run", "build"}


def with_scope_models(args: list[str]) -> list[str]:
    """``args`` of a ``dbt run`` or ``dbt build`` that selects models (``-s``/``--select``),
    with :data:`SCOPE_SELECTOR` added to the selection, so the incremental models it selects
    rebuild only what changed; unchanged when the command names the tag itself (e.g. to
    exclude it) or selects nothing."""
    if not SELECTING_COMMANDS & set(args) or any(SCOPE_SELECTOR in a for a in args):
        return list(args)
    out: list[str] = []
    selecting = False
    for arg in args:
        if selecting and arg.startswith("-"):
            out.append(SCOPE_SELECTOR)
            selecting = False
        if arg.startswith(("--select=", "--models=")):
            out += ["--select" if arg.startswith("--select=") else "--models", arg.split("=", 1)[1]]
            selecting = True
            continue
        out.append(arg)
        if arg in ("-s", "--select", "-m", "--models"):
            selecting = True
    if selecting:
        out.append(SCOPE_SELECTOR)
    return out


def cli_target_dir() -> Path:
    """Where `siteline dbt` and `siteline docs` write dbt's artifacts: under the data
    directory, not in the project's ``target/``, whose manifest Dagster reads (a dbt command
    rewriting it while a run loads it would be read half-written)."""
    from ingestion.core.home import siteline_home

    return siteline_home() / "dbt" / "target"


def exec_dbt(args: list[str]):
    """``siteline dbt ARGS``: hand this process over to dbt in the project, its artifacts in
    :func:`cli_target_dir`; a selection of models gets the run's scope models
    (:func:`with_scope_models`). The process must be prepared (``runtime.prepare``)."""
    os.environ["DBT_TARGET_PATH"] = str(cli_target_dir())
    os.chdir(DBT_DIR)
    os.execv(DBT_EXECUTABLE, [DBT_EXECUTABLE, *with_scope_models(args)])


def generate_docs() -> Path:
    """Build the dbt documentation site (``dbt docs generate``); returns its index.html."""
    target = cli_target_dir()
    os.environ["DBT_TARGET_PATH"] = str(target)
    generated = subprocess.run([DBT_EXECUTABLE, "docs", "generate", "--quiet"], cwd=DBT_DIR)
    if generated.returncode != 0:
        raise SitelineError("dbt docs generate failed (see the output above)")
    return target / "index.html"


def exec_docs_server(port: int):
    """Hand this process over to ``dbt docs serve`` on 127.0.0.1:``port`` (after
    :func:`generate_docs`)."""
    os.chdir(DBT_DIR)
    os.execv(
        DBT_EXECUTABLE,
        [DBT_EXECUTABLE, "docs", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--no-browser"],
    )  # fmt: skip
