"""Nightly operations: atomic publish under a reader, crash safety under SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import duckdb
import pytest

from conftest import metric_differences, run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")


def _outcomes(base) -> dict:
    metrics = json.loads((base / "out" / "metrics.json").read_text())
    metrics.pop("run")
    return metrics


@pytest.fixture(scope="module")
def published(paper_site):
    """The paper registry, run once: the published warehouse every test starts from."""
    return paper_site.base


@pytest.fixture(scope="module")
def uninterrupted(published, tmp_path_factory):
    """The same two nights, run without interruption: what a recovered run must equal."""
    base = tmp_path_factory.mktemp("uninterrupted")
    shutil.copytree(published, base, dirs_exist_ok=True, ignore=shutil.ignore_patterns("dbt_docs"))
    _add_adverse_event(base)
    run_cryoreg("run", cwd=base)
    return base


def _event_count(base) -> int:
    with duckdb.connect(str(base / "warehouse" / "cryoreg.duckdb"), read_only=True) as con:
        return con.execute("select count(*) from marts.fct_adverse_event").fetchone()[0]


@pytest.fixture
def site(published, tmp_path):
    shutil.copytree(published, tmp_path / "site", ignore=shutil.ignore_patterns("dbt_docs"))
    return tmp_path / "site"


def _add_adverse_event(site) -> None:
    """A later night brings one new adverse event for an existing procedure."""
    with duckdb.connect() as con:
        (procedure,) = con.execute(
            f"select procedure_id from read_csv('{site}/extracts/2014-12-31/procedures.csv') "
            "order by procedure_id limit 1"
        ).fetchone()
    night = site / "extracts" / "2015-01-01"
    night.mkdir()
    (night / "adverse_events.csv").write_text(
        f"event_id,procedure_id,onset_date,ctcae_grade,description\n"
        f"AE-NEW-1,{procedure},2015-01-01,2,pain\n"
    )


def test_reader_keeps_its_snapshot_and_never_blocks_the_run(site):
    warehouse = site / "warehouse" / "cryoreg.duckdb"
    reader = duckdb.connect(str(warehouse), read_only=True)
    count = "select count(*) from marts.fct_adverse_event"
    before = reader.execute(count).fetchone()[0]
    _add_adverse_event(site)
    run_cryoreg("run", cwd=site)  # would fail or hang if the reader blocked it
    assert reader.execute(count).fetchone()[0] == before  # same snapshot, still readable
    reader.close()
    with duckdb.connect(str(warehouse), read_only=True) as fresh:
        assert fresh.execute(count).fetchone()[0] == before + 1


@pytest.mark.parametrize("stage", ["ingest extracts", "dbt build", "analysts' file", "analyze"])
def test_killed_run_leaves_published_warehouse_intact(site, published, uninterrupted, stage):
    warehouse = site / "warehouse" / "cryoreg.duckdb"
    before = warehouse.read_bytes()
    _add_adverse_event(site)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryoreg.cli", "run"],
        cwd=site,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if f"stage started: {stage}" in line:
                os.killpg(proc.pid, signal.SIGKILL)
                break
    finally:
        os.killpg(proc.pid, signal.SIGKILL) if proc.poll() is None else None
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    assert warehouse.read_bytes() == before
    assert (site / "out" / "metrics.json").read_bytes() == (
        published / "out" / "metrics.json"
    ).read_bytes()  # the previous night's outputs stand
    run_cryoreg("run", cwd=site)  # the next run recovers on its own
    assert metric_differences(_outcomes(site), _outcomes(uninterrupted)) == []
    assert _event_count(site) == _event_count(published) + 1
    assert not list((site / "warehouse").glob(".*building*"))
    assert not list((site / "out").glob(".run-*"))  # the killed run's staging is cleaned


def test_a_new_pseudonym_key_rebuilds_every_model_from_raw(site):
    """A rotated key renames every patient; an incremental night would keep the old names on
    the rows it does not touch, so the night rebuilds from raw and no old key remains (in the
    store: its staging and marts)."""
    warehouse = site / "warehouse" / "cryoreg.store.duckdb"
    keys_sql = (
        "select patient_key from marts.dim_patient union all "
        "select patient_key from marts.fct_tumor union all "
        "select patient_key from staging.stg_registry__patients"
    )
    count_sql = "select count(*) from marts.dim_patient"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        old = {key for (key,) in con.execute(keys_sql).fetchall()}
        patients_before = con.execute(count_sql).fetchone()[0]
    _add_adverse_event(site)
    proc = run_cryoreg("run", cwd=site, env={"CRYOREG_PSEUDONYM_KEY": "a-rotated-key-for-a-test"})
    assert "full refresh: the dbt project or the pseudonym key changed" in proc.stdout
    with duckdb.connect(str(warehouse), read_only=True) as con:
        new = {key for (key,) in con.execute(keys_sql).fetchall()}
        patients_after = con.execute(count_sql).fetchone()[0]
    assert new and new.isdisjoint(old)  # every patient renamed, in staging and the marts
    assert patients_after == patients_before  # renamed, not duplicated


def test_changed_dbt_code_rebuilds_every_model_from_raw(site, uninterrupted):
    """Staging keeps rows staged on earlier nights; when the dbt project's code changed since
    the last build, the night restages the whole ledger instead."""
    store = site / "warehouse" / "cryoreg.store.duckdb"
    with duckdb.connect(str(store)) as con:
        # as if older code had built the store, and staged it differently
        con.execute("update audit.dbt_builds set fingerprint = 'older code'")
        con.execute("delete from staging.stg_registry__imaging where _source_line % 2 = 0")
    _add_adverse_event(site)
    proc = run_cryoreg("run", cwd=site)
    assert "full refresh: the dbt project or the pseudonym key changed" in proc.stdout
    assert metric_differences(_outcomes(site), _outcomes(uninterrupted)) == []
    with duckdb.connect(str(store), read_only=True) as con:
        fingerprint, reason = con.execute(
            "select fingerprint, full_refresh from audit.dbt_builds order by built_at desc limit 1"
        ).fetchone()
    assert fingerprint != "older code" and reason
