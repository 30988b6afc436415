"""The cross-night orphan rule: after every run the live registry is what loading every folder
at once gives. A parent deleted in a later night takes its live children of earlier nights
with it (cascade); a row quarantined as an orphan comes back when its parent arrives
(re-admission). Checked on real DuckDB files, with staging's current-version logic.
"""

from __future__ import annotations

import duckdb
import pytest

from cryoreg import summary
from cryoreg.ingest import ingest
from cryoreg.registry import FILES

from conftest import quarantined, write_extract

NIGHT1, NIGHT2, NIGHT3 = "2014-12-30", "2014-12-31", "2015-01-01"

FIRST = {
    "patients.csv": "patient_mrn,sex,birth_date\n"
    "MRN1,F,1950-01-01\nMRN2,M,1960-01-01\nMRN3,F,1970-01-01\n",
    "procedures.csv": "procedure_id,patient_mrn,procedure_date,guidance\n"
    "P1,MRN1,2010-01-01,CT\nP2,MRN2,2010-02-01,CT\nP3,MRN3,2010-03-01,CT\n",
    "tumors.csv": "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result\n"
    "T1,P1,primary,hcc,20,complete\nT2,P2,primary,hcc,30,complete\n"
    "T5,P5,primary,hcc,25,complete\n",  # line 4: P5 arrives in night 2
    "imaging.csv": "imaging_id,tumor_id,imaging_date,modality,finding\n"
    "I1,T1,2010-04-01,CT,no_tumor\n"
    "I2,T2,2010-05-01,MRI,no_tumor\n"
    "I3,T9,2010-06-01,CT,residual_tumor\n"  # line 4: T9 arrives in night 2
    "I5,T5,2010-07-01,CT,no_tumor\n"  # line 5: orphan of an orphan (T5)
    "I6,T6,2010-01-15,CT,no_tumor\n",  # line 6: T6 arrives, but I6 precedes its procedure
    "adverse_events.csv": "event_id,procedure_id,onset_date,ctcae_grade\n"
    "A1,P1,2010-01-02,2\nA2,P2,2010-02-02,3\n",
}
SECOND = {
    "patients.csv": "patient_mrn,sex,birth_date,record_status\nMRN1,,,deleted\nMRN3,,,deleted\n",
    # P3 is corrected the night its patient goes: both of its versions are orphans
    "procedures.csv": "procedure_id,patient_mrn,procedure_date,guidance\n"
    "P5,MRN2,2010-03-01,CT\nP3,MRN3,2010-03-02,MRI\nP6,MRN2,2010-03-01,CT\n",
    "tumors.csv": "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result\n"
    "T9,P2,metastasis,colorectal,15,incomplete\nT6,P6,primary,hcc,10,complete\n",
}
# MRN1 registered again: everything the cascade removed is live again
THIRD = {"patients.csv": "patient_mrn,sex,birth_date\nMRN1,F,1950-01-01\n"}

LIVE_AFTER_TWO = {
    "patients": {"MRN2"},
    "procedures": {"P2", "P5", "P6"},
    "tumors": {"T2", "T5", "T6", "T9"},
    "imaging": {"I2", "I3", "I5"},
    "adverse_events": {"A2"},
}


def live_rows(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple]]:
    """What staging sees: per id the current version (latest extract, then latest line), live
    ones only; every extract and lineage column but the run id and load time."""
    out = {}
    for spec in FILES:
        cols = ", ".join([*spec.column_names, "_extract_date", "_source_file", "_source_line"])
        out[spec.entity] = set(
            con.execute(
                f"""select {cols} from (
                    select *, row_number() over (partition by {spec.id_column}
                        order by _extract_date desc, _source_line desc) as _rank
                    from raw.{spec.entity})
                where _rank = 1 and lower(coalesce(record_status, '')) <> 'deleted'"""
            ).fetchall()
        )
    return out


def live_ids(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    return {entity: {row[0] for row in rows} for entity, rows in live_rows(con).items()}


def accounted(results) -> None:
    for result in results:
        for acc in result.files:
            assert acc.read == acc.loaded + acc.quarantined, acc


def nightly(tmp_path, nights: list[tuple[str, dict]]):
    """Load the folders one run at a time (a root that gains one folder a night)."""
    root = tmp_path / "nightly"
    con = duckdb.connect(str(tmp_path / "nightly.duckdb"))
    results = []
    for i, (name, files) in enumerate(nights, start=1):
        write_extract(root, name, files)
        results.append(ingest(con, root, f"run-{i}", 1.0))
    return con, results


def at_once(tmp_path, nights: list[tuple[str, dict]]):
    root = tmp_path / "once"
    for name, files in nights:
        write_extract(root, name, files)
    con = duckdb.connect(str(tmp_path / "once.duckdb"))
    return con, ingest(con, root, "run-once", 1.0)


TWO_NIGHTS = [(NIGHT1, FIRST), (NIGHT2, SECOND)]


def test_a_deleted_patient_takes_its_earlier_rows_out_of_the_live_registry(tmp_path):
    con, results = nightly(tmp_path, TWO_NIGHTS)
    assert live_ids(con) == LIVE_AFTER_TWO
    accounted(results)
    # P1 and all under it, and P3's first version: one tombstone each, this run's
    tombs = con.execute(
        """select record_id_col, _source_file, _run_id from (
            select procedure_id as record_id_col, _source_file, _run_id, record_status
            from raw.procedures union all
            select tumor_id, _source_file, _run_id, record_status from raw.tumors union all
            select imaging_id, _source_file, _run_id, record_status from raw.imaging union all
            select event_id, _source_file, _run_id, record_status from raw.adverse_events)
        where _source_file like 'cascade:%' order by all"""
    ).fetchall()
    root = f"cascade:{NIGHT2}/patients.csv"
    assert tombs == [(i, root, "run-2") for i in ("A1", "I1", "P1", "P3", "T1")]
    # each removal is a quarantine row at the removed row's own file and line, and logged
    removed = con.execute(
        "select file, line, record_id, reason_code, reason from quarantine.rejected_rows "
        "where run_id = 'run-2' and file like ? and reason_code = 'orphan' order by all",
        [f"{NIGHT1}/%"],
    ).fetchall()
    assert [r[:4] for r in removed] == [
        (f"{NIGHT1}/adverse_events.csv", 2, "A1", "orphan"),
        (f"{NIGHT1}/imaging.csv", 2, "I1", "orphan"),
        (f"{NIGHT1}/procedures.csv", 2, "P1", "orphan"),
        (f"{NIGHT1}/procedures.csv", 4, "P3", "orphan"),
        (f"{NIGHT1}/tumors.csv", 2, "T1", "orphan"),
    ]
    assert f"parent 'MRN1' deleted in {NIGHT2}/patients.csv line 2" in removed[2][4]
    assert "removed by the cascade" in removed[0][4]
    log = con.execute(
        "select action, entity, record_id, parent_id from audit.orphan_log "
        "where action = 'cascaded' order by all"
    ).fetchall()
    assert log == [
        ("cascaded", "adverse_events", "A1", "P1"),
        ("cascaded", "imaging", "I1", "T1"),
        ("cascaded", "procedures", "P1", "MRN1"),
        ("cascaded", "procedures", "P3", "MRN3"),
        ("cascaded", "tumors", "T1", "P1"),
    ]
    assert results[1].orphans == {"cascaded": 5, "readmitted": 4}
    # the night's own accounting is untouched: the cascade is reported beside it
    assert [(a.file, a.read, a.loaded, a.quarantined) for a in results[1].files] == [
        (f"{NIGHT2}/patients.csv", 2, 2, 0),
        (f"{NIGHT2}/procedures.csv", 3, 2, 1),  # P3's correction: an orphan
        (f"{NIGHT2}/tumors.csv", 2, 2, 0),
    ]


def test_orphans_come_back_when_their_parent_arrives(tmp_path):
    con, results = nightly(tmp_path, TWO_NIGHTS)
    assert results[0].orphans == {"cascaded": 0, "readmitted": 0}
    back = con.execute(
        "select imaging_id, tumor_id, _extract_date::varchar, _source_file, _source_line, _run_id "
        "from raw.imaging where imaging_id in ('I3', 'I5') order by 1"
    ).fetchall()
    assert back == [
        ("I3", "T9", NIGHT1, f"{NIGHT1}/imaging.csv", 4, "run-2"),
        ("I5", "T5", NIGHT1, f"{NIGHT1}/imaging.csv", 5, "run-2"),
    ]
    released = con.execute(
        "select record_id, released_run_id from quarantine.rejected_rows "
        "where released_at is not null order by 1"
    ).fetchall()
    assert released == [("I3", "run-2"), ("I5", "run-2"), ("I6", "run-2"), ("T5", "run-2")]
    # I6 came back only to be judged against its parent: it precedes its procedure
    assert ("I6", "impossible_date") in {(r[3], r[4]) for r in quarantined(con) if r[0] == NIGHT1}
    assert "I6" not in live_ids(con)["imaging"]
    log = con.execute(
        "select entity, record_id, parent_id from audit.orphan_log "
        "where action = 'readmitted' order by all"
    ).fetchall()
    assert log == [
        ("imaging", "I3", "T9"),
        ("imaging", "I5", "T5"),
        ("imaging", "I6", "T6"),
        ("tumors", "T5", "P5"),
    ]


@pytest.mark.parametrize("nights", [TWO_NIGHTS, [*TWO_NIGHTS, (NIGHT3, THIRD)]])
def test_night_by_night_equals_all_at_once(tmp_path, nights):
    by_night, results = nightly(tmp_path, nights)
    once, result = at_once(tmp_path, nights)
    accounted([*results, result])
    assert live_rows(by_night) == live_rows(once)
    assert quarantined(by_night) == quarantined(once)
    assert result.orphans == {"cascaded": 0, "readmitted": 0}


def test_a_deleted_parent_registered_again_brings_its_rows_back(tmp_path):
    con, results = nightly(tmp_path, [*TWO_NIGHTS, (NIGHT3, THIRD)])
    assert live_ids(con)["procedures"] == {"P1", "P2", "P5", "P6"}
    assert {"T1"} <= live_ids(con)["tumors"] and {"I1"} <= live_ids(con)["imaging"]
    assert "A1" in live_ids(con)["adverse_events"]
    assert results[2].orphans == {"cascaded": 0, "readmitted": 4}
    # the cascade's tombstones gave way; the rows are back with their own lineage
    assert not con.execute(
        "select count(*) from raw.procedures where procedure_id = 'P1' and _source_file like "
        "'cascade:%'"
    ).fetchone()[0]
    assert con.execute(
        "select _source_file, _source_line, _run_id from raw.procedures where procedure_id = 'P1'"
    ).fetchall() == [(f"{NIGHT1}/procedures.csv", 2, "run-3")]


def test_a_later_version_keeps_an_orphan_quarantined(tmp_path):
    first = {
        "patients.csv": FIRST["patients.csv"],
        "procedures.csv": FIRST["procedures.csv"],
        "tumors.csv": FIRST["tumors.csv"],
        "imaging.csv": "imaging_id,tumor_id,imaging_date,modality,finding\n"
        "I7,T9,2010-06-01,CT,no_tumor\n",
    }
    second = {
        "tumors.csv": "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result\n"
        "T9,P2,primary,hcc,15,complete\n",
        "imaging.csv": "imaging_id,tumor_id,imaging_date,modality,finding\n"
        "I7,T2,2010-06-02,MRI,no_tumor\n",
    }
    nights = [(NIGHT1, first), (NIGHT2, second)]
    by_night, results = nightly(tmp_path, nights)
    once, _ = at_once(tmp_path, nights)
    assert live_rows(by_night) == live_rows(once)
    assert results[1].orphans == {"cascaded": 0, "readmitted": 0}
    assert ("I7", "orphan") in {(r[3], r[4]) for r in quarantined(by_night)}


def test_an_older_warehouse_is_upgraded_in_place(tmp_path):
    """A quarantine table from before re-admission gains its released columns."""
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema quarantine")
        con.execute(
            """create table quarantine.rejected_rows (
                run_id varchar, extract varchar, file varchar, line bigint, record_id varchar,
                column_name varchar, raw_value varchar, reason_code varchar, reason varchar,
                raw_record json, quarantined_at timestamp)"""
        )
    root = tmp_path / "ex"
    write_extract(root, NIGHT1, FIRST)
    with duckdb.connect(str(db)) as con:
        ingest(con, root, "run-1", 1.0)
        write_extract(root, NIGHT2, SECOND)
        assert ingest(con, root, "run-2", 1.0).orphans == {"cascaded": 5, "readmitted": 4}


def test_rerun_after_cascade_and_readmission_is_a_no_op(tmp_path):
    con, _ = nightly(tmp_path, TWO_NIGHTS)
    before = {e: sorted(map(str, r)) for e, r in live_rows(con).items()}
    counts = [con.execute(f"select count(*) from raw.{s.entity}").fetchone() for s in FILES]
    q = con.execute("select count(*) from quarantine.rejected_rows").fetchone()
    again = ingest(con, tmp_path / "nightly", "run-3", 1.0)
    assert again.loaded == [] and again.orphans == {"cascaded": 0, "readmitted": 0}
    assert [con.execute(f"select count(*) from raw.{s.entity}").fetchone() for s in FILES] == counts
    assert con.execute("select count(*) from quarantine.rejected_rows").fetchone() == q
    assert {e: sorted(map(str, r)) for e, r in live_rows(con).items()} == before


def test_summary_line():
    line = summary.orphan_line({"cascaded": 3, "readmitted": 2})
    assert line == (
        "cascade: 3 rows removed (parent deleted or its date corrected); "
        "re-admitted: 2 rows (parent arrived or its date corrected)"
    )
    assert summary.orphan_line({"cascaded": 0, "readmitted": 0}) == ""
