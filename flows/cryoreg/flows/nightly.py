"""The nightly flow: ingest -> dbt build -> data quality -> analyze -> report -> publish."""

from __future__ import annotations

import functools
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE
from prefect.runtime import task_run

from cryoreg import code_version, config
from cryoreg.analysis import metrics as analysis
from cryoreg.flows import alerts, artifacts, progress
from cryoreg.ingest import landing, ledger
from cryoreg.publish import runlock
from cryoreg.publish import warehouse as publish
from cryoreg.quality import accounting, expectations, steward_page
from cryoreg.quality import checks as quality
from cryoreg.report import html as report
from cryoreg.report import nights, trends
from cryoreg.transform import dbt as transform

# What the stages import on first use, in stage order: `cryoreg run` imports them while it
# waits (preload): for Prefect's temporary API to start, for the dbt process to build. dbt itself
# only where it runs in the run's own process (on Spark).
DBT_IMPORTS = ("dbt.cli.main",)
STAGE_IMPORTS = (
    "cryoreg.quality.marts",
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
            exc.cryoreg_stage = task_run.task_name  # what an alert names as the failed stage
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


@contextmanager
def ledger_connection(paths: config.RunPaths, key: str):
    """Where the ledger and its run log live: the DuckDB store, or Spark (CRYOREG_ENGINE)."""
    if config.engine() == "spark":
        from cryoreg.engine import spark as engine

        yield engine.SparkConnection(engine.session(paths.warehouse, key))
    else:
        with publish.open_store(paths) as con:
            yield con


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


@task(name="ingest extracts", cache_policy=NO_CACHE)
@detached
def ingest_stage(paths: config.RunPaths, run_id: str, key: str) -> landing.IngestResult:
    """Land new extract folders in the registry's ledger."""
    logger = get_run_logger()
    with ledger_connection(paths, key) as con:
        spark = getattr(con, "spark", None)
        if spark is not None:  # the store (owner-only) keeps the audit history on Spark too
            with publish.open_store(paths) as store:
                ledger.ensure_audit(store)
        result = landing.ingest(con, paths.extracts, run_id, spark=spark)
    for acc in result.files:
        logger.info("%s: read %d rows", acc.file, acc.read)
    for warning in result.warnings:
        logger.warning(warning)
    if result.skipped:
        logger.info("already loaded, skipped: %s", ", ".join(result.skipped))
    return result


@task(name="source freshness", cache_policy=NO_CACHE)
@detached
def freshness_stage(store: Path, key: str) -> list[transform.SourceFreshness]:
    """How long ago each registry file last delivered rows (dbt source freshness on the
    ledger); judged with the night's other checks, or alone on a night with nothing new."""
    found = transform.source_freshness(store, key)
    limits = config.freshness()
    stale = [f.source for f in found if f.status in ("warn", "error")]
    get_run_logger().info(
        "source freshness: %d files, %s (warn after %s h, error after %s h)",
        len(found),
        f"stale: {', '.join(stale)}" if stale else "none stale",
        limits.warn_after or "no",
        limits.error_after or "no",
    )
    return found


# No retry: a build that failed on data would fail again; a failed night is rerun whole.
@task(name="dbt build", cache_policy=NO_CACHE)
@detached
def transform_stage(store: Path, key: str, full_refresh: bool = False) -> transform.DbtSummary:
    """Build staging, the registry's rules, the definitions and the marts, and test them; the
    nodes done of the build's total go to the progress listeners and the log."""
    logger = get_run_logger()
    nodes = progress.StageProgress(task_run.task_name, logger)
    summary = transform.dbt_build(store, key, full_refresh, on_progress=nodes)
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


@task(name="hand over from Spark", cache_policy=NO_CACHE)
@detached
def hand_over_stage(paths: config.RunPaths, key: str, run_id: str) -> None:
    """On Spark: copy what the night's checks, statistics and report read (the marts, the
    quarantine, the night's ledger rows and versions) into the DuckDB store as Arrow."""
    from cryoreg.engine import spark as engine

    with publish.open_store(paths) as con:  # made, with its audit tables, by ingest
        handed = engine.hand_over(engine.session(paths.warehouse, key), con, run_id)
    get_run_logger().info("handed over from Spark: %d rows", sum(handed.values()))


@task(name="data quality", cache_policy=NO_CACHE)
@detached
def quality_stage(
    paths: config.RunPaths,
    run_id: str,
    landed: landing.IngestResult,
    dbt_summary: transform.DbtSummary,
    staged_out: Path,
    freshness: list[transform.SourceFreshness],
    night: str,
) -> quality.QualityStatus:
    """Account for every row, then record every check of the night in audit.check_results;
    fail on the quarantine limit or a fatal check."""
    from cryoreg.quality import marts  # pandera: imported while the run waits (STAGE_IMPORTS)

    logger = get_run_logger()
    with publish.open_store(paths) as con:
        limit = config.quarantine_limit()
        page = steward_page.write(con, paths.store, run_id)
        if page:
            logger.info("rows held back, for the steward: %s", page)
        hint = f"; every held-back row: {page}" if page else ""
        accounting.account(con, landed, run_id, limit, steward_hint=hint)
        for acc in landed.files:
            logger.info(
                "%s: read %d = loaded %d + quarantined %d",
                acc.file,
                acc.read,
                acc.loaded,
                acc.quarantined,
            )
        known = quality.load_known_exceptions()
        recorded = []
        for results in (
            quality.ingest_results(con, run_id, limit),
            quality.dbt_results(dbt_summary.results),
            quality.freshness_results(freshness),
            marts.check_marts(con),
            expectations.run_suites(con, run_id, staged_out / "data_docs", run_name=night),
        ):
            recorded += quality.record(con, run_id, results, known)
    status = quality.run_status(recorded)
    for line in status.warnings:
        logger.warning("data quality: %s", line)
    quality.raise_for_fatal(status)
    return status


@task(name="analysts' file", cache_policy=NO_CACHE)
@detached
def analysts_file_stage(paths: config.RunPaths, run_id: str) -> Path:
    """Write the run's own analysts' file (the marts and the de-identified quarantine) from the
    store; the audit tables join it once the night's checks are recorded."""
    return publish.build_candidate(paths, run_id)


@task(name="analyze", cache_policy=NO_CACHE)
@detached
def analyze_stage(candidate: Path) -> analysis.Results:
    """Compute the paper's statistics, and fit the curves the report draws, from the marts
    analysts will read (and the attrition steps the report's flowchart shows)."""
    with connect(candidate, read_only=True) as con:
        return analysis.compute(con)


@task(name="report", cache_policy=NO_CACHE)
@detached
def report_stage(results: analysis.Results, metrics: dict, staged_out: Path, night: dict) -> Path:
    """Write metrics.json and report.html into the run's staging folder (from the results and
    the run block: nothing is read from the warehouse), and the night's kept report."""
    analysis.write_metrics(metrics, staged_out / "metrics.json")
    kept = nights.night_dir(staged_out, night)
    return report.write_report(results, staged_out, run=metrics.get("run"), night=kept)


@task(name="nights and trends", cache_policy=NO_CACHE)
@detached
def nights_stage(candidate: Path, night: dict, staged_out: Path, out: Path) -> None:
    """Add the night to the history in the file analysts will read (audit.night_metrics), keep
    its outputs under nights/, and write the nights index and the trend page from that history."""
    with connect(candidate) as con:
        trends.append(con, night)
        trends.write_page(con, staged_out)
        history = trends.history(con)
    nights.keep_night(staged_out, night)
    nights.write_index(history, out, staged_out)


@task(name="publish", cache_policy=NO_CACHE, **RETRY)
@detached
def publish_stage(
    paths: config.RunPaths, candidate: Path, staged_out: Path, run_id: str, night: dict
) -> list[Path]:
    """Atomically replace the published warehouse, move the outputs into place, and count
    the night's ledger rows (and its outcomes in the history) from now on."""
    spark = None
    if config.engine() == "spark":
        from cryoreg.engine import spark as engine
        from cryoreg.publish import spark_views

        spark = engine.session(paths.warehouse, config.pseudonym_key())
        database = config.spark_settings(paths.warehouse).published_db
        spark_views.write_tables(spark, candidate, database, run_id)
    published = publish.publish(paths, candidate, staged_out)
    if spark is not None:
        spark_views.switch_views(spark, database, run_id)
    with publish.open_store(paths) as con:
        con.execute("begin")
        trends.append(con, night)
        if spark is None:
            ledger.record_event(con, run_id, "published")
        con.execute("commit")
    if spark is not None:
        ledger.record_event(engine.SparkConnection(spark), run_id, "published")
    return published


@task(name="quarantine history", cache_policy=NO_CACHE)
def history_stage(store: Path, key: str) -> None:
    """Record the published night's quarantine in its history (quarantine.snp_rejected_rows).
    The night is published already: a failure here is a warning, and the next night's
    snapshot records the rows still held back then."""
    if config.engine() == "spark":  # a snapshot merges rows: Spark needs Delta Lake for it
        get_run_logger().info("quarantine history: kept on DuckDB only")
        return
    try:
        transform.snapshot_quarantine(store, key)
    except transform.TransformError as exc:
        get_run_logger().warning("%s", exc)


def run_block(result: landing.IngestResult, run_id: str, started: datetime) -> dict:
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
        "warnings": list(result.warnings),
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

    full_refresh: restage the whole ledger (done on its own when the dbt project's code or the
    pseudonym key changed since the last build).
    """
    started = datetime.now(UTC)
    # the extracts root as given: messages name the paths the user wrote
    paths = config.RunPaths(Path(extracts), Path(warehouse).resolve(), Path(out).resolve())
    key = config.pseudonym_key()
    run_id = _run_id()
    # the command holds the lock already (held once more here); a deployed run takes it here
    with runlock.hold(paths.warehouse):
        return _night(paths, key, run_id, started, full_refresh)


def _night(
    paths: config.RunPaths, key: str, run_id: str, started: datetime, full_refresh: bool
) -> dict:
    """The stages, in order, with the warehouse's run lock held."""
    publish.discard_leftovers(paths)
    candidate = paths.candidate(run_id)
    out_existed = paths.out.exists()
    staged_out = paths.out / f".run-{run_id}"  # created when the first output is written
    ended = False  # the run's end is recorded in raw.run_events
    try:
        landed = ingest_stage(paths, run_id, key)
        freshness = freshness_stage(paths.store, key)
        if nothing_new(paths, landed, key, full_refresh):
            get_run_logger().info("nothing new: no extract folder to load; nothing published")
            data_quality = _judge_freshness_alone(paths, run_id, freshness)
            _end(paths, key, run_id, "nothing_new")
            ended = True  # a silent registry may still fail the night (below), not the warehouse
            if data_quality.status == "warned":
                _announce_warned(paths, run_id, started, data_quality, published=False)
            try:
                quality.raise_for_fatal(data_quality)
            except quality.DataQualityError as exc:
                exc.cryoreg_stage = "source freshness"
                raise
            return {
                "metrics": None,
                "published": [],
                "warehouse": str(paths.warehouse),
                "nothing_new": True,
                "skipped": landed.skipped,
                "data_quality": data_quality.as_dict(),
            }
        return _build_and_publish(
            paths, key, run_id, started, full_refresh, landed, freshness, candidate, staged_out
        )
    except BaseException as exc:
        publish.discard(candidate)
        publish.discard_staged_out(staged_out)
        if not out_existed and paths.out.is_dir() and not any(paths.out.iterdir()):
            paths.out.rmdir()  # a failed first night leaves no empty folder behind
        if not ended:
            _end(paths, key, run_id, "failed")
        if isinstance(exc, Exception):  # a stop signal ends the run at once, unlabelled
            alerts.mark_failed(
                run_id,
                _night_name(started, run_id),
                getattr(exc, "cryoreg_stage", None),
                type(exc).__name__,
                steward_page.page_of(paths.store, run_id),
            )
        raise


def _build_and_publish(
    paths: config.RunPaths,
    key: str,
    run_id: str,
    started: datetime,
    full_refresh: bool,
    landed: landing.IngestResult,
    freshness: list[transform.SourceFreshness],
    candidate: Path,
    staged_out: Path,
) -> dict:
    """The night's stages after ingest and freshness: build, check, analyse, report, publish."""
    dbt_summary = transform_stage(paths.store, key, full_refresh)
    if config.engine() == "spark":
        hand_over_stage(paths, key, run_id)
    staged_out.mkdir(parents=True)
    # the analysts' file, then the statistics from the marts it holds, while the night's checks
    # run: a failed check discards both
    written = analysts_file_stage.submit(paths, run_id)
    analyzed = analyze_stage.submit(candidate, wait_for=[written])
    try:
        data_quality = quality_stage(
            paths, run_id, landed, dbt_summary, staged_out, freshness, _night_name(started, run_id)
        )
    except Exception:
        analyzed.wait()  # their connections to the run's file close before the file goes
        raise
    written.result()  # its own error, not the statistics' "upstream failed"
    results = analyzed.result()
    with publish.open_store(paths) as con:
        trends.ensure_table(con)  # the history's table, published even before a first row
    publish.complete_candidate(paths, candidate)
    run = run_block(landed, run_id, started)
    run["data_quality"] = data_quality.as_dict()
    run["dbt"] = {
        "nodes": dbt_summary.nodes,
        "passed": dbt_summary.passed,
        "warned": dbt_summary.warned,
        "full_refresh": dbt_summary.full_refresh,
        # where the build's time goes (dbt's own timing of each node), slowest first
        "slowest_nodes": slowest_nodes(dbt_summary.results),
        # and what it spends on each kind of node (models, tests), summed over dbt's threads
        "seconds_by_kind": seconds_by_kind(dbt_summary.results),
    }
    metrics = analysis.metrics_json(results, run)
    night = trends.night_row(metrics, started, datetime.now(UTC))
    report_stage(results, metrics, staged_out, night)
    nights_stage(candidate, night, staged_out, paths.out)
    published = publish_stage(paths, candidate, staged_out, run_id, night)
    history_stage(paths.store, key)
    artifacts.publish_run_artifacts(metrics, paths.out)
    if data_quality.status == "warned":
        _announce_warned(paths, run_id, started, data_quality, published=True)
    return {
        "metrics": metrics,
        "published": [str(p) for p in published],
        "warehouse": str(paths.warehouse),
    }


def _judge_freshness_alone(
    paths: config.RunPaths, run_id: str, freshness: list[transform.SourceFreshness]
) -> quality.QualityStatus:
    """A night with nothing new checks only the registry's freshness: recorded in
    audit.check_results like any night's checks, its warnings logged."""
    with publish.open_store(paths) as con:
        recorded = quality.record(con, run_id, quality.freshness_results(freshness))
    status = quality.run_status(recorded)
    logger = get_run_logger()
    for line in status.warnings + status.fatal:
        logger.warning("data quality: %s", line)
    return status


def _night_name(started: datetime, run_id: str) -> str:
    """The night as its kept outputs name it: start date (UTC) and the run id's first 8."""
    return trends.folder({"started_at": started, "run_id": run_id})


def _announce_warned(
    paths: config.RunPaths,
    run_id: str,
    started: datetime,
    status: quality.QualityStatus,
    published: bool,
) -> None:
    """Tell the alerts (if any listen) that the night ended with warned checks; like an
    artifact, never fails a night that is over."""
    night = _night_name(started, run_id)
    report = artifacts.report_link(paths.out, night) if published else None
    page = steward_page.page_of(paths.store, run_id)
    try:
        subject, body = alerts.warned_message(
            night, run_id, status.as_dict(), published, report, page
        )
        alerts.announce_warned(night, run_id, subject, body)
    except Exception as exc:  # noqa: BLE001 - the night is published already
        get_run_logger().warning("cryoreg: alert about the warned night not sent: %s", exc)


def slowest_nodes(results: list[dict], keep: int = 12) -> list[dict]:
    """dbt's own timing of each node, slowest first: where a build's time goes."""
    timed = sorted(results, key=lambda r: -(r["execution_time"] or 0.0))[:keep]
    return [{"name": r["name"], "seconds": round(r["execution_time"] or 0.0, 3)} for r in timed]


def seconds_by_kind(results: list[dict]) -> dict[str, float]:
    """dbt's own timing summed per kind of node (model, test, ...)."""
    total: Counter[str] = Counter()
    for r in results:
        total[r["resource_type"]] += r["execution_time"] or 0.0
    return {kind: round(seconds, 3) for kind, seconds in sorted(total.items())}


def nothing_new(
    paths: config.RunPaths, landed: landing.IngestResult, key: str, full_refresh: bool
) -> bool:
    """No folder to load, a published warehouse, and the same code and key as its build:
    the night would publish what is published already."""
    if landed.loaded or full_refresh or not paths.warehouse.exists():
        return False
    fingerprint = transform.build_fingerprint(key)
    if transform.full_refresh_reason(paths.store, fingerprint, False) is not None:
        return False
    with ledger_connection(paths, key) as con:
        return ledger.previous_run_ended_well(con, landed.run_id)


def _end(paths: config.RunPaths, key: str, run_id: str, event: str) -> None:
    """Record how the run ended (best effort: a failure here must not hide the run's own)."""
    try:
        with ledger_connection(paths, key) as con:
            ledger.record_event(con, run_id, event)
    except Exception:  # noqa: BLE001 - the run's own error (if any) is the one to report
        pass


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())
