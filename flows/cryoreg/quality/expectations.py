"""Great Expectations: the steward's suites (expectations/*.yml) run as checkpoints.

GE 1.x cannot read DuckDB through SQLAlchemy here, so it gets pandas frames: the (small) marts
and the night's delta (raw rows this run loaded), never all history. Frames are de-identified
before GE sees them (only the columns a suite names; deltas carry no MRN, name, free text or
dates, only intervals), and results keep no failing values, so Data Docs cannot show
identifying data. Data Docs are built into a given folder and made to render offline
(data_docs.py).

great_expectations is imported inside functions: it takes seconds to import.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from cryoreg import config
from cryoreg.contract import BY_ENTITY, ExtractFile
from cryoreg.quality import checks as quality
from cryoreg.quality.checks import EXPECTATIONS_DIR, CheckResult
from cryoreg.quality.data_docs import index_page, make_offline


def _keep_spark_out() -> None:
    """Off Spark, tell Great Expectations that pyspark is absent.

    GE imports pyspark whenever it is installed, for its optional Spark support: about 1 s of
    every night, and pyspark's connect module ends processes started with `python -c` when
    grpc is missing. The checks hand GE pandas frames on either engine; on Spark, pyspark is
    imported before GE and this changes nothing.
    """
    try:
        spark = config.engine() == "spark"
    except config.ConfigurationError:  # the run refuses the setting itself
        spark = False
    if not spark:
        sys.modules.setdefault("pyspark", None)  # `import pyspark` then fails at once


_keep_spark_out()


# BASIC still reports element, missing and unexpected counts (all a check result needs);
# SUMMARY adds the failing rows' index list and a query for them, each a filtered copy of the
# whole frame per expectation (a third of GE's time on the marts), which nobody reads.
RESULT_FORMAT = {
    "result_format": "BASIC",
    "partial_unexpected_count": 0,  # never render failing values in Data Docs
    "include_unexpected_rows": False,
}
SITE = "cryoreg"


class SuiteFileError(RuntimeError):
    """A suite file a steward edited is malformed."""


@dataclass
class Suite:
    """One reviewed suite file: its target frame and its expectations (type, kwargs, meta)."""

    target: str
    description: str
    expectations: list[dict] = field(default_factory=list)
    path: Path | None = None

    @property
    def columns(self) -> list[str]:
        cols = []
        for exp in self.expectations:
            for key in ("column", "column_A", "column_B"):
                if key in exp["kwargs"] and exp["kwargs"][key] not in cols:
                    cols.append(exp["kwargs"][key])
            cols += [c for c in exp["kwargs"].get("column_list", []) if c not in cols]
        return cols


def _supports_mostly(kind: str) -> bool:
    from great_expectations.expectations.registry import get_expectation_impl

    impl = get_expectation_impl(kind)
    fields = getattr(impl, "model_fields", None) or getattr(impl, "__fields__", {})
    return "mostly" in fields


def check_name(target: str, exp: dict) -> str:
    """meta.name when given, else '<target>.<column>:<expectation without expect_>'."""
    if exp["meta"].get("name"):
        return str(exp["meta"]["name"])
    short = exp["type"].removeprefix("expect_")
    column = exp["kwargs"].get("column")
    return f"{target}.{column}:{short}" if column else f"{target}:{short}"


def load_suites(folder: Path = EXPECTATIONS_DIR, check_types: bool = True) -> list[Suite]:
    """Read and check every suite file; `mostly` comes from meta.threshold, never kwargs.

    check_types=False skips asking GE about each expectation type (and so importing GE): enough
    to know targets, columns and check names; the run itself always checks them.
    """
    import yaml

    suites = []
    for path in sorted(folder.glob("*.yml")):
        if path.name == quality.KNOWN_EXCEPTIONS_FILE:
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        target = data.get("target") or path.stem
        suite = Suite(target, str(data.get("description", "")), path=path)
        names = set()
        for i, raw in enumerate(data.get("expectations") or [], 1):
            where = f"{path.name}: expectation {i}"
            exp = {
                "type": raw.get("type"),
                "kwargs": dict(raw.get("kwargs") or {}),
                "meta": dict(raw.get("meta") or {}),
            }
            meta = exp["meta"]
            if not exp["type"]:
                raise SuiteFileError(f"{where}: no type")
            if meta.get("category") not in quality.CATEGORIES:
                raise SuiteFileError(f"{where}: meta.category must be one of {quality.CATEGORIES}")
            if meta.get("severity") not in quality.SEVERITIES:
                raise SuiteFileError(f"{where}: meta.severity must be one of {quality.SEVERITIES}")
            if "mostly" in exp["kwargs"]:
                raise SuiteFileError(f"{where}: give meta.threshold, not kwargs.mostly")
            threshold = float(meta.get("threshold", 0.0))
            if not 0.0 <= threshold < 1.0:
                raise SuiteFileError(f"{where}: meta.threshold must be in [0, 1)")
            try:
                mostly = _supports_mostly(exp["type"]) if check_types else "threshold" in meta
            except Exception as exc:  # GE raises its own not-found error
                raise SuiteFileError(f"{where}: unknown expectation {exp['type']}") from exc
            if mostly:
                meta["threshold"] = threshold
                if threshold > 0:
                    exp["kwargs"]["mostly"] = round(1.0 - threshold, 10)
            elif "threshold" in meta:
                raise SuiteFileError(f"{where}: {exp['type']} takes no threshold")
            else:
                meta["threshold"] = None
            name = check_name(target, exp)
            if name in names:
                raise SuiteFileError(f"{where}: check name {name} is used twice (set meta.name)")
            names.add(name)
            meta["name"] = name
            suite.expectations.append(exp)
        suites.append(suite)
    return suites


# ---------------------------------------------------------------- frames GE may see


def _days(later: str, earlier: str) -> str:
    return f"date_diff('day', {earlier}, {later})"


# Per file: (join, derived columns) of the night's rows: intervals instead of dates, no
# identifiers. The rows are the registry's accepted versions (int_<table>_versions), typed
# and in canonical codes by staging; parents are the current registry.
_DERIVED: dict[str, tuple[str, dict[str, str]]] = {
    "patients": (
        "",
        {
            "age_at_extract_years": f"{_days('r._extract_date', 'r.birth_date')} / 365.25",
            "vital_status_recorded": "r.death_date is not null or r.last_contact_date is not null",
        },
    ),
    "procedures": (
        "left join intermediate.int_patients_current p on r.patient_key = p.patient_key",
        {
            "age_at_procedure_years": f"{_days('r.procedure_date', 'p.birth_date')} / 365.25",
            "procedure_year": "year(r.procedure_date)",
        },
    ),
    "imaging": (
        "left join intermediate.int_tumors_current t on r.tumor_key = t.tumor_key",
        {"days_after_procedure": _days("r.imaging_date", "t.procedure_date")},
    ),
    "adverse_events": (
        "left join intermediate.int_procedures_current pr on r.procedure_key = pr.procedure_key",
        {"onset_day": _days("r.onset_date", "pr.procedure_date")},
    ),
}

# text columns that are neither identifiers nor free text
_SAFE_TEXT = {"histology"}


def delta_sql(spec: ExtractFile) -> str:
    """The night's accepted rows of one file, typed and de-identified (deletions left out)."""
    cols = [
        f"r.{col.name}"
        for col in spec.columns
        if col.kind in ("code", "integer", "number") or col.name in _SAFE_TEXT
    ]
    joins, derived = _DERIVED.get(spec.entity, ("", {}))
    cols += [f"{expr} as {name}" for name, expr in derived.items()]
    return f"""select {", ".join(cols)} from intermediate.int_{spec.entity}_versions r {joins}
        where r._run_id = $run_id and r._verdict <> 'quarantined' and not r._is_deleted"""


def target_frame(con: duckdb.DuckDBPyConnection, target: str, run_id: str, columns: list[str]):
    """A pandas frame of one target holding only the columns its suite names."""
    sql, needs_run = _frame_sql(target, columns)
    table = con.sql(sql, params={"run_id": run_id} if needs_run else None).to_arrow_table()
    return _numpy_frame(table)


def _frame_sql(target: str, columns: list[str]) -> tuple[str, bool]:
    """The query of one target's frame, and whether it takes $run_id."""
    schema, _, table = target.partition(".")
    if schema == "marts":
        source, needs_run = f"marts.{table}", False
    elif schema == "delta" and table in BY_ENTITY:
        source, needs_run = f"({delta_sql(BY_ENTITY[table])})", True
    else:
        raise SuiteFileError(f"unknown target {target} (marts.<table> or delta.<file>)")
    select = ", ".join(f'"{c}"' for c in columns) if columns else "1 as _row"
    return f"select {select} from {source} as t", needs_run


def _numpy_frame(table):
    """Arrow -> pandas in the dtypes GE's pandas engine vectorises (int64/float64 numpy).

    GE compares values one by one in Python (Series.map) for any other dtype: int32 or the
    nullable Int/boolean extension types of DuckDB's .df(), seconds per 100,000 rows. Integer
    columns with nulls become float64 with NaN, which GE counts as missing like NULL. Text
    columns become pandas categoricals: codes, not one Python string per row (GE's set and
    null tests vectorise on them alike).
    """
    import pyarrow as pa

    for i, col in enumerate(table.schema):
        numeric = pa.types.is_floating(col.type) or pa.types.is_decimal(col.type)
        if pa.types.is_integer(col.type) and not table.column(i).null_count:
            table = table.set_column(i, col.name, table.column(i).cast(pa.int64()))
        elif numeric:
            table = table.set_column(i, col.name, table.column(i).cast(pa.float64()))
    # cast in Arrow, so pandas builds consolidated blocks once (GE copies the frame per check)
    return table.to_pandas(date_as_object=False, strings_to_categorical=True)


# ---------------------------------------------------------------- running GE


def _lighter_pandas_engine() -> None:
    """Two whole-frame passes of GE's pandas engine that no result needs, skipped.

    GE fingerprints every batch by hashing the whole frame (a marker nobody reads; 1.2 s of
    GE's 5 s on the 1M-patient marts), and before a column's mean, sum or standard deviation it
    looks for Decimal objects one value at a time in Python, even in a float64 column, which
    cannot hold one (0.8 s there). Frames here are numpy-typed (_numpy_frame).
    """
    from great_expectations import util
    from great_expectations.execution_engine import pandas_execution_engine as engine

    engine.HASH_THRESHOLD = 0  # no fingerprint for any frame
    scan = util.does_ndarray_contain_decimal_dtype
    if not getattr(scan, "object_arrays_only", False):

        def decimal_scan(data):
            return data.dtype == object and scan(data)

        decimal_scan.object_arrays_only = True
        util.does_ndarray_contain_decimal_dtype = decimal_scan


def _context(docs: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        data_docs_sites={
            SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs),
                },
            }
        },
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def _row_count_bounds(con, run_id: str, exp: dict) -> tuple[int, int] | None:
    """min/max rows allowed from the previous run's count and the suite's tolerances."""
    change = exp["meta"]["versus_previous_run"]
    previous = quality.previous_observation(con, exp["meta"]["name"], run_id)
    if previous is None:
        return None
    low = math.floor(previous * (1 - float(change.get("max_drop", 0.0))))
    high = math.ceil(previous * (1 + float(change.get("max_growth", 0.0))))
    return low, high


def _not_applicable(suite: Suite, exp: dict, why: str, observed=None) -> CheckResult:
    details = {"reason": why}
    if observed is not None:
        details["observed_value"] = observed
    return CheckResult(
        check_name=exp["meta"]["name"],
        tool="great_expectations",
        category=exp["meta"]["category"],
        severity=exp["meta"]["severity"],
        threshold=exp["meta"]["threshold"],
        status="not_applicable",
        target=suite.target,
        details=details,
    )


def _to_result(suite: Suite, exp_meta: dict, kind: str, res) -> CheckResult:
    """A GE validation result as a check result (GE's own verdict decides the status)."""
    outcome = res.result or {}
    raised = (res.exception_info or {}).get("raised_exception", False)
    failing = outcome.get("unexpected_count")
    checked = outcome.get("element_count")
    if checked is not None and kind != "expect_column_values_to_not_be_null":
        checked -= outcome.get("missing_count") or 0
    details = {"expectation": kind}
    if "observed_value" in outcome and outcome["observed_value"] is not None:
        details["observed_value"] = _jsonable(outcome["observed_value"])
    if raised:
        details["message"] = str((res.exception_info or {}).get("exception_message"))[:300]
    if exp_meta.get("row_count_bounds"):
        details["allowed"] = exp_meta["row_count_bounds"]
    return CheckResult(
        check_name=exp_meta["name"],
        tool="great_expectations",
        category=exp_meta["category"],
        severity=exp_meta["severity"],
        threshold=exp_meta["threshold"],
        failing_rows=failing,
        checked_rows=checked,
        status="error" if raised else "passed" if res.success else "failed",
        target=suite.target,
        details=details,
    )


def _jsonable(value):
    """numpy scalars (GE's observed values) as plain Python, so they store as numbers."""
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def run_suites(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    docs_dir: Path,
    folder: Path = EXPECTATIONS_DIR,
    frames: dict | None = None,
    run_name: str | None = None,
) -> list[CheckResult]:
    """Run every suite as a checkpoint and build offline Data Docs into docs_dir.

    `frames` ({target: pandas frame}) replaces the frames read from the warehouse (tests);
    `run_name` names the run on the Data Docs pages (the night; default: the run id).
    """
    suites = load_suites(folder)
    bounds = {
        exp["meta"]["name"]: _row_count_bounds(con, run_id, exp)
        for suite in suites
        for exp in suite.expectations
        if "versus_previous_run" in exp["meta"]
    }

    def frame_of(suite: Suite):
        frame = (frames or {}).get(suite.target)
        return target_frame(con, suite.target, run_id, suite.columns) if frame is None else frame

    return _run_checkpoints(suites, frame_of, bounds, docs_dir, run_id, folder, run_name)


def asset_name(target: str) -> str:
    """The data asset a suite validates, as its Data Docs pages name it: the mart, or the
    file's rows this night loaded (its delta)."""
    schema, _, table = target.partition(".")
    return table if schema == "marts" else f"{table}.csv, this night's rows"


def _run_checkpoints(
    suites: list[Suite],
    frame_of,
    bounds: dict,
    docs_dir: Path,
    run_id: str,
    folder: Path,
    run_name: str | None = None,
) -> list[CheckResult]:
    """GE itself: one checkpoint per suite on frame_of(suite), then offline Data Docs.

    bounds: {check name: (min, max) rows allowed, or None on the first night}.
    """
    import great_expectations as gx
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    _lighter_pandas_engine()
    exceptions = quality.load_known_exceptions(folder / quality.KNOWN_EXCEPTIONS_FILE)
    # one run of every suite: its name (the night) and time head each validation page
    run = RunIdentifier(run_name=run_name or run_id, run_time=datetime.now(UTC))
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="cryoreg-gx-") as tmp:
        site = Path(tmp) / "site"
        ctx = _context(site)
        source = ctx.data_sources.add_pandas("cryoreg")
        ran = False
        for suite in suites:
            frame = frame_of(suite)
            if suite.target.startswith("delta.") and frame.empty:
                results += [
                    _not_applicable(suite, e, "no rows loaded this run") for e in suite.expectations
                ]
                continue
            configs = []
            for exp in suite.expectations:
                meta, kwargs = dict(exp["meta"]), dict(exp["kwargs"])
                if "versus_previous_run" in meta:
                    allowed = bounds.get(meta["name"])
                    if allowed is None:
                        results.append(_not_applicable(suite, exp, "no previous run", len(frame)))
                        continue
                    kwargs["min_value"], kwargs["max_value"] = allowed
                    meta["row_count_bounds"] = list(allowed)
                configs.append(ExpectationConfiguration(type=exp["type"], kwargs=kwargs, meta=meta))
            gx_suite = ctx.suites.add(
                ExpectationSuite(
                    name=suite.target,
                    expectations=configs,
                    meta={"notes": suite.description} if suite.description else None,
                )
            )
            asset = source.add_dataframe_asset(asset_name(suite.target))
            batch = asset.add_batch_definition_whole_dataframe("night")
            definition = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=suite.target, data=batch, suite=gx_suite)
            )
            checkpoint = ctx.checkpoints.add(
                gx.Checkpoint(
                    name=f"cryoreg {suite.target}",
                    validation_definitions=[definition],
                    actions=[],
                    result_format=RESULT_FORMAT,
                )
            )
            outcome = checkpoint.run(batch_parameters={"dataframe": frame}, run_id=run)
            ran = True
            for key, validation in outcome.run_results.items():
                # GE's page reads the asset's name from the batch spec, which a dataframe's
                # lacks ("Data asset: None"): name it in the stored result
                validation.meta.setdefault("batch_spec", {})["data_asset_name"] = asset.name
                ctx.validation_results_store.set(key, validation)
                for res in validation.results:
                    cfg = res.expectation_config
                    results.append(_to_result(suite, cfg.meta, cfg.type, res))
        if ran:
            ctx.build_data_docs(site_names=[SITE])
        site.mkdir(parents=True, exist_ok=True)
        make_offline(site)
        (site / "index.html").write_text(
            index_page(site, suites, results, run_id, exceptions), "utf-8"
        )
        if docs_dir.exists():
            shutil.rmtree(docs_dir)
        shutil.copytree(site, docs_dir)
    return results
