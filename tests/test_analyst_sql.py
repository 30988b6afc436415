"""examples/analyst_queries.sql: every query runs against the paper-calibrated demo warehouse,
opened read-only as an analyst opens it, and the paper queries return the paper's counts."""

from __future__ import annotations

import re

import duckdb
import pytest

from conftest import REPO, run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")

EXAMPLES = REPO / "examples" / "analyst_queries.sql"


def named_queries() -> dict[str, str]:
    """{name: SQL} from the `-- name: x` headers, in file order."""
    parts = re.split(r"^-- name: *(\w+) *$", EXAMPLES.read_text(encoding="utf-8"), flags=re.M)
    return {name: sql.strip() for name, sql in zip(parts[1::2], parts[2::2], strict=True)}


QUERIES = named_queries()


@pytest.fixture(scope="module")
def analyst(paper_site):
    """A read-only connection to the published demo warehouse, as an analyst would open it."""
    warehouse = paper_site.base / "warehouse" / "cryoreg.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        yield con


def rows(con: duckdb.DuckDBPyConnection, name: str) -> list[dict]:
    cursor = con.execute(QUERIES[name])
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def by(result: list[dict], key: str) -> dict:
    return {r[key]: r for r in result}


def test_the_file_names_every_query_once():
    text = EXAMPLES.read_text(encoding="utf-8")
    assert len(QUERIES) == len(re.findall(r"^-- name:", text, flags=re.M)) >= 10
    for name, sql in QUERIES.items():
        assert sql.rstrip().endswith(";") and sql.count(";") == 1, name
        assert "marts." in sql or "quarantine." in sql, name


@pytest.mark.parametrize("name", list(QUERIES))
def test_every_query_runs_read_only(analyst, name):
    result = rows(analyst, name)
    assert isinstance(result, list)
    if not name.startswith("quarantined"):  # the demo extract has no defects
        assert result, name


def test_paper_cohort(analyst):
    [row] = rows(analyst, "paper_cohort")
    assert (row["patients"], row["women"]) == (186, 95)
    assert (row["age_mean"], row["age_min"], row["age_max"]) == (60.9, 29, 88)


def test_paper_guidance(analyst):
    counts = {r["guidance"]: r["procedures"] for r in rows(analyst, "paper_guidance")}
    assert counts == {"CT": 126, "MRI": 100, "PET/CT": 10}


def test_paper_technical_success(analyst):
    [row] = rows(analyst, "paper_technical_success")
    assert (row["successes"], row["evaluable"], row["pct"]) == (279, 295, 94.6)


def test_paper_technique_efficacy(analyst):
    te = by(rows(analyst, "paper_technique_efficacy"), "size_group")
    counts = {g: (r["successes"], r["evaluable"], r["pct"]) for g, r in te.items()}
    assert counts == {
        "all": (231, 258, 89.5),
        "lt4cm": (213, 228, 93.4),
        "ge4cm": (18, 30, 60.0),
    }


def test_paper_local_tumor_progression(analyst):
    ltp = by(rows(analyst, "paper_local_tumor_progression"), "size_group")
    counts = {g: (r["progressed"], r["evaluable"], r["pct"]) for g, r in ltp.items()}
    assert counts == {
        "all": (60, 258, 23.3),
        "lt4cm": (41, 228, 18.0),
        "ge4cm": (19, 30, 63.3),
    }


def test_paper_adverse_events(analyst):
    ae = by(rows(analyst, "paper_adverse_events"), "size_group")
    assert (ae["all"]["any_ae"], ae["all"]["major_ae"], ae["all"]["procedures"]) == (80, 25, 236)
    assert (ae["lt4cm"]["major_ae"], ae["lt4cm"]["procedures"]) == (17, 195)
    assert (ae["ge4cm"]["major_ae"], ae["ge4cm"]["procedures"]) == (8, 41)
    assert (ae["lt4cm"]["major_pct"], ae["ge4cm"]["major_pct"]) == (8.7, 19.5)


def test_breakdowns_add_up_to_the_paper_totals(analyst):
    histology = rows(analyst, "ltp_by_histology")
    assert sum(r["progressed"] for r in histology) == 60
    assert sum(r["evaluable"] for r in histology) == 258
    assert len(histology) >= 2
    guidance = rows(analyst, "ae_by_guidance")
    assert sum(r["any_ae"] for r in guidance) == 80
    assert sum(r["major_ae"] for r in guidance) == 25
    assert {r["guidance"] for r in guidance} == {"CT", "MRI", "PET/CT"}
    competing = rows(analyst, "ltp_competing_outcomes")
    assert sum(r["progressed"] for r in competing) == 60
    assert sum(r["evaluable"] for r in competing) == 258
    assert sum(r["tumors"] * r["patients"] for r in rows(analyst, "tumors_per_patient")) == 299
    steps = rows(analyst, "inclusion_flowchart")
    assert [s["tumors_remaining"] for s in steps] == [299, 295, 258]


def test_the_analyst_cannot_write(analyst):
    with pytest.raises(duckdb.Error):
        analyst.execute("create table marts.scratch as select 1")


def test_cryoreg_sql_answers_read_only(paper_site):
    query = "select count_if(te_success) as te_success from marts.fct_tumor"
    proc = run_cryoreg("sql", query, cwd=paper_site.base)
    assert "231" in proc.stdout
    refused = run_cryoreg(
        "sql", "create table marts.x as select 1", cwd=paper_site.base, check=False
    )
    assert refused.returncode != 0 and "read-only" in refused.stderr.lower()
