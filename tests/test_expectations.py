"""Great Expectations: reviewed suites, checkpoint results, offline Data Docs without PHI."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from test_quality import EVENTS, IMAGING, PATIENTS, PROCEDURES, TUMORS

from cryoreg.quality import checks as quality
from cryoreg.quality import data_docs, expectations
from cryoreg.quality.checks import DataQualityError

from conftest import ingested_warehouse

pytestmark = pytest.mark.xdist_group("great_expectations")  # import GE once per worker

SUITE = """
target: marts.fct_tumor
description: a small test suite
expectations:
  - type: expect_table_row_count_to_be_between
    meta:
      name: marts.fct_tumor:row_count_change
      category: plausibility
      severity: warn
      versus_previous_run: {max_drop: 0.0, max_growth: 0.5}
  - type: expect_column_values_to_be_between
    kwargs: {column: diameter_cm, min_value: 0.1, max_value: 30}
    meta: {name: "marts.fct_tumor.diameter_cm:contract_range", category: plausibility,
           severity: fatal, threshold: 0.0}
  - type: expect_column_values_to_not_be_null
    kwargs: {column: liver_segment}
    meta: {category: completeness, severity: warn, threshold: 0.25}
  - type: expect_column_mean_to_be_between
    kwargs: {column: diameter_cm, min_value: 1, max_value: 5}
    meta: {category: plausibility, severity: warn}
"""

PHI = ("MRN-SECRET", "Zebediah", "Quux", "Lovelace", "1931-07-04", "1950-02-03")


def _suites(tmp_path: Path, text: str = SUITE) -> Path:
    folder = tmp_path / "suites"
    folder.mkdir()
    (folder / "marts.fct_tumor.yml").write_text(text)
    (folder / "known_exceptions.yml").write_text("exceptions: []\n")
    return folder


def _frame(diameters, segments=None):
    segments = segments if segments is not None else [1] * len(diameters)
    return pd.DataFrame({"diameter_cm": diameters, "liver_segment": segments})


def _assert_offline(docs: Path) -> None:
    pages = list(docs.rglob("*.html"))
    assert (docs / "index.html") in pages and len(pages) > 2
    assert data_docs.remote_references(docs) == []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert not re.search(r"""(src|href|action)\s*=\s*["']?(https?:)?//""", text, re.I)
        assert not re.search(r"https?://", text, re.I), page
        assert "<script" not in text.lower()
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", text, re.I), page  # no dead handlers
        for ref in re.findall(r"""<(?:link|img)\b[^>]*?\b(?:href|src)=["']([^"'#?]+)""", text):
            assert (page.parent / ref).exists(), (page, ref)  # no broken local asset


def test_suite_runs_as_checkpoint_and_builds_offline_data_docs(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    frame = _frame([1.0, 2.5, 45.0, 3.0], [1, None, 2, 3])
    docs = tmp_path / "out" / "data_docs"
    results = expectations.run_suites(
        con, "r1", docs, _suites(tmp_path), frames={"marts.fct_tumor": frame}
    )
    by_name = {r.check_name: r for r in results}
    contract = by_name["marts.fct_tumor.diameter_cm:contract_range"]
    assert (contract.status, contract.severity, contract.failing_rows) == ("failed", "fatal", 1)
    assert contract.checked_rows == 4 and contract.tool == "great_expectations"
    missing = by_name["marts.fct_tumor.liver_segment:column_values_to_not_be_null"]
    assert (missing.status, missing.failing_rows, missing.threshold) == ("passed", 1, 0.25)
    assert by_name["marts.fct_tumor.diameter_cm:column_mean_to_be_between"].status == "failed"
    first = by_name["marts.fct_tumor:row_count_change"]
    assert first.status == "not_applicable" and first.details["observed_value"] == 4
    _assert_offline(docs)
    (page,) = docs.glob("validations/marts/fct_tumor/**/*.html")
    kept = page.read_text(encoding="utf-8")  # the rewrite keeps GE's content and layout
    assert "Expectation Validation Result" in kept and 'id="section-2"' in kept
    assert kept.count("<table") >= 3 and "diameter_cm" in kept
    index = (docs / "index.html").read_text()
    assert "marts.fct_tumor.diameter_cm:contract_range" in index
    assert 'href="validations/marts/fct_tumor/' in index

    kept = quality.record(con, "r1", results, {})
    with pytest.raises(DataQualityError) as err:
        quality.summarize(kept)
    assert str(err.value) == (
        "data quality check failed: marts.fct_tumor.diameter_cm:contract_range "
        "(great_expectations): 1 of 4 rows failing"
    )
    con.close()


def test_row_count_change_is_judged_against_the_previous_run(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    suites = _suites(tmp_path)
    night1 = expectations.run_suites(
        con, "r1", tmp_path / "d1", suites, frames={"marts.fct_tumor": _frame([1.0] * 10)}
    )
    quality.record(con, "r1", night1, {})
    night2 = expectations.run_suites(
        con, "r2", tmp_path / "d2", suites, frames={"marts.fct_tumor": _frame([1.0] * 16)}
    )
    change = next(r for r in night2 if r.check_name == "marts.fct_tumor:row_count_change")
    assert (change.status, change.severity) == ("failed", "warn")
    assert change.details["observed_value"] == 16 and change.details["allowed"] == [10, 15]
    status = quality.summarize(quality.record(con, "r2", night2, {})).as_dict()
    assert status["status"] == "warned"
    assert any("row_count_change" in w for w in status["warnings"])
    con.close()


def test_known_exception_turns_a_fatal_expectation_into_a_warning(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    suites = _suites(tmp_path)
    (suites / "known_exceptions.yml").write_text(
        "exceptions:\n"
        "  - check: marts.fct_tumor.diameter_cm:contract_range\n"
        "    reason: 45 cm tumor confirmed on CT\n"
        "    reviewer: registry steward\n"
        "    date: 2026-11-24\n"
    )
    results = expectations.run_suites(
        con, "r1", tmp_path / "docs", suites, frames={"marts.fct_tumor": _frame([1.0, 45.0])}
    )
    kept = quality.record(
        con, "r1", results, quality.load_known_exceptions(suites / "known_exceptions.yml")
    )
    status = quality.summarize(kept).as_dict()  # no raise
    assert any("contract_range" in w and "known exception" in w for w in status["warnings"])
    con.close()


def test_suite_files_are_checked(tmp_path):
    bad = SUITE.replace("threshold: 0.25}", "threshold: 0.25, mostly: 0.75}").replace(
        "kwargs: {column: liver_segment}", "kwargs: {column: liver_segment, mostly: 0.75}"
    )
    with pytest.raises(expectations.SuiteFileError, match="meta.threshold, not kwargs.mostly"):
        expectations.load_suites(_suites(tmp_path, bad))


def test_shipped_suites_cover_every_mart_and_extract_file():
    suites = expectations.load_suites()
    targets = {s.target for s in suites}
    assert {
        "marts.fct_tumor",
        "marts.fct_procedure",
        "marts.dim_patient",
        "marts.fct_adverse_event",
        "delta.patients",
        "delta.procedures",
        "delta.tumors",
        "delta.imaging",
        "delta.adverse_events",
    } <= targets
    for suite in suites:
        for exp in suite.expectations:
            assert exp["meta"]["category"] in quality.CATEGORIES
            assert exp["meta"]["severity"] in quality.SEVERITIES
    kinds = {e["type"] for s in suites for e in s.expectations}
    assert "expect_table_row_count_to_be_between" in kinds


def _tiny_warehouse(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """Real ingest of an extract full of identifying values, and hand-made small marts."""
    con = ingested_warehouse(
        tmp_path,
        {
            "patients.csv": PATIENTS,
            "procedures.csv": PROCEDURES,
            "tumors.csv": TUMORS,
            "imaging.csv": IMAGING,
            "adverse_events.csv": EVENTS,
        },
    )
    con.execute("create schema marts")
    con.execute(
        """create table marts.fct_tumor as select 2.5 as diameter_cm, 'hcc' as histology,
        4 as liver_segment, true as ts_success, true as te_evaluable, 1.5 as follow_up_years,
        null::double as ltp_time_years from range(3)"""
    )
    con.execute(
        """create table marts.fct_procedure as select 'CT' as guidance, 'general' as anesthesia,
        3 as probe_count, 'lt4cm' as size_group, 1 as tumor_count, 2 as max_ctcae_grade,
        true as any_ae, false as major_ae from range(2)"""
    )
    con.execute(
        """create table marts.dim_patient as select 'F' as sex, 70 as age_at_first_procedure,
        3.0 as overall_survival_years from range(2)"""
    )
    con.execute(
        """create table marts.fct_adverse_event as select 2 as ctcae_grade, 1 as onset_day
        from range(2)"""
    )
    return con


def test_no_identifying_values_reach_data_docs(tmp_path):
    con = _tiny_warehouse(tmp_path)
    for spec in ("patients", "procedures", "imaging", "adverse_events", "tumors"):
        frame = expectations.target_frame(con, f"delta.{spec}", "run-1", [])
        assert len(frame) > 0
    delta = con.sql(
        expectations.delta_sql(expectations.BY_ENTITY["patients"]), params={"run_id": "run-1"}
    ).df()
    assert not [c for c in delta.columns if re.search("mrn|name|birth", c)]
    docs = tmp_path / "data_docs"
    results = expectations.run_suites(con, "run-1", docs)
    assert {r.target for r in results if r.status != "not_applicable"} >= {
        "delta.patients",
        "marts.fct_tumor",
    }
    _assert_offline(docs)
    for path in docs.rglob("*"):
        if path.suffix in (".html", ".css", ".json"):
            text = path.read_text(encoding="utf-8")
            assert not [p for p in PHI if p in text], path
    con.close()


def test_a_night_without_new_rows_marks_delta_suites_not_applicable(tmp_path):
    con = _tiny_warehouse(tmp_path)
    results = expectations.run_suites(con, "run-2", tmp_path / "docs")
    delta = [r for r in results if r.target.startswith("delta.")]
    assert delta and {r.status for r in delta} == {"not_applicable"}
    assert (tmp_path / "docs" / "index.html").exists()
    con.close()


CATEGORICAL_SUITE = """
target: marts.fct_tumor
expectations:
  - type: expect_column_values_to_be_in_set
    kwargs: {column: histology, value_set: [hcc, colorectal]}
    meta: {category: conformance, severity: fatal, threshold: 0.0}
  - type: expect_column_values_to_not_be_null
    kwargs: {column: histology}
    meta: {category: completeness, severity: warn, threshold: 0.0}
  - type: expect_column_values_to_be_between
    kwargs: {column: segment, min_value: 1, max_value: 8}
    meta: {category: plausibility, severity: fatal, threshold: 0.0}
"""


def test_frames_from_arrow_are_vectorisable_and_checks_still_fail(tmp_path):
    import pyarrow as pa

    table = pa.table(  # as DuckDB hands them over: int32, decimal, text
        {
            "histology": pa.array(["hcc", "melanoma", None, "hcc"]),
            "segment": pa.array([1, 9, 2, None], pa.int32()),
            "count": pa.array([1, 2, 3, 4], pa.int32()),
            "size": pa.array([1.5, 2.0, 3.0, 4.0]).cast(pa.decimal128(4, 1)),
        }
    )
    frame = expectations._numpy_frame(table)
    assert [str(t) for t in frame.dtypes] == ["category", "float64", "int64", "float64"]
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    results = expectations.run_suites(
        con,
        "r1",
        tmp_path / "docs",
        _suites(tmp_path, CATEGORICAL_SUITE),
        frames={"marts.fct_tumor": frame},
    )
    got = {r.check_name.split(":", 1)[1]: (r.status, r.failing_rows) for r in results}
    assert got == {
        "column_values_to_be_in_set": ("failed", 1),
        "column_values_to_not_be_null": ("failed", 1),
        "column_values_to_be_between": ("failed", 1),
    }
