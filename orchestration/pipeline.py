"""Pipeline runs from the command line: which Dagster jobs a selection of assets needs, and
running them in this process, recorded in Dagster like a run launched from the UI.

:func:`run_assets` returns what happened (:class:`PipelineResult`); printing it is the CLI's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ingestion.core.errors import SitelineError

# The job Dagster builds for "these assets"; partitioned assets run in their own job.
PARTITIONED_JOB = "pull_logfiles"


@dataclass(frozen=True)
class JobRun:
    """One finished run of a job (for a partitioned asset: of one partition)."""

    run_id: str
    job: str  # the job's name; ``__ASSET_JOB`` is Dagster's for "these assets"
    partition: str | None
    success: bool
    seconds: float
    materialised: frozenset[str]  # asset keys, e.g. "web/fct_page_views"
    checks: int
    failed_checks: tuple[str, ...] = ()  # asset check keys
    failed_steps: tuple[tuple[str, str], ...] = ()  # (step key, first line of its error)

    @property
    def ok(self) -> bool:
        """Succeeded, and every asset check passed."""
        return self.success and not self.failed_checks

    @property
    def name(self) -> str:
        """The job with its partition, as the run lines show it."""
        return self.job + (f" [{self.partition}]" if self.partition else "")


@dataclass
class PipelineResult:
    """Every run a selection needed, and the log the runs' dbt output went to."""

    log_path: Path
    runs: list[JobRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(run.ok for run in self.runs)


def run_log() -> Path:
    """The file the runs' dbt output goes to: ``$SITELINE_HOME/logs/siteline-run.log``."""
    from ingestion.core.home import data_dir

    return data_dir("logs") / "siteline-run.log"


def executable_assets(graph) -> dict:
    """Every asset key that can be materialised, by its user string (``web/fct_page_views``)."""
    return {k.to_user_string(): k for k in graph.get_all_asset_keys() if graph.get(k).is_executable}


def select_assets(known: list[str] | dict, selection: list[str] | None) -> list[str]:
    """The asset keys of ``selection`` (all when empty); an unknown key names the known ones."""
    if not selection:
        return list(known)
    unknown = [s for s in selection if s not in known]
    if unknown:
        raise SitelineError(
            f"unknown asset {', '.join(unknown)}; known assets: {', '.join(sorted(known))}"
        )
    return list(selection)


def job_run(result, partition: str | None, seconds: float) -> JobRun:
    """What a finished in-process execution did, from its events."""
    events = result.all_events
    checks = [
        e.event_specific_data for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    steps = []
    if not result.success:
        for event in events:
            if event.is_failure and event.step_key:
                message = (event.message or "").splitlines()
                steps.append((event.step_key, message[0] if message else ""))
    return JobRun(
        run_id=result.run_id,
        job=result.job_def.name,
        partition=partition,
        success=result.success,
        seconds=seconds,
        materialised=frozenset(
            e.asset_key.to_user_string()
            for e in events
            if e.event_type_value == "ASSET_MATERIALIZATION"
        ),
        checks=len(checks),
        failed_checks=tuple(c.asset_check_key.to_user_string() for c in checks if not c.passed),
        failed_steps=tuple(steps),
    )


def run_assets(
    selection: list[str] | None = None,
    on_run: Callable[[JobRun], None] | None = None,
    *,
    exclude: list[str] | None = None,
    ops: dict | None = None,
) -> PipelineResult:
    """Materialise every asset (or the selection, less ``exclude``) once, in-process,
    recorded in Dagster.

    Unpartitioned assets run as one run of the implicit asset job; a partitioned asset (the
    logfile pulls, a partition per source) runs once per partition. ``on_run`` hears of each
    run as it finishes; ``ops`` is the run's op configuration (``{"alerts__evaluation":
    {"config": {...}}}``). The process must be prepared (``runtime.prepare("ready")``).
    """
    from ingestion.core.warehouse import ensure_bi_reader

    ensure_bi_reader()  # the marts' grants are given as dbt builds them
    import dagster as dg

    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    known = executable_assets(graph)
    left_out = set(select_assets(known, exclude)) if exclude else set()
    keys = [known[s] for s in select_assets(known, selection) if s not in left_out]
    plain = [k for k in keys if graph.get(k).partitions_def is None]
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    runs: list[tuple[dg.JobDefinition, list, str | None]] = []
    if partitioned:
        job = defs.resolve_job_def(PARTITIONED_JOB)
        partitions_def = graph.get(partitioned[0]).partitions_def
        runs += [(job, partitioned, key) for key in partitions_def.get_partition_keys()]
    if plain:
        runs.append((defs.resolve_implicit_global_asset_job_def(), plain, None))

    outcome = PipelineResult(log_path=run_log())
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.DagsterInstance.get() as instance:
        for job, selected, partition in runs:
            # dagster-dbt echoes every dbt event to stdout; keep it in the run log instead.
            started = time.monotonic()
            with open(outcome.log_path, "a") as log, contextlib.redirect_stdout(log):
                result = job.execute_in_process(
                    run_config={**quiet, **({"ops": ops} if ops else {})},
                    instance=instance, asset_selection=selected,
                    partition_key=partition, raise_on_error=False,
                )  # fmt: skip
            run = job_run(result, partition, time.monotonic() - started)
            outcome.runs.append(run)
            if on_run is not None:
                on_run(run)
    return outcome
