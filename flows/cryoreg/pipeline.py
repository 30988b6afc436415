"""The nightly flow: ingest -> dbt build -> data quality -> analyze -> report -> publish."""

from __future__ import annotations

import functools
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.runtime import task_run

from cryoreg import (
    __version__,
    analyze,
    artifacts,
    config,
    contracts,
    expectations,
    ingest,
    publish,
    quality,
    report,
    transform,
    validate,
)

# What the stages import on first use, in stage order: `cryoreg run` imports them while
# Prefect's temporary API server is still starting (prefect_api.use).
STAGE_IMPORTS = (
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "great_expectations",
    "scipy.stats",
    "lifelines",
    "matplotlib.figure",
)


def detached(stage):
    """Re-raise a stage's error without the frames below it.

    Those frames hold the stage's DuckDB connection; Prefect keeps the failed state (and so the
    traceback) until exit, where DuckDB's bindings would print leak warnings after our one-line
    error.
    """

    @functools.wraps(stage)
    def run(*args, **kwargs):
        logger, began = get_run_logger(), time.perf_counter()
        logger.info("stage started: %s", task_run.task_name)
        try:
            result = stage(*args, **kwargs)
        except Exception as exc:
            exc.__context__ = exc.__cause__ = None  # their frames may hold the connection too
            raise exc.with_traceback(None) from None
        logger.info("stage finished: %s in %.2f s", task_run.task_name, time.perf_counter() - began)
        return result

    return run


def connect(work: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection to the working copy, without DuckDB's progress bar (it would fill the
    nightly log with bar redraws on long queries)."""
    con = duckdb.connect(str(work), read_only=read_only)
    con.execute("set enable_progress_bar = false")
    return con


def transient(task, task_run, state) -> bool:
    """Retry only what can pass on a second try (file locks, I/O); data errors fail at once."""
    try:
        state.result()
    except (OSError, duckdb.IOException):
        return True
    except Exception:
        return False
    return False


RETRY = {"retries": 2, "retry_delay_seconds": 20, "retry_condition_fn": transient}


@task(name="ingest extracts", cache_policy=NO_CACHE, **RETRY)
@detached
def ingest_stage(work: Path, extracts: Path, run_id: str) -> ingest.IngestResult:
    """Load new extract folders into raw.*, quarantining bad rows."""
    logger = get_run_logger()
    with connect(work) as con:
        result = ingest.ingest(con, extracts, run_id, config.quarantine_limit())
    for acc in result.files:
        logger.info(
            "%s: read %d = loaded %d + quarantined %d",
            acc.file,
            acc.read,
            acc.loaded,
            acc.quarantined,
        )
    for warning in result.warnings:
        logger.warning(warning)
    if any(result.orphans.values()):
        logger.info(
            "across nights: %d rows removed, %d re-admitted (a parent deleted, arrived, or its "
            "date corrected)",
            result.orphans["cascaded"],
            result.orphans["readmitted"],
        )
    if result.skipped:
        logger.info("already loaded, skipped: %s", ", ".join(result.skipped))
    return result


# No retry: a second `dbt build` on a half-built working copy would find the staging
# watermarks already moved and the marts' touched sets empty; a failed night is rerun whole.
@task(name="dbt build", cache_policy=NO_CACHE)
@detached
def transform_stage(work: Path, key: str, full_refresh: bool = False) -> transform.DbtSummary:
    """Build staging, intermediate and mart models and run their tests."""
    summary = transform.dbt_build(work, key, full_refresh)
    logger = get_run_logger()
    if summary.full_refresh:
        logger.info("dbt build: full refresh: %s", summary.full_refresh)
    logger.info(
        "dbt build: %d nodes, %d passed, %d warned",
        summary.nodes,
        summary.passed,
        len(summary.warned),
    )
    for warning in summary.warned:
        logger.warning("dbt: %s", warning)
    return summary


@task(name="data quality", cache_policy=NO_CACHE)
@detached
def quality_stage(
    work: Path, run_id: str, dbt_summary: transform.DbtSummary, staged_out: Path
) -> dict:
    """Record every check of the night in audit.check_results; fail on a fatal one."""
    logger = get_run_logger()
    with connect(work) as con:
        validate.assert_no_identifying_columns(con)
        known = quality.load_known_exceptions()
        limit = config.quarantine_limit()
        for results in (
            quality.ingest_results(con, run_id, limit),
            quality.dbt_results(dbt_summary.results),
            contracts.check_extracts(con, run_id),
            contracts.check_marts(con),
            expectations.run_suites(con, run_id, staged_out / "data_docs"),
        ):
            quality.record(con, run_id, results, known)
        status = quality.run_status(con, run_id)
    for line in status["warnings"]:
        logger.warning("data quality: %s", line)
    quality.raise_for_fatal(status)
    return status


@task(name="analyze", cache_policy=NO_CACHE)
@detached
def analyze_stage(work: Path) -> dict:
    """Compute the paper's statistics from the marts."""
    with connect(work, read_only=True) as con:
        return analyze.compute_metrics(con)


@task(name="report", cache_policy=NO_CACHE)
@detached
def report_stage(work: Path, metrics: dict, staged_out: Path) -> Path:
    """Write metrics.json and report.html into the run's staging folder."""
    analyze.write_metrics(metrics, staged_out / "metrics.json")
    with connect(work, read_only=True) as con:
        return report.write_report(metrics, con, staged_out)


@task(name="publish", cache_policy=NO_CACHE, **RETRY)
@detached
def publish_stage(paths: config.RunPaths, staged_out: Path) -> list[Path]:
    """Atomically replace the published warehouse, then move the outputs into place."""
    return publish.publish(paths, staged_out)


def code_version() -> str:
    """The package version plus the git commit when run from a checkout."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(config.PROJECT_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+{commit}" if commit else __version__


def run_block(result: ingest.IngestResult, run_id: str, started: datetime) -> dict:
    """Traceability: which extracts (and hashes), which code, when."""
    return {
        "run_id": run_id,
        "code_version": code_version(),
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "extracts": [
            {
                "name": e.name,
                "content_hash": e.content_hash,
                "loaded_this_run": e.name in result.loaded,
            }
            for e in result.extracts
        ],
        "orphans": dict(result.orphans),
        "files": [
            {
                "extract": a.extract,
                "file": a.file,
                "read": a.read,
                "loaded": a.loaded,
                "quarantined": a.quarantined,
            }
            for a in result.files
        ],
    }


@flow(name="cryoreg-nightly", log_prints=True)
def nightly(
    extracts: str = "extracts",
    warehouse: str = "warehouse/cryoreg.duckdb",
    out: str = "out",
    full_refresh: bool = False,
) -> dict:
    """The whole nightly job; the published warehouse changes only if every stage succeeds.

    full_refresh: rebuild every dbt model from raw instead of tonight's changes only (done on
    its own when the dbt project's code changed since the last build).
    """
    started = datetime.now(UTC)
    paths = config.RunPaths(
        Path(extracts).resolve(), Path(warehouse).resolve(), Path(out).resolve()
    )
    key = config.pseudonym_key()
    run_id = _run_id()
    work = publish.prepare_working_copy(paths)
    staged_out = publish.staging_out_dir(paths, run_id)
    try:
        loaded = ingest_stage(work, paths.extracts, run_id)
        dbt_summary = transform_stage(work, key, full_refresh)
        data_quality = quality_stage(work, run_id, dbt_summary, staged_out)
        metrics = analyze_stage(work)
        metrics["run"] = run_block(loaded, run_id, started)
        metrics["run"]["data_quality"] = data_quality
        metrics["run"]["dbt"] = {
            "nodes": dbt_summary.nodes,
            "passed": dbt_summary.passed,
            "warned": dbt_summary.warned,
            "full_refresh": dbt_summary.full_refresh,
        }
        report_stage(work, metrics, staged_out)
        published = publish_stage(paths, staged_out)
        artifacts.publish_run_artifacts(metrics, paths.out)
    except BaseException:
        publish.discard_working_copy(paths)
        publish.discard_staged_out(staged_out)
        raise
    return {
        "metrics": metrics,
        "published": [str(p) for p in published],
        "warehouse": str(paths.warehouse),
    }


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())
