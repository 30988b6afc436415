"""The synthetic registry generator: reproducible bytes, the contract's columns, sound references.

The paper's outcome figures are checked end to end through the pipeline (test_paper.py), not here.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from cryoreg import contract as registry
from cryoreg import paper as figures
from cryoreg.synth.cohort import (
    CELL_CLASS,
    CELL_COUNT,
    CELL_GROUP,
    CELL_TECH,
    CLEAN,
    FAIL,
    FOLLOW_UP_MAX_DAYS,
    LTP,
    NA,
    NE,
    OK,
    PROCS_PER_PATIENT,
    TUMORS_PER_PROC,
)
from cryoreg.synth.faults import (
    MANIFEST_COLUMNS,
    MANIFEST_DIR,
    OUT_OF_RANGE,
    WRONG_CODES,
    manifest_path,
)
from cryoreg.synth.writing import write_registry

# file name -> header of a full load: the contract's columns but record_status (deltas only)
CONTRACT = {
    f.file_name: ",".join(c for c in f.column_names if c != "record_status") for f in registry.FILES
}


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    (folder,) = write_registry(tmp_path_factory.mktemp("paper"))
    return folder


@pytest.fixture(scope="module")
def scale(tmp_path_factory):
    (folder,) = write_registry(
        tmp_path_factory.mktemp("scale"), profile="scale", patients=2_000, chunk_patients=500
    )
    return folder


def test_paper_folder_is_the_extract_date(paper):
    assert paper.name == "2014-12-31"
    assert sorted(p.name for p in paper.iterdir()) == sorted(CONTRACT)


def test_same_seed_same_bytes(paper, tmp_path):
    (again,) = write_registry(tmp_path / "again")
    assert _files(again) == _files(paper)


def test_other_seed_other_bytes(paper, tmp_path):
    (other,) = write_registry(tmp_path / "other", seed=7)
    theirs, ours = _files(other), _files(paper)
    assert all(theirs[name] != ours[name] for name in CONTRACT)


def test_scale_same_seed_same_bytes(scale, tmp_path):
    (again,) = write_registry(
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


@pytest.mark.parametrize("profile", ["paper", "scale"])
def test_every_value_keeps_the_contract(profile, paper, scale):
    """Codes, ranges, required values, dates and same-row date order, as ingest checks them."""
    con = _views(paper if profile == "paper" else scale, all_varchar=True)
    for file in registry.FILES:
        table = file.entity
        for c in file.columns:
            if c.name == "record_status":
                continue
            value = f"trim({c.name})"
            bad = {
                "date": f"try_strptime({value}, '%Y-%m-%d') is null",
                "integer": f"try_cast({value} as integer) is null",
                "number": f"try_cast({value} as double) is null",
                "code": f"{value} not in ({', '.join(repr(code) for code in c.codes)})",
                "text": "false",
            }[c.kind]
            if c.low is not None:
                bad += f" or try_cast({value} as double) not between {c.low} and {c.high}"
            if c.not_before:
                bad += f" or {value} < trim({c.not_before})"
            missing = f"{c.name} is null" if c.required else "false"
            where = f"({c.name} is not null and ({bad})) or {missing}"
            assert _count(con, f"select count(*) from {table} where {where}") == 0, (table, c.name)


def test_defects_break_the_rule_they_are_named_for():
    """Wrong codes are no codes of the contract, out-of-range values fall outside its range."""
    for column, wrong in WRONG_CODES.items():
        (codes,) = {f.column(column).codes for f in registry.FILES if column in f.column_names}
        assert codes and not {w.casefold() for w in wrong} & {c.casefold() for c in codes}
    for column, draws in OUT_OF_RANGE.items():
        (c,) = {f.column(column) for f in registry.FILES if column in f.column_names}
        for low, high in draws:  # integers in [low, high)
            assert high - 1 < c.low or low > c.high, (column, low, high)


def _count(con, sql: str) -> int:
    return con.execute(sql).fetchone()[0]


def _views(folder, all_varchar=False):
    con = duckdb.connect()
    for name in CONTRACT:
        table = name.removesuffix(".csv")
        con.execute(
            f"create view {table} as select * from read_csv('{folder / name}', header = true, "
            f"all_varchar = {all_varchar})"
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
    counts = [
        _count(con, f"select count(*) from {t}") for t in ("patients", "procedures", "tumors")
    ]
    assert counts == [figures.PATIENTS, figures.PROCEDURES, figures.TUMORS]


def test_the_plan_adds_up_to_the_paper():
    """The paper profile's own splits (procedures per patient, tumor outcome cells) give the
    paper's printed totals, so that the pipeline can reproduce them."""
    per_patient, per_procedure = np.array(PROCS_PER_PATIENT), np.array(TUMORS_PER_PROC)
    assert per_patient.sum() == figures.PATIENTS
    assert (per_patient * np.arange(1, 5)).sum() == per_procedure.sum() == figures.PROCEDURES
    assert (per_procedure * np.arange(1, 5)).sum() == CELL_COUNT.sum() == figures.TUMORS
    assert CELL_COUNT[CELL_GROUP == 1].sum() == figures.MAJOR_ADVERSE_EVENTS["ge4cm"].n
    for g, group in enumerate(("lt4cm", "ge4cm")):
        cells = g == CELL_GROUP
        evaluable = CELL_COUNT[cells & (CELL_CLASS != NE)].sum()
        success = CELL_COUNT[cells & np.isin(CELL_CLASS, (LTP, CLEAN))].sum()
        progressed = CELL_COUNT[cells & np.isin(CELL_CLASS, (FAIL, LTP))].sum()
        te, ltp = figures.TECHNIQUE_EFFICACY[group], figures.LOCAL_TUMOR_PROGRESSION[group]
        assert (success, evaluable) == (te.k, te.n), group
        assert (progressed, evaluable) == (ltp.k, ltp.n), group
    assessed = CELL_COUNT[CELL_TECH != NA].sum()
    complete = CELL_COUNT[CELL_TECH == OK].sum()
    assert (complete, assessed) == (figures.TECHNICAL_SUCCESS.k, figures.TECHNICAL_SUCCESS.n)
    assert round(FOLLOW_UP_MAX_DAYS / 365.25, 1) == figures.FOLLOW_UP_YEARS_MAX


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
    used = {  # every code of the contract turns up in a registry this size
        (table, column): _count(con, f"select count(distinct {column}) from {table}")
        for table, column in (
            ("procedures", "guidance"),
            ("tumors", "origin"),
            ("tumors", "technical_result"),
            ("imaging", "modality"),
            ("imaging", "finding"),
        )
    }
    for (table, column), n in used.items():
        assert n == len(registry.BY_ENTITY[table].column(column).codes), (table, column)


def test_scale_chunks_continue_ids(tmp_path):
    (one,) = write_registry(tmp_path / "one", profile="scale", patients=30, chunk_patients=7)
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
        write_registry(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


# --- nightly deltas (--nights) ----------------------------------------------------------------
def _text(path):
    import polars as pl

    frame = pl.read_csv(path, infer_schema_length=0)
    if "record_status" not in frame.columns:
        frame = frame.with_columns(record_status=pl.lit(None, pl.String))
    return frame


def _final_state(folders, name):
    """Apply the folders as ingest does: later folder, then later line, wins; deletes remove."""
    import polars as pl

    key = next(f.id_column for f in registry.FILES if f.file_name == name)
    rows = pl.concat(
        [_text(folder / name).with_row_index("_line").with_columns(_night=pl.lit(j))
         for j, folder in enumerate(folders)],
        how="diagonal",
    )  # fmt: skip
    current = rows.sort("_night", "_line").unique(key, keep="last", maintain_order=True)
    live = current.filter(pl.col("record_status").is_null())
    return live.select(CONTRACT[name].split(",")).sort(key)


@pytest.fixture(scope="module")
def three_nights(tmp_path_factory):
    return write_registry(tmp_path_factory.mktemp("nights"), nights=3)


def test_nights_are_consecutive_days(three_nights):
    assert [f.name for f in three_nights] == ["2014-12-31", "2015-01-01", "2015-01-02"]
    for name, header in CONTRACT.items():
        assert (three_nights[0] / name).read_text().splitlines()[0] == header
        for delta in three_nights[1:]:
            assert (delta / name).read_text().splitlines()[0] == header + ",record_status"


def test_final_state_of_the_nights_is_the_paper_registry(paper, three_nights):
    import polars as pl

    for name in CONTRACT:
        key = CONTRACT[name].split(",")[0]
        one = pl.read_csv(paper / name, infer_schema_length=0).sort(key)
        assert _final_state(three_nights, name).equals(one), name


def test_deltas_hold_new_corrected_and_deleted_rows(paper, three_nights):
    import polars as pl

    first = {n: _text(three_nights[0] / n) for n in CONTRACT}
    for name in CONTRACT:
        key = CONTRACT[name].split(",")[0]
        one = set(pl.read_csv(paper / name, infer_schema_length=0)[key])
        seen = set(first[name][key])
        new = corrected = deleted = 0
        for delta in three_nights[1:]:
            rows = _text(delta / name)
            gone = rows.filter(pl.col("record_status") == "deleted")[key]
            assert not set(gone) & one, "only rows entered by mistake are deleted"
            assert set(gone) <= seen, "a deletion removes a row sent before"
            deleted += len(gone)
            live = rows.filter(pl.col("record_status").is_null())[key]
            new += len(set(live) - seen)
            corrected += len(set(live) & seen)
            seen |= set(live)
        assert deleted >= 1 and new >= 1, name
        if name != "patients":  # a patient's correction (the spelling of the name) is rare
            assert corrected >= 1, name


def test_nights_same_seed_same_bytes(three_nights, tmp_path):
    again = write_registry(tmp_path / "again", nights=3)
    assert [_files(a) for a in again] == [_files(f) for f in three_nights]


def test_scale_nights_final_state(tmp_path):
    import polars as pl

    (one,) = write_registry(tmp_path / "one", profile="scale", patients=300, chunk_patients=120)
    folders = write_registry(
        tmp_path / "k", profile="scale", patients=300, chunk_patients=120, nights=4
    )
    assert len(folders) == 4
    for name in CONTRACT:
        key = CONTRACT[name].split(",")[0]
        expected = pl.read_csv(one / name, infer_schema_length=0).sort(key)
        assert _final_state(folders, name).equals(expected), name


# --- injected defects (--faults) --------------------------------------------------------------
@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    root = tmp_path_factory.mktemp("faulty")
    (folder,) = write_registry(root, faults=0.05)
    return root, folder


def _manifest(root, extract="2014-12-31"):
    import polars as pl

    return pl.read_csv(manifest_path(root, extract), infer_schema_length=0)


def test_manifest_sits_beside_the_extract(faulty):
    root, folder = faulty
    path = manifest_path(root, folder.name)
    assert path.is_file() and path.parent.parent == folder.parent
    assert not ingest_folder_pattern().match(path.parent.name)
    assert sorted(p.name for p in folder.iterdir()) == sorted(CONTRACT)
    assert _manifest(root).columns == list(MANIFEST_COLUMNS)


def ingest_folder_pattern():
    from cryoreg.ingest.folders import EXTRACT_FOLDER

    return EXTRACT_FOLDER


def test_every_defect_kind_is_injected(faulty):
    m = _manifest(faulty[0])
    kinds = set(m["kind"])
    assert kinds >= {
        "bad_date", "future_date", "impossible_date", "unknown_code", "not_a_number",
        "out_of_range", "missing_required", "orphan", "duplicate_id", "accepted", "bom",
        "reordered_columns", "cascade",
    }  # fmt: skip
    dates = m.filter(m["kind"] == "bad_date")["value"].to_list()
    assert any("-02-30" in v for v in dates)
    accepted = m.filter(m["kind"] == "accepted")
    assert set(accepted["quarantined"]) <= {"false", "true"}
    assert accepted.filter(accepted["quarantined"] == "false").height >= 5


def test_manifest_lines_point_at_the_rows(faulty):
    import polars as pl

    root, folder = faulty
    m = _manifest(root).filter(pl.col("line") != "1")
    for name in CONTRACT:
        raw = (folder / name).read_bytes().decode("utf-8-sig").splitlines()
        rows = m.filter(pl.col("file") == f"{folder.name}/{name}")
        assert rows.height, name
        for line, row_id in zip(rows["line"], rows["id"], strict=True):
            assert row_id in raw[int(line) - 1], (name, line)


def test_rate_is_the_share_of_rows(faulty, paper):
    import polars as pl

    root, folder = faulty
    m = _manifest(root).filter(~pl.col("kind").is_in(["cascade", "bom", "reordered_columns"]))
    for name in CONTRACT:
        rows = pl.read_csv(paper / name, infer_schema_length=0).height
        hit = m.filter(pl.col("file") == f"{folder.name}/{name}").height
        assert abs(hit - 0.05 * rows) <= 1, name


def test_bom_and_reordered_columns(faulty):
    root, folder = faulty
    m = _manifest(root)
    (bom,) = m.filter(m["kind"] == "bom")["file"]
    assert (folder.parent / bom).read_bytes().startswith(b"\xef\xbb\xbf")
    (moved,) = m.filter(m["kind"] == "reordered_columns")["file"]
    header = (folder.parent / moved).read_bytes().decode("utf-8-sig").splitlines()[0]
    name = moved.split("/")[1]
    assert header != CONTRACT[name] and sorted(header.split(",")) == sorted(
        CONTRACT[name].split(",")
    )


def test_faults_same_seed_same_bytes(faulty, tmp_path):
    root, folder = faulty
    (again,) = write_registry(tmp_path, faults=0.05)
    assert _files(again) == _files(folder)
    assert (
        manifest_path(tmp_path, again.name).read_bytes()
        == manifest_path(root, folder.name).read_bytes()
    )


def test_without_faulty_is_the_clean_registry_minus_quarantined_ids(faulty, paper, tmp_path):
    (clean,) = write_registry(tmp_path, faults=0.05, without_faulty=True)
    assert not (tmp_path / MANIFEST_DIR).exists()
    con = _views(clean)
    full = _views(paper)
    m = _manifest(faulty[0])
    for name in CONTRACT:
        table, key = name.removesuffix(".csv"), CONTRACT[name].split(",")[0]
        ours = {r for (r,) in con.execute(f"select {key} from {table}").fetchall()}
        theirs = {r for (r,) in full.execute(f"select {key} from {table}").fetchall()}
        q = m.filter((m["file"] == f"2014-12-31/{name}") & (m["quarantined"] == "true"))
        dropped = set(q["id"]) - set(q.filter(q["kind"] == "duplicate_id")["id"])
        assert ours == theirs - dropped, name
    for child, parent, key in [
        ("procedures", "patients", "patient_mrn"),
        ("tumors", "procedures", "procedure_id"),
        ("imaging", "tumors", "tumor_id"),
        ("adverse_events", "procedures", "procedure_id"),
    ]:
        assert _count(con, f"select count(*) from {child} anti join {parent} using ({key})") == 0


def test_nights_and_faults_combine(tmp_path):
    folders = write_registry(tmp_path, nights=3, faults=0.02)
    for folder in folders:
        m = _manifest(tmp_path, folder.name)
        assert set(m["extract"]) == {folder.name}
    assert len(_manifest(tmp_path, "2015-01-02")) > 0


@pytest.mark.parametrize("kwargs", [{"faults": -0.1}, {"faults": 0.9}, {"nights": 0}])
def test_bad_fault_or_night_arguments_write_nothing(kwargs, tmp_path):
    with pytest.raises(ValueError):
        write_registry(tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "0.9"], "--faults is a share of rows between 0 and 0.5"),
        (["--nights", "0"], "--nights must be at least 1"),
    ],
)
def test_cli_refuses_bad_fault_or_night_options(args, message, tmp_path):
    from conftest import run_cryoreg

    proc = run_cryoreg("synth", "out", *args, cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"cryoreg: error: {message}"
    assert not (tmp_path / "out").exists()


def test_cli_writes_nights_and_manifests(tmp_path):
    from conftest import run_cryoreg

    proc = run_cryoreg("synth", "out", "--nights", "2", "--faults", "0.01", cwd=tmp_path)
    assert proc.stdout.splitlines() == [
        "wrote out/2014-12-31",
        "  defects: out/_manifest/2014-12-31.faults.csv",
        "wrote out/2015-01-01",
        "  defects: out/_manifest/2015-01-01.faults.csv",
    ]
