"""Check results table, status logic, known exceptions, ingest/dbt mapping, pandera contracts."""

from __future__ import annotations

import duckdb
import pytest

from cryoreg.quality import checks as quality
from cryoreg.quality.checks import CheckResult, DataQualityError

from conftest import ingested_warehouse

PATIENTS = (
    "patient_mrn,patient_name,sex,birth_date,death_date,last_contact_date\n"
    "MRN-SECRET-1,Zebediah Quux,F,1931-07-04,,2014-06-01\n"
    "MRN-SECRET-2,Ada Lovelace,m,1950-02-03,2013-01-01,\n"
    "MRN-SECRET-3,Bad Date,F,1960-13-40,,\n"
)
PROCEDURES = (
    "procedure_id,patient_mrn,procedure_date,guidance,anesthesia,probe_count\n"
    "P1,MRN-SECRET-1,2010-01-05, ct ,general,3\n"
    "P2,MRN-SECRET-2,2011-02-06,MRI,moderate,2\n"
    "P3,MRN-NOBODY,2011-02-06,MRI,moderate,2\n"
)
TUMORS = (
    "tumor_id,procedure_id,origin,histology,liver_segment,diameter_mm,technical_result\n"
    "T1,P1,primary,hcc,4,25,complete\n"
    "T2,P2,metastasis,colorectal,7,48,complete\n"
    "T3,P2,metastasis,colorectal,7,999,complete\n"
)
IMAGING = (
    "imaging_id,tumor_id,imaging_date,modality,finding\n"
    "I1,T1,2010-03-01,CT,no_tumor\n"
    "I2,T2,2011-04-01,MRI,no_tumor\n"
)
EVENTS = (
    "event_id,procedure_id,onset_date,ctcae_grade,description\n"
    "E1,P1,2010-01-06,2,pain\n"
    "E2,P2,2011-02-07,3,bleeding\n"
)


@pytest.fixture
def loaded(tmp_path):
    """A real warehouse after a real ingest of one small extract with a few bad rows."""
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
    yield con
    con.close()


def _result(name, severity="fatal", failing=0, checked=10, threshold=0.0, tool="pandera"):
    return CheckResult(
        check_name=name,
        tool=tool,
        category="conformance",
        severity=severity,
        threshold=threshold,
        failing_rows=failing,
        checked_rows=checked,
    )


def test_status_from_counts_and_threshold():
    assert _result("a").status == "passed"
    assert _result("a", failing=1).status == "failed"
    assert _result("a", failing=1, threshold=0.1).status == "passed"
    assert _result("a", failing=2, threshold=0.1).status == "failed"
    assert _result("a", failing=None).status == "error"
    with pytest.raises(ValueError):
        _result("a", severity="loud")


def test_record_and_summary_pass_warn_fatal(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    kept = quality.record(con, "r1", [_result("x.ok"), _result("x.soft", "warn", failing=3)], {})
    status = quality.summarize(kept).as_dict()
    assert status["status"] == "warned"
    assert status["passed"] == 1 and status["failed"] == 1
    assert status["kinds"] == {"passed": 1, "warned": 1, "failed": 0, "not applicable": 0}
    assert status["warnings"] == ["x.soft (pandera): 3 of 10 rows failing"]

    kept = quality.record(
        con, "r2", [_result("x.hard", failing=2), _result("x.other", failing=1)], {}
    )
    with pytest.raises(DataQualityError) as err:
        quality.summarize(kept)
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        "data quality check failed: x.hard (pandera): 2 of 10 rows failing (and 1 more fatal)"
    )
    # kept across nights: both runs stay in the table
    runs = con.execute("select distinct run_id from audit.check_results order by 1").fetchall()
    assert runs == [("r1",), ("r2",)]
    con.close()


def test_known_exception_downgrades_to_warn_but_stays_visible(tmp_path):
    listed = tmp_path / "known_exceptions.yml"
    listed.write_text(
        "exceptions:\n"
        "  - check: x.hard\n"
        "    reason: confirmed on source imaging\n"
        "    reviewer: registry steward\n"
        "    date: 2026-11-01\n"
        "  - check: x.expired\n"
        "    reason: was accepted once\n"
        "    reviewer: registry steward\n"
        "    date: 2020-01-01\n"
        "    expires: 2020-06-01\n"
    )
    exceptions = quality.load_known_exceptions(listed)
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    kept = quality.record(con, "r1", [_result("x.hard", failing=2)], exceptions)
    status = quality.summarize(kept).as_dict()  # does not raise
    assert status["status"] == "warned" and status["kinds"]["warned"] == 1
    assert "known exception: confirmed on source imaging" in status["warnings"][0]
    row = con.execute(
        "select severity, declared_severity, status, known_exception from audit.check_results"
    ).fetchall()[0]
    assert row[:3] == ("warn", "fatal", "failed")
    assert "registry steward" in row[3]

    kept = quality.record(con, "r2", [_result("x.expired", failing=1)], exceptions)
    with pytest.raises(DataQualityError, match="x.expired"):
        quality.summarize(kept)
    con.close()


def test_known_exceptions_need_reason_reviewer_and_date(tmp_path):
    bad = tmp_path / "known_exceptions.yml"
    bad.write_text("exceptions:\n  - check: x.hard\n    reason: because\n")
    with pytest.raises(quality.KnownExceptionsError, match="entry 1 lacks reviewer, date"):
        quality.load_known_exceptions(bad)


def test_the_shipped_known_exceptions_file_loads():
    assert isinstance(quality.load_known_exceptions(), dict)


def test_previous_observation_comes_from_an_earlier_run(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    assert quality.previous_observation(con, "m:row_count", "r1") is None
    first = _result("m:row_count")
    first.details = {"observed_value": 120}
    quality.record(con, "r1", [first], {})
    assert quality.previous_observation(con, "m:row_count", "r2") == 120
    assert quality.previous_observation(con, "m:row_count", "r1") is None
    con.close()


def test_ingest_quarantine_becomes_one_check_per_reason_and_file(loaded):
    results = quality.ingest_results(loaded, "run-1", 0.05)
    by_name = {r.check_name: r for r in results}
    bad_date = by_name["raw.patients:quarantine_bad_date"]
    assert (bad_date.failing_rows, bad_date.checked_rows) == (1, 3)
    assert bad_date.status == "failed" and bad_date.severity == "fatal"
    assert bad_date.category == "conformance"
    assert by_name["raw.procedures:quarantine_orphan"].failing_rows == 1
    assert by_name["raw.tumors:quarantine_out_of_range"].failing_rows == 1
    assert by_name["raw.imaging:quarantine_unknown_code"].status == "passed"
    assert by_name["raw.patients:quarantine_missing_required"].category == "completeness"
    assert "raw.patients:quarantine_orphan" not in by_name  # patients have no parent
    kept = quality.record(loaded, "run-1", results, {})
    with pytest.raises(DataQualityError, match="quarantine"):
        quality.summarize(kept)


def test_dbt_results_map_to_categories_and_severity():
    results = quality.dbt_results(
        [
            {"name": "stg_x", "resource_type": "model", "status": "success", "failures": None},
            {
                "name": "not_null_fct_tumor_diameter_cm",
                "resource_type": "test",
                "status": "pass",
                "failures": 0,
                "message": None,
            },
            {
                "name": "not_null_fct_procedure_size_group",
                "resource_type": "test",
                "status": "warn",
                "failures": 2,
                "message": "Got 2 results",
            },
            {
                "name": "unique_fct_tumor_tumor_key",
                "resource_type": "test",
                "status": "fail",
                "failures": 1,
                "message": "Got 1 result",
            },
            {
                "name": "assert_te_rate",
                "resource_type": "test",
                "status": "pass",
                "failures": 0,
                "tags": ["completeness"],
                "severity": "ERROR",
            },
            {"name": "test_unit", "resource_type": "unit_test", "status": "pass"},
        ]
    )
    by_name = {r.check_name: r for r in results}
    assert set(by_name) == {
        "dbt:not_null_fct_tumor_diameter_cm",
        "dbt:not_null_fct_procedure_size_group",
        "dbt:unique_fct_tumor_tumor_key",
        "dbt:assert_te_rate",
    }
    warned = by_name["dbt:not_null_fct_procedure_size_group"]
    assert (warned.status, warned.severity, warned.category) == ("failed", "warn", "completeness")
    failed = by_name["dbt:unique_fct_tumor_tumor_key"]
    assert (failed.status, failed.severity, failed.category) == ("failed", "fatal", "conformance")
    assert by_name["dbt:assert_te_rate"].category == "completeness"
    assert by_name["dbt:not_null_fct_tumor_diameter_cm"].status == "passed"


def test_many_results_are_recorded_in_batches(tmp_path):
    con = duckdb.connect(str(tmp_path / "q.duckdb"))
    count = quality.INSERT_BATCH * 2 + 7
    quality.record(con, "r1", [_result(f"x.{i}", failing=i % 2) for i in range(count)], {})
    rows = con.execute(
        "select count(*), count(*) filter (where status = 'failed') from audit.check_results"
    ).fetchall()
    assert rows == [(count, count // 2)]
    con.close()
