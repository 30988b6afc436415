"""Source freshness of the registry's files: `dbt source freshness` on the ledger's load times,
judged against the thresholds in the settings, recorded as checks like any other."""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from cryoreg import config
from cryoreg.contract import FILES
from cryoreg.ingest import landing, ledger
from cryoreg.quality import checks as quality
from cryoreg.transform import dbt as transform

from conftest import write_extract

# hours since each file last delivered rows (adverse_events: never)
AGES = {"patients": 8 * 24, "procedures": 3 * 24, "tumors": 1, "imaging": 1}


def _one_row(entity: str) -> str:
    """A file of the extract contract with one row (only its header is checked at landing)."""
    spec = next(f for f in FILES if f.entity == entity)
    return ",".join(spec.column_names) + "\n" + ",".join("x" for _ in spec.column_names) + "\n"


@pytest.fixture
def store(tmp_path) -> Path:
    """A store whose ledger got each file of AGES that many hours ago, one published run per
    delivery (freshness reads only the ledger: no dbt build needed)."""
    path = tmp_path / "cryoreg.store.duckdb"
    now = datetime.now()
    by_age = sorted({age for age in AGES.values()}, reverse=True)
    with duckdb.connect(str(path)) as con:
        for day, age in enumerate(by_age, 1):
            files = {f"{e}.csv": _one_row(e) for e, a in AGES.items() if a == age}
            write_extract(tmp_path / "extracts", f"2015-01-0{day}", files)
            run = f"run-{day}"
            landing.ingest(con, tmp_path / "extracts", run, loaded_at=now - timedelta(hours=age))
            ledger.record_event(con, run, "published")
    return path


def test_stale_files_warn_and_a_file_silent_for_a_week_fails_the_night(store):
    found = {
        f.source: f for f in transform.source_freshness(store, os.environ["CRYOREG_PSEUDONYM_KEY"])
    }
    assert {s: f.status for s, f in found.items()} == {
        "registry.patients": "error",  # past 168 h
        "registry.procedures": "warn",  # past 48 h
        "registry.tumors": "pass",
        "registry.imaging": "pass",
        "registry.adverse_events": "no rows",
    }
    assert found["registry.procedures"].age_hours == pytest.approx(72, abs=0.1)
    assert (found["registry.tumors"].warn_after, found["registry.tumors"].error_after) == (48, 168)
    with duckdb.connect(str(store)) as con:
        recorded = quality.record(con, "run-now", quality.freshness_results(found.values()))
        rows = con.execute(
            """select check_name, tool, category, severity, status from audit.check_results
            where run_id = 'run-now' order by check_name"""
        ).fetchall()
    assert {(tool, category) for _, tool, category, _, _ in rows} == {("dbt", "completeness")}
    assert {
        name.removeprefix(quality.FRESHNESS_CHECK): (sev, st) for name, _, _, sev, st in rows
    } == {
        "registry.adverse_events": ("warn", "not_applicable"),
        "registry.imaging": ("warn", "passed"),
        "registry.patients": ("fatal", "failed"),
        "registry.procedures": ("warn", "failed"),
        "registry.tumors": ("warn", "passed"),
    }
    status = quality.run_status(recorded)
    assert status.status == "failed"
    assert status.fatal == [
        "dbt:source_freshness:registry.patients (dbt): newest row loaded 8.0 days ago "
        "(warn after 48 h, error after 168 h)"
    ]
    assert status.warnings == [
        "dbt:source_freshness:registry.procedures (dbt): newest row loaded 3.0 days ago "
        "(warn after 48 h, error after 168 h)"
    ]
    assert status.freshness["status"] == "failed"
    kinds = {s["source"]: s["kind"] for s in status.freshness["sources"]}
    assert kinds["registry.procedures"] == "warned" and kinds["registry.tumors"] == "passed"
    with pytest.raises(quality.DataQualityError, match="registry.patients"):
        quality.raise_for_fatal(status)


def test_the_thresholds_come_from_the_settings(store, monkeypatch):
    """CRYOREG_FRESHNESS_WARN_HOURS / _ERROR_HOURS reach dbt; 0 turns a threshold off."""
    monkeypatch.setenv("CRYOREG_FRESHNESS_WARN_HOURS", "100")
    monkeypatch.setenv("CRYOREG_FRESHNESS_ERROR_HOURS", "0")
    found = {f.source: f.status for f in transform.source_freshness(store, "k")}
    assert found["registry.patients"] == "warn"  # 192 h: past 100 h, and no error threshold
    assert found["registry.procedures"] == "pass"  # 72 h


@pytest.mark.parametrize(
    ("warn", "error", "message"),
    [
        ("two", "", "CRYOREG_FRESHNESS_WARN_HOURS='two' is not a whole number of hours"),
        ("", "-1", "CRYOREG_FRESHNESS_ERROR_HOURS='-1' must be 0 (off) or more hours"),
        ("200", "", "CRYOREG_FRESHNESS_WARN_HOURS=200 must be below CRYOREG_FRESHNESS_ERROR_"),
    ],
)
def test_wrong_thresholds_are_refused(monkeypatch, warn, error, message):
    monkeypatch.setenv("CRYOREG_FRESHNESS_WARN_HOURS", warn)
    monkeypatch.setenv("CRYOREG_FRESHNESS_ERROR_HOURS", error)
    with pytest.raises(config.ConfigurationError, match=re.escape(message)):
        config.freshness()


def test_default_thresholds_warn_after_two_days_and_fail_after_a_week(monkeypatch):
    for name in config.DEFAULT_FRESHNESS_HOURS:
        monkeypatch.delenv(name, raising=False)
    assert config.freshness() == config.Freshness(48, 168)
    monkeypatch.setenv("CRYOREG_FRESHNESS_WARN_HOURS", "0")
    assert config.freshness().dbt_vars() == {
        "freshness_warn_after_hours": 0,
        "freshness_error_after_hours": 168,
    }
