"""The synthetic registry generator: reproducible bytes, the contract's columns, sound references.

The paper's outcome figures are checked end to end through the pipeline (test_paper.py), not here.
"""

from __future__ import annotations

import duckdb
import pytest

from cryoreg import registry, synth

CONTRACT = {
    "patients.csv": "patient_mrn,patient_name,sex,birth_date,death_date,last_contact_date",
    "procedures.csv": "procedure_id,patient_mrn,procedure_date,guidance,anesthesia,probe_count",
    "tumors.csv": "tumor_id,procedure_id,origin,histology,liver_segment,diameter_mm,"
    "technical_result",
    "imaging.csv": "imaging_id,tumor_id,imaging_date,modality,finding",
    "adverse_events.csv": "event_id,procedure_id,onset_date,ctcae_grade,description",
}


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    (folder,) = synth.write_registry(tmp_path_factory.mktemp("paper"))
    return folder


@pytest.fixture(scope="module")
def scale(tmp_path_factory):
    (folder,) = synth.write_registry(
        tmp_path_factory.mktemp("scale"), profile="scale", patients=2_000, chunk_patients=500
    )
    return folder


def test_paper_folder_is_the_extract_date(paper):
    assert paper.name == "2014-12-31"
    assert sorted(p.name for p in paper.iterdir()) == sorted(CONTRACT)


def test_same_seed_same_bytes(paper, tmp_path):
    (again,) = synth.write_registry(tmp_path / "again")
    assert _files(again) == _files(paper)


def test_other_seed_other_bytes(paper, tmp_path):
    (other,) = synth.write_registry(tmp_path / "other", seed=7)
    theirs, ours = _files(other), _files(paper)
    assert all(theirs[name] != ours[name] for name in CONTRACT)


def test_scale_same_seed_same_bytes(scale, tmp_path):
    (again,) = synth.write_registry(
        tmp_path / "again", profile="scale", patients=2_000, chunk_patients=500
    )
    assert _files(again) == _files(scale)


@pytest.mark.parametrize("profile", ["paper", "scale"])
def test_headers_are_the_contract_columns(profile, paper, scale):
    folder = paper if profile == "paper" else scale
    for name, header in CONTRACT.items():
        text = (folder / name).read_text(encoding="utf-8")
        assert text.splitlines()[0] == header
        assert text.count(header.split(",")[0] + ",") == 1  # one header row, even when appended


def test_columns_match_the_ingest_declaration():
    for file in registry.FILES:
        declared = tuple(c.name for c in file.columns)
        assert declared == synth.COLUMNS[file.entity]
        assert ",".join(declared) == CONTRACT[file.file_name]


def _count(con, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def _views(folder):
    con = duckdb.connect()
    for name in CONTRACT:
        table = name.removesuffix(".csv")
        con.execute(
            f"create view {table} as select * from read_csv('{folder / name}', header = true)"
        )
    return con


@pytest.mark.parametrize("profile", ["paper", "scale"])
def test_ids_unique_and_references_resolve(profile, paper, scale):
    con = _views(paper if profile == "paper" else scale)
    for table, key in [
        ("patients", "patient_mrn"),
        ("procedures", "procedure_id"),
        ("tumors", "tumor_id"),
        ("imaging", "imaging_id"),
        ("adverse_events", "event_id"),
    ]:
        assert _count(con, f"select count(*) - count(distinct {key}) from {table}") == 0, table
        assert _count(con, f"select count(*) from {table} where {key} is null") == 0, table
    for child, parent, key in [
        ("procedures", "patients", "patient_mrn"),
        ("tumors", "procedures", "procedure_id"),
        ("imaging", "tumors", "tumor_id"),
        ("adverse_events", "procedures", "procedure_id"),
    ]:
        orphans = f"select count(*) from {child} anti join {parent} using ({key})"
        assert _count(con, orphans) == 0, child


@pytest.mark.parametrize("profile", ["paper", "scale"])
def test_dates_are_ordered_and_within_the_extract(profile, paper, scale):
    con = _views(paper if profile == "paper" else scale)
    extract = "date '2014-12-31'"
    checks = {
        "procedure before birth": "procedures join patients using (patient_mrn) "
        "where procedure_date <= birth_date",
        "imaging before its procedure or after the extract": "imaging join tumors using "
        f"(tumor_id) join procedures using (procedure_id) where imaging_date < procedure_date "
        f"or imaging_date > {extract}",
        "event before its procedure": "adverse_events join procedures using (procedure_id) "
        "where onset_date < procedure_date",
        "imaging after death": "imaging join tumors using (tumor_id) join procedures using "
        "(procedure_id) join patients using (patient_mrn) where imaging_date > death_date",
        "event after death": "adverse_events join procedures using (procedure_id) join patients "
        "using (patient_mrn) where onset_date > death_date",
        "dates after the extract": f"patients where death_date > {extract} "
        f"or last_contact_date > {extract}",
        "procedures outside 1998-2014": "procedures where procedure_date < date '1998-01-01' "
        f"or procedure_date > {extract}",
    }
    for problem, rest in checks.items():
        assert _count(con, f"select count(*) from {rest}") == 0, problem


def test_paper_row_counts(paper):
    con = _views(paper)
    counts = [_count(con, f"select count(*) from {t}") for t in ("patients", "procedures")]
    assert counts == [186, 236]
    assert _count(con, "select count(*) from tumors") == 299


def test_scale_row_counts_are_plausible(scale):
    con = _views(scale)
    patients, procedures, tumors, imaging, events = (
        _count(con, f"select count(*) from {name.removesuffix('.csv')}") for name in CONTRACT
    )
    assert patients == 2_000
    assert 1.15 * patients < procedures < 1.4 * patients
    assert 1.15 * procedures < tumors < 1.45 * procedures
    assert 3 * tumors < imaging < 10 * tumors
    assert 0.3 * procedures < events < 0.7 * procedures
    grades = {
        g for (g,) in con.execute("select distinct ctcae_grade from adverse_events").fetchall()
    }
    assert grades <= {1, 2, 3, 4, 5}
    codes = con.execute(
        "select count(distinct guidance), count(distinct origin), count(distinct finding) "
        "from procedures, tumors, imaging"
    ).fetchone()
    assert codes == (3, 2, 4)


def test_scale_chunks_continue_ids(tmp_path):
    (one,) = synth.write_registry(tmp_path / "one", profile="scale", patients=30, chunk_patients=7)
    con = _views(one)
    assert _count(con, "select count(distinct patient_mrn) from patients") == 30
    first_ids = con.execute("select min(procedure_id) from procedures").fetchone()[0]
    assert first_ids == "PRC00000001"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"profile": "paper", "patients": 10},
        {"profile": "scale"},
        {"profile": "scale", "patients": 0},
        {"profile": "nope"},
        {"profile": "scale", "patients": 10, "chunk_patients": 0},
    ],
)
def test_bad_arguments_write_nothing(kwargs, tmp_path):
    with pytest.raises(ValueError):
        synth.write_registry(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()
