"""examples/analyst_queries.sql: every query runs against the paper-calibrated demo warehouse,
opened read-only as an analyst opens it, and the paper queries return the paper's counts."""

from __future__ import annotations

import re

import duckdb
import pytest

from cryoreg import paper

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
    assert (row["patients"], row["women"]) == (paper.PATIENTS, paper.WOMEN)
    ages = (row["age_mean"], row["age_min"], row["age_max"])
    assert ages == (paper.AGE_MEAN, paper.AGE_MIN, paper.AGE_MAX)


def test_paper_guidance(analyst):
    counts = {r["guidance"]: r["procedures"] for r in rows(analyst, "paper_guidance")}
    assert counts == paper.GUIDANCE


def test_paper_technical_success(analyst):
    [row] = rows(analyst, "paper_technical_success")
    ts = paper.TECHNICAL_SUCCESS
    assert (row["successes"], row["evaluable"], row["pct"]) == (ts.k, ts.n, ts.pct)


def test_paper_technique_efficacy(analyst):
    te = by(rows(analyst, "paper_technique_efficacy"), "size_group")
    counts = {g: (r["successes"], r["evaluable"], r["pct"]) for g, r in te.items()}
    assert counts == {g: (p.k, p.n, p.pct) for g, p in paper.TECHNIQUE_EFFICACY.items()}


def test_paper_local_tumor_progression(analyst):
    ltp = by(rows(analyst, "paper_local_tumor_progression"), "size_group")
    counts = {g: (r["progressed"], r["evaluable"], r["pct"]) for g, r in ltp.items()}
    assert counts == {g: (p.k, p.n, p.pct) for g, p in paper.LOCAL_TUMOR_PROGRESSION.items()}


def test_paper_adverse_events(analyst):
    ae = by(rows(analyst, "paper_adverse_events"), "size_group")
    major = paper.MAJOR_ADVERSE_EVENTS
    assert (ae["all"]["any_ae"], ae["all"]["procedures"]) == (
        paper.ADVERSE_EVENTS.k,
        paper.ADVERSE_EVENTS.n,
    )
    for group, p in major.items():
        assert (ae[group]["major_ae"], ae[group]["procedures"]) == (p.k, p.n), group
    assert (ae["lt4cm"]["major_pct"], ae["ge4cm"]["major_pct"]) == (
        major["lt4cm"].pct,
        major["ge4cm"].pct,
    )


def test_breakdowns_add_up_to_the_paper_totals(analyst):
    histology = rows(analyst, "ltp_by_histology")
    ltp = paper.LOCAL_TUMOR_PROGRESSION["all"]
    assert sum(r["progressed"] for r in histology) == ltp.k
    assert sum(r["evaluable"] for r in histology) == ltp.n
    assert len(histology) >= 2
    guidance = rows(analyst, "ae_by_guidance")
    assert sum(r["any_ae"] for r in guidance) == paper.ADVERSE_EVENTS.k
    assert sum(r["major_ae"] for r in guidance) == paper.MAJOR_ADVERSE_EVENTS["all"].k
    assert {r["guidance"] for r in guidance} == set(paper.GUIDANCE)
    competing = rows(analyst, "ltp_competing_outcomes")
    assert sum(r["progressed"] for r in competing) == ltp.k
    assert sum(r["evaluable"] for r in competing) == ltp.n
    per_patient = rows(analyst, "tumors_per_patient")
    assert sum(r["tumors"] * r["patients"] for r in per_patient) == paper.TUMORS
    steps = rows(analyst, "inclusion_flowchart")
    remaining = [s["tumors_remaining"] for s in steps]
    assert remaining == [paper.TUMORS, paper.TECHNICAL_SUCCESS.n, ltp.n]


def test_the_analyst_cannot_write(analyst):
    with pytest.raises(duckdb.Error):
        analyst.execute("create table marts.scratch as select 1")


def test_cryoreg_sql_answers_read_only(paper_site):
    query = "select count_if(te_success) as te_success from marts.fct_tumor"
    proc = run_cryoreg("sql", query, cwd=paper_site.base)
    assert str(paper.TECHNIQUE_EFFICACY["all"].k) in proc.stdout
    refused = run_cryoreg(
        "sql", "create table marts.x as select 1", cwd=paper_site.base, check=False
    )
    assert refused.returncode != 0 and "read-only" in refused.stderr.lower()
