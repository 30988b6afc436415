"""The cross-night orphan rule: after every run the live registry is what loading every folder
at once gives. A parent deleted in a later night takes its live children of earlier nights
with it; a row quarantined as an orphan comes back when its parent arrives. Checked on real
stores (real ingest, real dbt build).
"""

from __future__ import annotations

import duckdb
import pytest

from conftest import live_ids, live_rows, nights_in_runs, quarantined

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


def accounted(results) -> None:
    for result in results:
        for acc in result.files:
            assert acc.read == acc.loaded + acc.quarantined, acc


def nightly(tmp_path, nights: list[tuple[str, dict]]):
    """Load the folders one run at a time (a root that gains one folder a night)."""
    return nights_in_runs(tmp_path / "nightly.duckdb", nights, [[i] for i in range(len(nights))])


def at_once(tmp_path, nights: list[tuple[str, dict]]):
    results, con = nights_in_runs(tmp_path / "once.duckdb", nights, [list(range(len(nights)))])
    return con, results[0]


TWO_NIGHTS = [(NIGHT1, FIRST), (NIGHT2, SECOND)]


def test_a_deleted_patient_takes_its_earlier_rows_out_of_the_live_registry(tmp_path):
    results, con = nightly(tmp_path, TWO_NIGHTS)
    assert {t: ids for t, ids in live_ids(con).items() if t != "patients"} == {
        t: ids for t, ids in LIVE_AFTER_TWO.items() if t != "patients"
    }
    accounted(results)
    # P1 and all under it, and P3's first version leave the live registry: each is a
    # quarantine row at its own file and line, naming the missing parent
    removed = con.execute(
        "select file, line, record_id, reason_code, reason from quarantine.rejected_rows "
        "where file like ? and reason_code = 'orphan' order by all",
        [f"{NIGHT1}/%"],
    ).fetchall()
    assert [r[:4] for r in removed] == [
        (f"{NIGHT1}/adverse_events.csv", 2, "A1", "orphan"),
        (f"{NIGHT1}/imaging.csv", 2, "I1", "orphan"),
        (f"{NIGHT1}/procedures.csv", 2, "P1", "orphan"),
        (f"{NIGHT1}/procedures.csv", 4, "P3", "orphan"),
        (f"{NIGHT1}/tumors.csv", 2, "T1", "orphan"),
    ]
    assert removed[2][4] == "patient_mrn: no such patient_mrn in patients 'MRN1'"
    # the night's own accounting is untouched: the cascade is reported beside it
    assert [(a.file, a.read, a.loaded, a.quarantined) for a in results[1].files] == [
        (f"{NIGHT2}/patients.csv", 2, 2, 0),
        (f"{NIGHT2}/procedures.csv", 3, 2, 1),  # P3's correction: an orphan
        (f"{NIGHT2}/tumors.csv", 2, 2, 0),
    ]


def test_orphans_come_back_when_their_parent_arrives(tmp_path):
    results, con = nightly(tmp_path, TWO_NIGHTS)
    back = con.execute(
        "select imaging_key, tumor_key, _extract_date::varchar, _source_file, _source_line "
        "from intermediate.int_imaging_current where imaging_key in ('I3', 'I5') order by 1"
    ).fetchall()
    assert back == [
        ("I3", "T9", NIGHT1, f"{NIGHT1}/imaging.csv", 4),
        ("I5", "T5", NIGHT1, f"{NIGHT1}/imaging.csv", 5),
    ]
    held = {(r[3], r[4]) for r in quarantined(con)}
    assert not {("I3", "orphan"), ("I5", "orphan"), ("T5", "orphan")} & held
    # I6 came back only to be judged against its parent: it precedes its procedure
    assert ("I6", "impossible_date") in held
    assert "I6" not in live_ids(con)["imaging"]


@pytest.mark.parametrize("nights", [TWO_NIGHTS, [*TWO_NIGHTS, (NIGHT3, THIRD)]])
def test_night_by_night_equals_all_at_once(tmp_path, nights):
    results, by_night = nightly(tmp_path, nights)
    once, result = at_once(tmp_path, nights)
    accounted([*results, result])
    assert live_rows(by_night) == live_rows(once)
    assert quarantined(by_night) == quarantined(once)


def test_a_deleted_parent_registered_again_brings_its_rows_back(tmp_path):
    results, con = nightly(tmp_path, [*TWO_NIGHTS, (NIGHT3, THIRD)])
    assert live_ids(con)["procedures"] == {"P1", "P2", "P5", "P6"}
    assert {"T1"} <= live_ids(con)["tumors"] and {"I1"} <= live_ids(con)["imaging"]
    assert "A1" in live_ids(con)["adverse_events"]
    # the rows are back with their own lineage
    assert con.execute(
        "select _source_file, _source_line from intermediate.int_procedures_current "
        "where procedure_key = 'P1'"
    ).fetchall() == [(f"{NIGHT1}/procedures.csv", 2)]


def test_a_later_version_supersedes_an_orphan(tmp_path):
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
    results, by_night = nightly(tmp_path, nights)
    once, _ = at_once(tmp_path, nights)
    assert live_rows(by_night) == live_rows(once)
    # all at once, I7's first version names a tumor that exists: superseded, not quarantined
    assert "I7" not in {r[3] for r in quarantined(by_night)}
    assert by_night.sql(
        "select tumor_key from intermediate.int_imaging_current where imaging_key = 'I7'"
    ).fetchall() == [("T2",)]


def test_the_quarantine_history_says_when_a_row_entered_and_left(tmp_path):
    """After each published night the quarantine is recorded (quarantine.snp_rejected_rows):
    I3, an orphan of night 1, left the quarantine when night 2 brought its tumor; I6 is still
    held back (its stay is open)."""
    import os

    from cryoreg.transform import dbt as transform

    store = tmp_path / "nightly.duckdb"
    _, con = nights_in_runs(store, TWO_NIGHTS, [[0]])
    con.close()
    transform.snapshot_quarantine(store, os.environ["CRYOREG_PSEUDONYM_KEY"])
    _, con = nights_in_runs(store, TWO_NIGHTS, [[1]], first_run=1)
    con.close()
    transform.snapshot_quarantine(store, os.environ["CRYOREG_PSEUDONYM_KEY"])
    with duckdb.connect(str(store), read_only=True) as con:
        stays = dict(
            con.execute(
                "select record_id, bool_and(dbt_valid_to is not null) "
                "from quarantine.snp_rejected_rows where record_id in ('I3', 'I6') group by 1"
            ).fetchall()
        )
    assert stays == {"I3": True, "I6": False}
