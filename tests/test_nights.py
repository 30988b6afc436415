"""Nightly operation end to end: `cryoreg synth --nights 3 --faults 0.01`, loaded night by night
(a root that gains one folder a night) and all at once; then a re-run and a changed folder.

Night by night must end where all at once does: same marts, same outcome metrics, the same rows
quarantined (once). Re-running the last night changes nothing; a loaded folder that changed is a
one-line error that leaves the published warehouse byte-identical. The nightly dbt build is
incremental, so a fourth night that deletes a tumor (its reads go with it) and corrects a
procedure date must also reach the marts of a full build.
"""

from __future__ import annotations

import json
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cryoreg.synth.faults import manifest_path
from cryoreg.synth.nights import extract_dates

from conftest import REGISTRY, marts_differences, quarantine_rows, run_cryoreg, write_extract
from conftest import metric_differences as differences

pytestmark = pytest.mark.xdist_group("nights")

NIGHTS = 3
ENV = {
    "CRYOREG_QUARANTINE_LIMIT": "0.25",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    base = tmp_path_factory.mktemp("nights")
    run_cryoreg("synth", "registry", "--nights", str(NIGHTS), "--faults", "0.01", cwd=base)
    registry = base / "registry"  # also holds _manifest/, which ingest must pass over
    folders = extract_dates(NIGHTS)
    once = base / "once"
    once.mkdir()
    run_cryoreg("run", "--extracts", str(registry), cwd=once, env=ENV)
    nightly = base / "nightly"
    (nightly / "extracts").mkdir(parents=True)
    per_night = []
    for name in folders:
        shutil.copytree(registry / name, nightly / "extracts" / name)
        run_cryoreg("run", cwd=nightly, env=ENV)
        per_night.append(metrics(nightly))
    return {"registry": registry, "once": once, "nightly": nightly, "per_night": per_night}


def warehouse(folder: Path) -> Path:
    return folder / "warehouse" / "cryoreg.duckdb"


def store(folder: Path) -> Path:
    """The registry's store: the ledger and the quarantine with the ids as received."""
    return folder / "warehouse" / "cryoreg.store.duckdb"


def metrics(folder: Path) -> dict:
    return json.loads((folder / "out" / "metrics.json").read_text())


def outcome(m: dict) -> dict:
    return {k: v for k, v in m.items() if k != "run" and "quarantin" not in k}


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_night_by_night_gives_the_marts_of_all_at_once(loads):
    diffs = marts_differences(warehouse(loads["nightly"]), warehouse(loads["once"]))
    assert all(d == (0, 0) for d in diffs.values()), diffs


def test_night_by_night_gives_the_metrics_of_all_at_once(loads):
    assert not differences(outcome(metrics(loads["nightly"])), outcome(metrics(loads["once"])))
    # and the nights differ from each other: data really arrived over time
    first, last = loads["per_night"][0], loads["per_night"][-1]
    assert first["cohort"]["tumors"] < last["cohort"]["tumors"]


def _corrections(once: Path) -> tuple[str, str, dict[str, str]]:
    """A fourth night's folder: delete a TE-evaluable tumor, move a procedure a day earlier (a
    procedure of other TE-evaluable tumors, so their days after the procedure change)."""
    tumor, procedure = query(
        warehouse(once),
        """select min(tumor_key) filter (where rank = 1),
                  min(procedure_key) filter (where rank = 2)
           from (select tumor_key, procedure_key,
                        dense_rank() over (order by procedure_key) as rank
                 from marts.fct_tumor where te_evaluable)""",
    )[0]
    (row,) = query(
        store(once),
        f"""select procedure_id, patient_mrn, procedure_date, guidance, anesthesia, probe_count
            from raw.procedures where procedure_id = '{procedure}'
            order by _extract_date desc, _source_line desc limit 1""",
    )
    earlier = (date.fromisoformat(row[2]) - timedelta(days=1)).isoformat()  # raw is text
    cells = ["" if v is None else str(v) for v in (row[0], row[1], earlier, *row[3:])]
    files = {
        "tumors.csv": "tumor_id,procedure_id,origin,histology,liver_segment,diameter_mm,"
        f"technical_result,record_status\n{tumor},,,,,,,deleted\n",
        "procedures.csv": "procedure_id,patient_mrn,procedure_date,guidance,anesthesia,"
        f"probe_count\n{','.join(cells)}\n",
    }
    return tumor, procedure, files


def test_a_deleted_tumor_and_a_corrected_procedure_date_reach_the_marts(loads, tmp_path):
    """The incremental path: night 4 on the nightly warehouse == all four nights at once."""
    tumor, procedure, files = _corrections(loads["once"])
    night4 = (date.fromisoformat(extract_dates(NIGHTS)[-1]) + timedelta(days=1)).isoformat()
    nightly = tmp_path / "nightly"
    shutil.copytree(loads["nightly"], nightly)
    registry = tmp_path / "registry"
    shutil.copytree(loads["registry"], registry)
    for root in (nightly / "extracts", registry):
        write_extract(root, night4, files)
    run_cryoreg("run", cwd=nightly, env=ENV)
    once = tmp_path / "once"
    once.mkdir()
    run_cryoreg("run", "--extracts", str(registry), cwd=once, env=ENV)
    diffs = marts_differences(warehouse(nightly), warehouse(once))
    assert all(d == (0, 0) for d in diffs.values()), diffs
    assert not differences(outcome(metrics(nightly)), outcome(metrics(once)))
    before = warehouse(loads["nightly"])
    gone = f"select count(*) from marts.fct_tumor where tumor_key = '{tumor}'"
    assert query(before, gone) == [(1,)] and query(warehouse(nightly), gone) == [(0,)]
    dates = (
        f"select distinct procedure_date from marts.fct_tumor where procedure_key = '{procedure}'"
    )
    [(old,)], [(new,)] = query(before, dates), query(warehouse(nightly), dates)
    assert new == old - timedelta(days=1)


def test_same_rows_quarantined_as_the_manifest_says(loads):
    nightly, once = quarantine_rows(store(loads["nightly"])), quarantine_rows(store(loads["once"]))
    assert nightly == once and len(nightly) == len(set(nightly))
    expected = pl.concat(
        pl.read_csv(
            manifest_path(loads["registry"], name),
            infer_schema_length=0,
            schema_overrides={"line": pl.Int64, "quarantined": pl.Boolean},
        )
        for name in extract_dates(NIGHTS)
    ).filter(pl.col("quarantined"))
    assert nightly == sorted(
        expected.select("extract", "file", "line", "id", "expected_reason").iter_rows()
    )
    assert len({row[0] for row in nightly}) == NIGHTS  # defects in every night


def test_each_run_loaded_only_its_new_folder(loads):
    names = extract_dates(NIGHTS)
    log = query(warehouse(loads["nightly"]), "select extract, run_id from audit.load_log")
    assert sorted(e for e, _ in log) == names and len({r for _, r in log}) == NIGHTS
    for j, m in enumerate(loads["per_night"]):
        flags = {e["name"]: e["loaded_this_run"] for e in m["run"]["extracts"]}
        assert flags == {name: i == j for i, name in enumerate(names[: j + 1])}
        assert {f["extract"] for f in m["run"]["files"]} == {names[j]}
        for f in m["run"]["files"]:
            assert f["read"] == f["loaded"] + f["quarantined"]


def test_rerunning_the_last_night_is_a_no_op(loads, tmp_path):
    """Nothing new to load: nothing changes, and the registry's files, silent for three days
    now, are stale: the night says so and records its freshness checks (warned)."""
    nightly = loads["nightly"]
    before = tmp_path / "before.duckdb"
    shutil.copy2(warehouse(nightly), before)
    log = sorted(query(before, "select * from audit.load_log"))
    accounting = sorted(query(before, "select * from audit.file_accounting"))
    rejected = quarantine_rows(before)
    metrics_before = (nightly / "out" / "metrics.json").read_bytes()
    with duckdb.connect(str(store(nightly))) as con:  # as if the last extract came 3 days ago
        for table in ("patients", "procedures", "tumors", "imaging", "adverse_events"):
            con.execute(f"update raw.{table} set _loaded_at = _loaded_at - interval 3 day")
    proc = run_cryoreg("run", cwd=nightly, env=ENV)
    assert "nothing new" in proc.stdout
    stale = ", ".join(f"{t} 3.0 days" for t in sorted(REGISTRY))
    assert f"registry freshness: warned (stale: {stale}; warn after 48 h, error after 168 h)" in (
        proc.stdout
    )
    assert "data quality: warned (5 checks: 0 passed, 5 warned, 0 failed" in proc.stdout
    checks = query(
        store(nightly),
        """select check_name, severity, status from audit.check_results where run_id = (
            select run_id from raw.run_events where event = 'nothing_new'
            order by event_at desc limit 1)""",
    )
    assert sorted(checks) == [
        (f"dbt:source_freshness:registry.{t}", "warn", "failed") for t in sorted(REGISTRY)
    ]
    after = warehouse(nightly)
    assert sorted(query(after, "select * from audit.load_log")) == log
    assert sorted(query(after, "select * from audit.file_accounting")) == accounting
    assert quarantine_rows(after) == rejected
    diffs = marts_differences(after, before)
    assert all(d == (0, 0) for d in diffs.values()), diffs
    # nothing is published: the outputs of the night before stay as they were
    assert (nightly / "out" / "metrics.json").read_bytes() == metrics_before


def test_a_loaded_folder_that_changed_is_an_error(loads):
    nightly = loads["nightly"]
    published = warehouse(nightly).read_bytes()
    changed = nightly / "extracts" / extract_dates(NIGHTS)[1] / "imaging.csv"
    text = changed.read_text()
    changed.write_text(text.replace(",CT,", ",MRI,", 1))
    assert changed.read_text() != text
    proc = run_cryoreg("run", cwd=nightly, env=ENV, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "2015-01-01: extract changed after it was loaded" in lines[0]
    assert lines[0].startswith("cryoreg: error: ")
    assert warehouse(nightly).read_bytes() == published
