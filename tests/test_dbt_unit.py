"""dbt's unit tests (fixed inputs -> expected rows of one model): the SQL logic, checked here.

The nightly build leaves them out (`--exclude-resource-type unit_test`: they test code, not the
night's data), so this is where they run. dbt needs the inputs' columns from the warehouse: the
ledger of a real ingest, then every model built empty (`dbt run --empty`).
"""

from __future__ import annotations

import os

import duckdb
import pytest

from cryoreg.config import project_folder
from cryoreg.ingest import landing
from cryoreg.synth.writing import write_registry


def _dbt(*args: str):
    from dbt.cli.main import dbtRunner

    project = str(project_folder("dbt_project"))
    return dbtRunner().invoke(
        [*args, "--project-dir", project, "--profiles-dir", project, "--quiet"]
    )


@pytest.fixture
def empty_warehouse(tmp_path, monkeypatch):
    extracts = tmp_path / "extracts"
    write_registry(extracts, profile="paper")
    warehouse = tmp_path / "w.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        landing.ingest(con, extracts, "run-1")
    monkeypatch.setenv("CRYOREG_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("CRYOREG_PSEUDONYM_KEY", os.environ["CRYOREG_PSEUDONYM_KEY"])
    built = _dbt("run", "--empty")
    assert built.success, built.exception
    yield warehouse
    from cryoreg.transform.dbt import _release_duckdb

    _release_duckdb()


def test_dbt_unit_tests_pass(empty_warehouse):
    outcome = _dbt("test", "--select", "test_type:unit")
    results = getattr(outcome.result, "results", None) or []
    failed = [f"{r.node.name}: {r.status}: {r.message}" for r in results if r.status != "pass"]
    assert results, f"no unit test ran: {outcome.exception}"
    assert outcome.success and not failed, "\n".join(failed) or str(outcome.exception)
