"""Bad input end to end: `cryoreg synth --faults RATE`, then `cryoreg run`, against the manifest.

The manifest (OUT_ROOT/_manifest/<date>.faults.csv) is the ground truth: every row it marks as
quarantined must be in quarantine.rejected_rows at that file and line with that reason code,
nothing else may be; rows it marks as accepted must load. A run on the same registry written
without the faulty rows (synth's without_faulty) must give the same outcome metrics. File-level
problems must each stop a later night with one line and leave the published warehouse as it was.
"""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cryoreg.contract import BY_ENTITY
from cryoreg.synth.cohort import HISTOLOGY_NAMES
from cryoreg.synth.faults import manifest_path
from cryoreg.synth.writing import write_registry

from conftest import metric_differences as differences
from conftest import run_cryoreg

pytestmark = pytest.mark.xdist_group("faults")

RATES = (0.01, 0.05)
LIMIT = "0.25"  # 5% faults plus the children they orphan stay below a quarter of any file
SLOW_MACHINE = {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
CANONICAL = {
    ("fct_procedure", "guidance"): {"CT", "MRI", "PET/CT"},
    ("fct_procedure", "anesthesia"): {"general", "moderate", None},
    ("fct_tumor", "origin"): {"primary", "metastasis"},
    ("fct_tumor", "histology"): set(HISTOLOGY_NAMES),
    ("fct_tumor", "technical_result"): set(BY_ENTITY["tumors"].column("technical_result").codes),
    ("dim_patient", "sex"): {"F", "M"},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per rate: a faulty registry (through the CLI) and the same without its faulty rows."""
    base = tmp_path_factory.mktemp("faults")
    folders = {}
    for rate in RATES:
        faulty, clean = base / f"faulty-{rate}", base / f"clean-{rate}"
        faulty.mkdir()
        run_cryoreg("synth", "extracts", "--faults", str(rate), cwd=faulty)
        write_registry(clean / "extracts", faults=rate, without_faulty=True)
        for kind, folder in (("faulty", faulty), ("clean", clean)):
            run_cryoreg("run", cwd=folder, env={"CRYOREG_QUARANTINE_LIMIT": LIMIT, **SLOW_MACHINE})
            folders[(rate, kind)] = folder
    return folders


def manifest(folder: Path) -> pl.DataFrame:
    return pl.read_csv(
        manifest_path(folder / "extracts", "2014-12-31"),
        infer_schema_length=0,
        schema_overrides={"line": pl.Int64, "quarantined": pl.Boolean},
    )


def warehouse(folder: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(folder / "warehouse" / "cryoreg.duckdb"), read_only=True)


def store(folder: Path) -> duckdb.DuckDBPyConnection:
    """The registry's store: the ledger and the quarantine with the ids as received."""
    return duckdb.connect(str(folder / "warehouse" / "cryoreg.store.duckdb"), read_only=True)


def metrics(folder: Path) -> dict:
    return json.loads((folder / "out" / "metrics.json").read_text())


def outcome(m: dict) -> dict:
    """metrics.json without the run block and anything about quarantine or data quality."""
    return {
        k: v
        for k, v in m.items()
        if k != "run" and "quarantin" not in k and "quality" not in k and "check" not in k
    }


@pytest.mark.parametrize("rate", RATES)
def test_every_defect_is_quarantined_with_its_reason(runs, rate):
    folder = runs[(rate, "faulty")]
    expected = manifest(folder).filter(pl.col("quarantined"))
    with store(folder) as con:
        got = con.execute(
            "select extract, file, line, record_id, reason_code from quarantine.rejected_rows"
        ).fetchall()
    want = {
        (e, f, line, i, r)
        for e, f, line, i, r in expected.select(
            "extract", "file", "line", "id", "expected_reason"
        ).iter_rows()
    }
    missing = want - set(got)
    assert not missing, f"defects not quarantined as expected: {sorted(missing)[:10]}"
    assert len(got) == len(set(got)), "a row was quarantined twice"
    assert {k for k in expected["kind"]} >= {"cascade", "duplicate_id", "orphan"}


@pytest.mark.parametrize("rate", RATES)
def test_no_clean_row_is_rejected(runs, rate):
    folder = runs[(rate, "faulty")]
    expected = manifest(folder).filter(pl.col("quarantined"))
    want = set(expected.select("file", "line").iter_rows())
    with store(folder) as con:
        got = con.execute("select file, line, reason from quarantine.rejected_rows").fetchall()
    extra = [row for row in got if row[:2] not in want]
    assert not extra, f"clean rows rejected: {extra[:10]}"


@pytest.mark.parametrize("rate", RATES)
def test_accepted_defects_load_normalised(runs, rate):
    folder = runs[(rate, "faulty")]
    m = manifest(folder)
    accepted = m.filter((pl.col("kind") == "accepted") & ~pl.col("quarantined"))
    assert accepted.height >= 2
    with store(folder) as con:
        for file, line, row_id in accepted.select("file", "line", "id").iter_rows():
            entity = file.split("/")[1].removesuffix(".csv")
            key = BY_ENTITY[entity].id_column
            hit = con.execute(
                f"select {key} from raw.{entity} where _source_file = ? and _source_line = ?",
                [file, line],
            ).fetchall()
            assert hit == [(row_id,)], (file, line)
        for (table, column), allowed in CANONICAL.items():
            values = {v for (v,) in con.execute(f"select distinct {column} from marts.{table}")
                      .fetchall()}  # fmt: skip
            assert values <= allowed, (table, column, values - allowed)
        imaging = BY_ENTITY["imaging"]
        for table, column in (("modality", set(imaging.column("modality").codes)),
                              ("finding", set(imaging.column("finding").codes))):  # fmt: skip
            values = {
                v
                for (v,) in con.execute(
                    f"select distinct {table} from intermediate.int_imaging_current"
                ).fetchall()
            }
            assert values <= column
        # the BOM file and the file with reordered columns loaded every row not quarantined
        for file in m.filter(pl.col("kind").is_in(["bom", "reordered_columns"]))["file"]:
            read, loaded, quarantined = con.execute(
                "select rows_read, rows_loaded, rows_quarantined from audit.file_accounting "
                "where file = ?",
                [file],
            ).fetchone()
            assert loaded == read - quarantined > 0
            assert quarantined == m.filter((pl.col("file") == file) & pl.col("quarantined")).height


@pytest.mark.parametrize("rate", RATES)
def test_read_equals_loaded_plus_quarantined(runs, rate):
    folder = runs[(rate, "faulty")]
    m = manifest(folder)
    files = metrics(folder)["run"]["files"]
    with warehouse(folder) as con:
        audit = con.execute(
            "select file, rows_read, rows_loaded, rows_quarantined from audit.file_accounting"
        ).fetchall()
    assert sorted(audit) == sorted(
        (f["file"], f["read"], f["loaded"], f["quarantined"]) for f in files
    )
    assert len(audit) == 5
    for file, read, loaded, quarantined in audit:
        lines = (folder / "extracts" / file).read_bytes().count(b"\n")
        assert read == lines - 1, file
        assert read == loaded + quarantined, file
        assert quarantined == m.filter((pl.col("file") == file) & pl.col("quarantined")).height


@pytest.mark.parametrize("rate", RATES)
def test_metrics_equal_those_without_the_faulty_rows(runs, rate):
    faulty, clean = metrics(runs[(rate, "faulty")]), metrics(runs[(rate, "clean")])
    assert not differences(outcome(faulty), outcome(clean))
    assert sum(f["quarantined"] for f in faulty["run"]["files"]) > 0
    assert sum(f["quarantined"] for f in clean["run"]["files"]) == 0


def test_file_level_problems_stop_the_run_and_keep_the_warehouse(runs, tmp_path):
    """Each problem arrives as a later night against a published warehouse."""
    published = runs[(RATES[0], "faulty")]
    loaded = published / "extracts" / "2014-12-31"
    clean_imaging = runs[(RATES[0], "clean")] / "extracts" / "2014-12-31" / "imaging.csv"
    imaging = clean_imaging.read_text().splitlines()[:21]
    bad_codes = [
        ",".join(line.split(",")[:3] + ["XR"] + line.split(",")[4:]) if i % 4 == 0 else line
        for i, line in enumerate(imaging[1:])
    ]
    nights = {
        "missing_column": {"tumors.csv": "tumor_id,procedure_id,origin,histology,"
                           "technical_result\nTUM1,PRC1,primary,hcc,complete\n"},
        "not_utf8": {"patients.csv": "patient_mrn,patient_name,sex,birth_date\n"
                     "MRN1,M\xfcller,F,1950-01-01\n".encode("latin-1")},
        "not_utf8_deep": {"patients.csv": "patient_mrn,sex,birth_date\n"
                          + "MRN1,F,1950-01-01\n" * 2000 + "MRN2,\xe9,1950-01-01\n"},
        "empty_root": None,
        "over_limit": {"imaging.csv": "\n".join([imaging[0], *bad_codes]) + "\n"},
        "impossible_folder_date": {},
        "duplicate_column": {"patients.csv": "patient_mrn,sex,SEX,birth_date\n"
                             "MRN1,F,F,1950-01-01\n"},
    }  # fmt: skip
    expected = {
        "missing_column": "2015-01-01/tumors.csv: missing required column diameter_mm",
        "not_utf8": "2015-01-01/patients.csv: not a valid UTF-8 CSV file",
        "not_utf8_deep": "2015-01-01/patients.csv: not a valid UTF-8 CSV file",
        "empty_root": "holds no extract folder",
        "over_limit": "2015-01-01/imaging.csv: 5 of 20 rows quarantined (25.0%), above the "
        "limit of 5.0% (CRYOREG_QUARANTINE_LIMIT)",
        "impossible_folder_date": "2015-13-45: extract folder named like a date that does not",
        "duplicate_column": "2015-01-01/patients.csv: column sex appears more than once",
    }
    target = published / "warehouse" / "cryoreg.duckdb"
    before = target.read_bytes(), (published / "out" / "metrics.json").read_bytes()
    for case, files in nights.items():
        root = tmp_path / case
        root.mkdir()
        if files is not None:
            shutil.copytree(loaded, root / loaded.name)  # already loaded: skipped
            night = root / ("2015-13-45" if case == "impossible_folder_date" else "2015-01-01")
            night.mkdir()
            for name, content in files.items():
                data = content if isinstance(content, bytes) else content.encode("latin-1")
                (night / name).write_bytes(data)
        proc = run_cryoreg(
            "run",
            "--extracts",
            str(root),
            cwd=published,
            env={"CRYOREG_QUARANTINE_LIMIT": "0.05", **SLOW_MACHINE},
            check=False,
        )
        assert proc.returncode != 0, case
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (case, lines)
        assert lines[0].startswith("cryoreg: error: ") and expected[case] in lines[0], lines[0]
        assert (target.read_bytes(), (published / "out" / "metrics.json").read_bytes()) == before
        leftovers = [p.name for p in target.parent.iterdir() if "building" in p.name]
        assert leftovers == [], case


def test_malformed_lines_and_huge_values_are_rows_not_files(runs, tmp_path):
    """A line with too many or too few fields is quarantined as malformed_row at its own line
    (counted against the file's limit), the lines after it keep their numbers, a 17 MB value
    loads (and fails its code check), and a folder that is not an extract is named as ignored."""
    site = tmp_path / "site"
    shutil.copytree(runs[(RATES[0], "clean")], site)
    imaging = (site / "extracts" / "2014-12-31" / "imaging.csv").read_text().splitlines()
    header, rows = imaging[0], imaging[1:41]
    rows[4] += ",extra"  # line 6
    rows[8] = ",".join(rows[8].split(",")[:2])  # line 10
    rows[12] = ",".join(rows[12].split(",")[:4] + ['"' + "x" * (17 * 2**20) + '"'])  # line 14
    night = site / "extracts" / "2015-01-01"
    night.mkdir()
    (night / "imaging.csv").write_text("\n".join([header, *rows]) + "\n")
    (site / "extracts" / "latest").mkdir()
    proc = run_cryoreg("run", cwd=site, env={"CRYOREG_QUARANTINE_LIMIT": "0.2", **SLOW_MACHINE})
    assert "latest: not an extract folder (YYYY-MM-DD), ignored" in proc.stdout
    with store(site) as con:
        held = con.execute(
            "select line, reason_code, reason from quarantine.rejected_rows "
            "where file = '2015-01-01/imaging.csv' order by line"
        ).fetchall()
        (read, loaded, quarantined) = con.execute(
            "select rows_read, rows_loaded, rows_quarantined from audit.file_accounting "
            "where file = '2015-01-01/imaging.csv'"
        ).fetchone()
        lines = {
            line
            for (line,) in con.execute(
                "select _source_line from raw.imaging where _source_file = '2015-01-01/imaging.csv'"
            ).fetchall()
        }
    assert [(line, code) for line, code, _ in held] == [
        (6, "malformed_row"),
        (10, "malformed_row"),
        (14, "unknown_code"),
    ]
    assert "Expected Number of Columns: 5 Found: 6" in held[0][2]
    assert "Found: 2" in held[1][2]
    assert (read, loaded, quarantined) == (40, 37, 3)
    assert lines == set(range(2, 42))  # every line of the file, each once


def test_the_steward_page_lists_every_held_back_row_and_what_to_fix(runs, tmp_path):
    """A night stopped by the quarantine limit still leaves, beside the store and readable by
    its owner only, the page of the rows that stopped it; its one-line error points there."""
    site = tmp_path / "site"
    shutil.copytree(runs[(RATES[0], "faulty")], site)
    pages = site / "warehouse" / "steward"
    assert [p.name for p in pages.glob("quarantine-*.html")]  # the faulty night that published
    assert not [p for p in (site / "out").rglob("*") if "quarantine-" in p.name]
    clean = runs[(RATES[0], "clean")] / "extracts" / "2014-12-31" / "imaging.csv"
    imaging = clean.read_text().splitlines()
    bad = [",".join(line.split(",")[:3] + ["XR"] + line.split(",")[4:]) for line in imaging[1:6]]
    night = site / "extracts" / "2015-01-01"
    night.mkdir()
    (night / "imaging.csv").write_text("\n".join([imaging[0], *bad]) + "\n")
    proc = run_cryoreg(
        "run", cwd=site, env={"CRYOREG_QUARANTINE_LIMIT": "0.05", **SLOW_MACHINE}, check=False
    )
    assert proc.returncode == 1
    [line] = proc.stderr.strip().splitlines()
    assert "(CRYOREG_QUARANTINE_LIMIT)" in line and "every held-back row: " in line
    page = Path(line.split("every held-back row: ", 1)[1].split(" (full log: ")[0])
    assert page.parent == pages.resolve() and page.exists()
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(pages.stat().st_mode) == 0o700
    html = page.read_text()
    for row in bad:
        assert f"<td>2015-01-01/imaging.csv</td><td>{bad.index(row) + 2}</td>" in html
    assert html.count(">XR</td>") == 5
    assert "use one of the column&#39;s codes" in html
    assert "5 of them from this night" in html.replace("\n", " ")
