"""The Spark session a run builds on, started once per process before dbt.

dbt-spark's `session` method reuses the session created here, so the pseudonym key set on it
as two session variables (the HMAC's padded keys, bound as parameters: never in SQL text) is
what the `pseudonymize` macro reads. The tables are Parquet in the configured warehouse folder,
named in a Derby metastore (or the cluster's), so a later process finds them again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import threading
from pathlib import Path

from cryoreg import config
from cryoreg.transform.pseudonym_plugin import VARIABLES, padded_keys

_session = []
_starting = threading.Lock()


def check_installed() -> None:
    """Fail at once, in one line, when Spark cannot start here."""
    if (
        importlib.util.find_spec("pyspark") is None
        or importlib.util.find_spec("dbt.adapters.spark") is None
    ):
        raise config.ConfigurationError(
            "CRYOREG_ENGINE=spark needs the spark extra: pip install 'cryoreg[spark]'"
        )
    java_home = os.environ.get("JAVA_HOME")
    if not shutil.which("java") and not (java_home and Path(java_home, "bin", "java").exists()):
        raise config.ConfigurationError(
            "CRYOREG_ENGINE=spark needs a Java 17 runtime (java on PATH, or JAVA_HOME)"
        )


def session(warehouse: Path, pseudonym_key: str):
    """The run's SparkSession (created on first use), with the pseudonym key set."""
    spark = _started(warehouse)
    set_key(spark, pseudonym_key)
    return spark


def _started(warehouse: Path):
    with _starting:
        if not _session:
            _session.append(_start(config.spark_settings(warehouse)))
        return _session[0]


def warm_up(warehouse: Path) -> None:
    """Start the session in the background (the JVM takes seconds: while Prefect's server
    starts); a failure here is raised again, in one line, where the run needs the session."""

    def start() -> None:
        with contextlib.suppress(Exception):  # the stage that needs Spark reports it
            _started(warehouse)

    threading.Thread(target=start, name="spark-warm-up", daemon=True).start()


def _start(settings: config.SparkSettings):
    import logging

    from pyspark.sql import SparkSession

    # pyspark logs every failed query's Java stack as JSON; the error itself reaches dbt
    logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)

    metastore = Path(settings.metastore_dir)
    metastore.mkdir(parents=True, exist_ok=True)
    Path(settings.warehouse_dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    derby = f"-Dderby.system.home={metastore}"
    builder = (
        SparkSession.builder.appName("cryoreg")
        .master(settings.master)
        .config("spark.sql.warehouse.dir", str(Path(settings.warehouse_dir).resolve()))
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL",
            f"jdbc:derby:;databaseName={metastore.resolve() / 'metastore_db'};create=true",
        )
        .config("spark.driver.extraJavaOptions", derby)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", os.environ.get("CRYOREG_SPARK_PARTITIONS", "8"))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        # the driver receives the night's hand-over (the marts, the night's versions) as Arrow
        .config("spark.driver.memory", os.environ.get("CRYOREG_SPARK_DRIVER_MEMORY") or "4g")
        .config("spark.driver.maxResultSize", "0")
        .enableHiveSupport()
    )
    # the JVM's own start-up lines (log4j's profile, host and library warnings) go to a log
    # file beside the tables, not to the terminal, where a run prints one line on failure
    with _stderr_to(metastore.parent / "spark.log"):
        spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


@contextlib.contextmanager
def _stderr_to(log: Path):
    """Point file descriptor 2 at `log` while the JVM is launched (it inherits it for life)."""
    saved = os.dup(2)
    try:
        with log.open("ab") as handle:
            os.dup2(handle.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def set_key(spark, pseudonym_key: str) -> None:
    """The HMAC's padded keys as session variables; an empty key leaves them null (the macro
    then fails the query)."""
    key = pseudonym_key.encode("utf-8")
    pads = padded_keys(key) if key else (None, None)
    for name, pad in zip(VARIABLES, pads, strict=True):
        spark.sql(f"declare or replace variable {name} binary")
        if pad is not None:
            spark.sql(f"set var {name} = unhex(?)", args=[pad.hex()])


def stop() -> None:
    """Stop the session (the JVM stays until the process ends)."""
    if _session:
        _session.pop().stop()


class SparkConnection:
    """The few calls the ledger's bookkeeping makes on a DuckDB connection (execute with `?`
    parameters, fetchone, fetchall), answered by Spark SQL: the run log and the load log are
    the same portable SQL on both engines."""

    def __init__(self, spark):
        self.spark = spark
        self._frame = None

    def execute(self, sql: str, params=None):
        self._frame = self.spark.sql(sql, args=list(params) if params else None)
        return self

    def fetchone(self):
        rows = self._frame.take(1)
        return tuple(rows[0]) if rows else None

    def fetchall(self):
        return [tuple(row) for row in self._frame.collect()]

    def close(self) -> None:
        self._frame = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def table_exists(spark, name: str) -> bool:
    return spark.catalog.tableExists(name)


MARTS = ("fct_tumor", "fct_procedure", "dim_patient", "fct_adverse_event", "fct_tumor_attrition")


def night_tables(run_id: str) -> dict[str, str]:
    """What the night's checks, statistics and report read, as Spark SQL per table of the
    store: the marts and the quarantine whole, the ledger's and the versions' rows of this run
    (file accounting, the delta's suites) and the current parents the delta joins to."""
    from cryoreg.contract import FILES

    run = "'" + run_id.replace("'", "''") + "'"
    tables = {f"marts.{m}": f"select * from marts.{m}" for m in MARTS}
    for name in ("rejected_rows", "rejected_rows_deidentified"):
        tables[f"quarantine.{name}"] = f"select * from quarantine.{name}"
    for spec in FILES:
        tables[f"raw.{spec.entity}"] = (
            f"select _source_file, _source_line, _run_id from raw.{spec.entity} "
            f"where _run_id = {run}"
        )
        tables[f"intermediate.int_{spec.entity}_versions"] = (
            f"select * from intermediate.int_{spec.entity}_versions where _run_id = {run}"
        )
    for parent in ("patients", "procedures", "tumors"):
        tables[f"intermediate.int_{parent}_current"] = (
            f"select * from intermediate.int_{parent}_current"
        )
    tables["audit.load_log"] = "select * from audit.load_log"
    return tables


def hand_over(spark, con, run_id: str) -> dict[str, int]:
    """Copy what the night's Python stages read from Spark into the DuckDB store, as Arrow:
    from here the checks, the statistics and the report run as on DuckDB, on the same rows.
    Returns the rows handed over per table."""
    counts = {}
    for target, sql in night_tables(run_id).items():
        schema = target.split(".")[0]
        frame = spark.sql(sql)
        if target.endswith("_versions"):  # the delta's suites read values, not the problems
            frame = frame.drop("_problems", "_reference_problem")
        table = frame.toArrow()
        con.execute(f"create schema if not exists {schema}")
        con.register("handed_over", table)
        try:
            con.execute(f"create or replace table {target} as select * from handed_over")
        finally:
            con.unregister("handed_over")
        counts[target] = table.num_rows
    return counts
