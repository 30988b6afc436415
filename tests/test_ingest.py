"""Ingest and the registry's rules on a real store: row accounting, quarantine reasons,
file-level errors (real ingest, real dbt build)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from cryoreg.ingest.folders import RegistryInputError

from conftest import build_registry, write_extract

PATIENTS = (
    "patient_mrn,patient_name,sex,birth_date\n"
    "MRN1,Ann Example,F,1950-01-01\n"
    "MRN2,Bob Example, m ,1960-06-15\n"
)
PROCEDURES = (
    "procedure_id,patient_mrn,procedure_date,guidance\n"
    "P1,MRN1,2010-01-01,CT\n"
    "P2,MRN2,2011-05-05,pet/ct\n"
)
TUMORS = (
    "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result\n"
    "T1,P1,metastasis,colorectal,22,complete\n"
    "T2,P2,primary,hcc,41,incomplete\n"
)


def _ingest(root: Path, db: Path, run_id: str = "run-1", limit: float = 1.0):
    result, con = build_registry(db, root, run_id, limit)
    with con:
        rejected = con.execute(
            "select file, line, record_id, column_name, raw_value, reason_code, reason "
            "from quarantine.rejected_rows order by file, line"
        ).fetchall()
    return result, rejected


def test_clean_extract_loads_every_row_with_lineage(tmp_path):
    write_extract(
        tmp_path / "ex",
        "2014-12-31",
        {
            "patients.csv": PATIENTS,
            "procedures.csv": PROCEDURES,
            "tumors.csv": TUMORS,
        },
    )
    result, rejected = _ingest(tmp_path / "ex", tmp_path / "w.duckdb")
    assert rejected == []
    assert [(a.file, a.read, a.loaded, a.quarantined) for a in result.files] == [
        ("2014-12-31/patients.csv", 2, 2, 0),
        ("2014-12-31/procedures.csv", 2, 2, 0),
        ("2014-12-31/tumors.csv", 2, 2, 0),
    ]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        rows = con.execute(
            "select patient_mrn, sex, _source_file, _source_line, _extract_date::varchar "
            "from raw.patients order by _source_line"
        ).fetchall()
    assert rows == [
        ("MRN1", "F", "2014-12-31/patients.csv", 2, "2014-12-31"),
        ("MRN2", " m ", "2014-12-31/patients.csv", 3, "2014-12-31"),  # as received
    ]


def test_every_row_problem_is_quarantined_with_all_its_reasons(tmp_path):
    write_extract(
        tmp_path / "ex",
        "2014-12-31",
        {
            "patients.csv": PATIENTS + "MRN3,,X,1960-13-01\nMRN4,,F,\n",
            "procedures.csv": PROCEDURES
            + "P3,MRN9,2010-01-01,CT\nP4,MRN1,1940-01-01,MRI\nP5,MRN1,2010-02-01,CT\n"
            + "P5,MRN1,2010-02-02,CT\n",
            "tumors.csv": TUMORS + "T3,P3,primary,hcc,20,complete\nT4,P1,primary,hcc,301,done\n",
        },
    )
    result, rejected = _ingest(tmp_path / "ex", tmp_path / "w.duckdb")
    by_line = {(r[0].split("/")[1], r[1]): r for r in rejected}
    assert by_line[("patients.csv", 4)][5] == "unknown_code"
    assert "birth_date: unparseable date" in by_line[("patients.csv", 4)][6]
    assert by_line[("patients.csv", 5)][3:6] == ("birth_date", None, "missing_required")
    assert by_line[("procedures.csv", 4)][5] == "orphan"  # MRN9 does not exist
    assert by_line[("procedures.csv", 5)][5] == "impossible_date"  # before birth
    assert by_line[("procedures.csv", 6)][5] == "duplicate_id"  # earlier copy of P5
    assert by_line[("tumors.csv", 4)][5] == "orphan"  # its procedure was quarantined
    tumor4 = by_line[("tumors.csv", 5)][6]
    assert "diameter_mm: outside 1-300 '301'" in tumor4 and "technical_result" in tumor4
    assert len(rejected) == 7
    for acc in result.files:
        assert acc.read == acc.loaded + acc.quarantined


def test_later_extract_upserts_and_reruns_are_noops(tmp_path):
    root = tmp_path / "ex"
    write_extract(root, "2014-12-30", {"patients.csv": PATIENTS})
    write_extract(
        root, "2014-12-31", {"patients.csv": "patient_mrn,sex,birth_date\nMRN1,F,1950-01-02\n"}
    )
    db = tmp_path / "w.duckdb"
    first, _ = _ingest(root, db)
    assert first.loaded == ["2014-12-30", "2014-12-31"]
    again, _ = _ingest(root, db, run_id="run-2")
    assert again.loaded == [] and again.skipped == ["2014-12-30", "2014-12-31"]
    with duckdb.connect(str(db)) as con:
        assert con.execute("select count(*) from raw.patients").fetchone()[0] == 3


def test_changed_folder_after_load_is_an_error(tmp_path):
    root = tmp_path / "ex"
    write_extract(root, "2014-12-31", {"patients.csv": PATIENTS})
    db = tmp_path / "w.duckdb"
    _ingest(root, db)
    write_extract(root, "2014-12-31", {"patients.csv": PATIENTS + "MRN5,,F,1970-01-01\n"})
    with pytest.raises(RegistryInputError, match="2014-12-31: extract changed after it was loaded"):
        _ingest(root, db, run_id="run-2")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"patients.csv": "patient_mrn,sex\nMRN1,F\n"},
            r"2014-12-31/patients.csv: missing required column birth_date",
        ),
        (
            {"patients.csv": b"patient_mrn,sex,birth_date\nMRN\xff,F,1950-01-01\n"},
            r"2014-12-31/patients.csv: not .*UTF-8",
        ),
        (
            {"patients.csv": "patient_mrn,sex,Sex ,birth_date\nMRN1,F,F,1950-01-01\n"},
            r"2014-12-31/patients.csv: column sex appears more than once",
        ),
    ],
)
def test_file_level_problems_stop_with_one_line(tmp_path, files, message):
    folder = tmp_path / "ex" / "2014-12-31"
    folder.mkdir(parents=True)
    for name, content in files.items():
        data = content if isinstance(content, bytes) else content.encode()
        (folder / name).write_bytes(data)
    with pytest.raises(RegistryInputError, match=message) as info:
        _ingest(tmp_path / "ex", tmp_path / "w.duckdb")
    assert "\n" not in str(info.value)


def test_empty_root_and_quarantine_limit(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryInputError, match="holds no extract folder"):
        _ingest(tmp_path / "empty", tmp_path / "w.duckdb")
    write_extract(
        tmp_path / "ex",
        "2014-12-31",
        {
            "patients.csv": PATIENTS + "MRN3,,F,1970-02-30\n",
        },
    )
    with pytest.raises(
        RegistryInputError, match=r"patients.csv: 1 of 3 rows quarantined \(33.3%\)"
    ):
        _ingest(tmp_path / "ex", tmp_path / "w2.duckdb", limit=0.05)


def test_numbers_must_be_written_as_numbers(tmp_path):
    write_extract(
        tmp_path / "ex",
        "2014-12-31",
        {
            "patients.csv": PATIENTS,
            "procedures.csv": "procedure_id,patient_mrn,procedure_date,guidance,probe_count\n"
            "P1,MRN1,2010-01-01,CT,3.5\nP2,MRN1,2010-01-02,CT,0x10\nP3,MRN1,2010-01-03,CT,+4\n",
            "tumors.csv": "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result\n"
            "T1,P3,primary,hcc,22.5,complete\nT2,P3,primary,hcc,1e2,complete\n"
            "T3,P3,primary,hcc,nan,complete\n",
        },
    )
    _, rejected = _ingest(tmp_path / "ex", tmp_path / "w.duckdb")
    assert {(r[2], r[5]) for r in rejected} == {
        ("P1", "not_a_number"),
        ("P2", "not_a_number"),
        ("T2", "not_a_number"),
        ("T3", "not_a_number"),
    }


def test_too_little_disk_space_fails_early_naming_the_space_needed(tmp_path):
    from cryoreg.publish.warehouse import DiskSpaceError, ensure_free_space

    with pytest.raises(DiskSpaceError, match=r"MiB free, the published file needs about") as info:
        ensure_free_space(tmp_path, 2**60, "the published file")
    assert str(tmp_path) in str(info.value) and "\n" not in str(info.value)
    ensure_free_space(tmp_path, 1, "a byte")  # enough: nothing raised


def test_a_line_with_the_wrong_field_count_is_a_quarantined_row(tmp_path):
    write_extract(
        tmp_path / "ex",
        "2014-12-31",
        {"patients.csv": PATIENTS + "MRN3,,F,1950-01-01,extra\nMRN4,Dee\nMRN5,,M,1970-01-01\n"},
    )
    result, rejected = _ingest(tmp_path / "ex", tmp_path / "w.duckdb")
    assert [(r[1], r[3], r[5]) for r in rejected] == [
        (4, "_row", "malformed_row"),
        (5, "_row", "malformed_row"),
    ]
    assert rejected[0][4] == "MRN3,,F,1950-01-01,extra"  # the line as received
    assert "Expected Number of Columns: 4 Found: 5" in rejected[0][6]
    [acc] = result.files
    assert (acc.read, acc.loaded, acc.quarantined) == (5, 3, 2)
