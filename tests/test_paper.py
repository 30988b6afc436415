"""The paper's table, reproduced end to end: `cryoreg synth --profile paper` then `cryoreg run`.

Every count of Glazer et al. (AJR 2017) is asserted exactly; means and medians after rounding to
the paper's one decimal.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from cryoreg import paper as figures

from conftest import run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")


@pytest.fixture(scope="module")
def paper(paper_site):
    metrics = json.loads((paper_site.base / "out" / "metrics.json").read_text())
    return paper_site.base, metrics, paper_site.run_stdout


def kn(p: dict) -> tuple[int, int]:
    return p["k"], p["n"]


def below(printed: str) -> float:
    """The bound of a p-value the paper prints as '< x'."""
    return float(printed.removeprefix("<").strip())


def test_cohort(paper):
    c = paper[1]["cohort"]
    assert (c["patients"], c["women"]) == (figures.PATIENTS, figures.WOMEN)
    assert round(c["age_years"]["mean"], 1) == figures.AGE_MEAN
    assert (c["age_years"]["min"], c["age_years"]["max"]) == (figures.AGE_MIN, figures.AGE_MAX)
    assert c["procedures"] == figures.PROCEDURES
    assert c["guidance"] == figures.GUIDANCE
    assert (c["tumors"], c["metastases"], c["primary"]) == (
        figures.TUMORS,
        figures.METASTASES,
        figures.PRIMARY,
    )
    d = c["diameter_cm"]
    assert [round(d[k], 1) for k in ("mean", "median", "min", "max")] == [
        figures.DIAMETER_CM_MEAN,
        figures.DIAMETER_CM_MEDIAN,
        figures.DIAMETER_CM_MIN,
        figures.DIAMETER_CM_MAX,
    ]
    f = c["follow_up_years"]
    assert round(f["mean"], 1) == figures.FOLLOW_UP_YEARS_MEAN
    assert round(f["min"] * 12) == figures.FOLLOW_UP_MONTHS_MIN
    assert round(f["max"], 1) == figures.FOLLOW_UP_YEARS_MAX


def test_technical_success_and_efficacy(paper):
    m = paper[1]
    ts = figures.TECHNICAL_SUCCESS
    assert kn(m["technical_success"]["all"]) == (ts.k, ts.n)
    te = m["technique_efficacy"]
    for group, p in figures.TECHNIQUE_EFFICACY.items():
        assert kn(te[group]) == (p.k, p.n), group
    assert te["p_chi2"] < below(figures.TECHNIQUE_EFFICACY_P)
    assert round(te["all"]["pct"], 1) == figures.TECHNIQUE_EFFICACY["all"].pct


def test_local_tumor_progression(paper):
    ltp = paper[1]["local_tumor_progression"]
    for group, p in figures.LOCAL_TUMOR_PROGRESSION.items():
        assert kn(ltp[group]) == (p.k, p.n), group
    assert ltp["p_chi2"] < below(figures.LOCAL_TUMOR_PROGRESSION_P)


def test_adverse_events(paper):
    ae = paper[1]["adverse_events"]
    major = figures.MAJOR_ADVERSE_EVENTS
    assert kn(ae["any"]) == (figures.ADVERSE_EVENTS.k, figures.ADVERSE_EVENTS.n)
    assert kn(ae["major"]) == (major["all"].k, major["all"].n)
    assert kn(ae["major_lt4cm"]) == (major["lt4cm"].k, major["lt4cm"].n)
    assert kn(ae["major_ge4cm"]) == (major["ge4cm"].k, major["ge4cm"].n)
    assert round(ae["p_chi2"], 2) == figures.MAJOR_ADVERSE_EVENTS_P
    assert round(ae["p_fisher"], 3) == 0.052  # not in the paper (figures.NOTES["ae_p"])
    assert round(ae["major"]["pct"], 1) == major["all"].pct


def test_survival_block_is_complete(paper):
    s = paper[1]["ltp_free_survival"]
    for group, p in figures.LOCAL_TUMOR_PROGRESSION.items():
        assert (s[group]["n"], s[group]["events"]) == (p.n, p.k), group
    assert s["logrank_p"] < 0.0001  # the paper prints no log-rank test
    for group in ("all", "lt4cm", "ge4cm"):
        for year in ("1", "2", "3", "5"):
            point = s[group]["at_years"][year]
            low, high = point["ci95"]
            assert 0 <= low <= point["survival"] <= high <= 1
    assert s["all"]["at_years"]["1"]["at_risk"] >= s["all"]["at_years"]["5"]["at_risk"]


def test_run_block_traces_the_inputs(paper):
    base, metrics, _ = paper
    run = metrics["run"]
    folder = base / "extracts" / "2014-12-31"
    digest = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    assert run["extracts"] == [
        {"name": "2014-12-31", "content_hash": digest.hexdigest(), "loaded_this_run": True}
    ]
    assert run["code_version"] and run["started_at"] <= run["finished_at"]
    for f in run["files"]:
        assert f["read"] == f["loaded"] + f["quarantined"]
    # where the build's time went: per node (the slowest) and per kind of node
    by_kind = run["dbt"]["seconds_by_kind"]
    assert by_kind["model"] > 0 and by_kind["test"] > 0  # exposures take no time
    assert set(by_kind) <= {"model", "test", "exposure"}
    slowest = run["dbt"]["slowest_nodes"]
    assert slowest and slowest[0]["seconds"] <= sum(by_kind.values())


def test_summary_and_outputs(paper):
    base, _, stdout = paper
    te = figures.TECHNIQUE_EFFICACY["all"]
    assert f"technique efficacy     {te.k}/{te.n}" in stdout
    assert (base / "out" / "report.html").stat().st_size > 10_000
    report = (base / "out" / "report.html").read_text()
    assert "Status: <strong>passed</strong>" in report
    assert "href='data_docs/index.html'" in report
    assert (base / "out" / "data_docs" / "index.html").exists()
    assert "data quality: passed" in stdout
    assert not list(base.glob("warehouse/.*building*"))


def test_marts_carry_no_identifiers(paper):
    base = paper[0]
    folder = base / "extracts" / "2014-12-31"
    with duckdb.connect() as con:
        mrns, names, births = (
            {
                v
                for (v,) in con.execute(
                    f"select {col} from read_csv('{folder / 'patients.csv'}', all_varchar = true)"
                ).fetchall()
            }
            for col in ("patient_mrn", "patient_name", "birth_date")
        )
    with duckdb.connect(str(base / "warehouse" / "cryoreg.duckdb"), read_only=True) as con:
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        ]
        values: set[str] = set()
        for table in tables:
            cols = [
                c
                for (c,) in con.execute(
                    "select column_name from information_schema.columns "
                    "where table_schema = 'marts' and table_name = ?",
                    [table],
                ).fetchall()
            ]
            for col in cols:
                values |= {
                    v
                    for (v,) in con.execute(
                        f'select distinct "{col}"::varchar from marts.{table}'
                    ).fetchall()
                }
    assert not values & mrns
    assert not values & names
    assert not values & births
    outputs = " ".join(
        p.read_text(errors="ignore") for p in (base / "out").rglob("*") if p.is_file()
    )
    for secret in list(mrns)[:50] + list(names)[:50]:
        assert secret not in outputs


def test_failed_run_leaves_published_warehouse_untouched(paper, tmp_path):
    base = paper[0]
    published = base / "warehouse" / "cryoreg.duckdb"
    before = published.read_bytes()
    bad = tmp_path / "bad" / "2015-01-01"
    bad.mkdir(parents=True)
    (bad / "tumors.csv").write_text("tumor_id,procedure_id\nT1,P1\n")
    proc = run_cryoreg("run", "--extracts", str(tmp_path / "bad"), cwd=base, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines == [lines[-1]] and "tumors.csv: missing required column" in lines[-1]
    assert published.read_bytes() == before


def test_production_refuses_without_key(paper):
    proc = run_cryoreg(
        "run",
        cwd=paper[0],
        check=False,
        env={"CRYOREG_ENV": "production", "CRYOREG_PSEUDONYM_KEY": ""},
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "cryoreg: error: CRYOREG_PSEUDONYM_KEY is not set and CRYOREG_ENV=production: "
        "refusing to start"
    ]
