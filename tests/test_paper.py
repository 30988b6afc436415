"""The paper's table, reproduced end to end: `cryoreg synth --profile paper` then `cryoreg run`.

Every count of Glazer et al. (AJR 2017) is asserted exactly; means and medians after rounding to
the paper's one decimal.
"""

from __future__ import annotations

import hashlib
import json

import duckdb
import pytest

from conftest import run_cryoreg

pytestmark = pytest.mark.xdist_group("paper")


@pytest.fixture(scope="module")
def paper(paper_site):
    metrics = json.loads((paper_site.base / "out" / "metrics.json").read_text())
    return paper_site.base, metrics, paper_site.run_stdout


def kn(p: dict) -> tuple[int, int]:
    return p["k"], p["n"]


def test_cohort(paper):
    c = paper[1]["cohort"]
    assert (c["patients"], c["women"]) == (186, 95)
    assert round(c["age_years"]["mean"], 1) == 60.9
    assert (c["age_years"]["min"], c["age_years"]["max"]) == (29, 88)
    assert c["procedures"] == 236
    assert c["guidance"] == {"CT": 126, "MRI": 100, "PET/CT": 10}
    assert (c["tumors"], c["metastases"], c["primary"]) == (299, 243, 56)
    d = c["diameter_cm"]
    assert [round(d[k], 1) for k in ("mean", "median", "min", "max")] == [2.5, 2.2, 0.3, 7.8]
    f = c["follow_up_years"]
    assert round(f["mean"], 1) == 2.5
    assert round(f["min"] * 12) == 2  # 2 months
    assert round(f["max"], 1) == 14.6


def test_technical_success_and_efficacy(paper):
    m = paper[1]
    assert kn(m["technical_success"]["all"]) == (279, 295)
    te = m["technique_efficacy"]
    assert kn(te["all"]) == (231, 258)
    assert kn(te["lt4cm"]) == (213, 228)
    assert kn(te["ge4cm"]) == (18, 30)
    assert te["p_chi2"] < 0.0001
    assert round(te["all"]["pct"], 1) == 89.5


def test_local_tumor_progression(paper):
    ltp = paper[1]["local_tumor_progression"]
    assert kn(ltp["all"]) == (60, 258)
    assert kn(ltp["lt4cm"]) == (41, 228)
    assert kn(ltp["ge4cm"]) == (19, 30)
    assert ltp["p_chi2"] < 0.0001


def test_adverse_events(paper):
    ae = paper[1]["adverse_events"]
    assert kn(ae["any"]) == (80, 236)
    assert kn(ae["major"]) == (25, 236)
    assert kn(ae["major_lt4cm"]) == (17, 195)
    assert kn(ae["major_ge4cm"]) == (8, 41)
    assert round(ae["p_chi2"], 2) == 0.04
    assert round(ae["p_fisher"], 3) == 0.052
    assert round(ae["major"]["pct"], 1) == 10.6


def test_survival_block_is_complete(paper):
    s = paper[1]["ltp_free_survival"]
    assert (s["all"]["n"], s["lt4cm"]["n"], s["ge4cm"]["n"]) == (258, 228, 30)
    assert (s["all"]["events"], s["lt4cm"]["events"], s["ge4cm"]["events"]) == (60, 41, 19)
    assert s["logrank_p"] < 0.0001
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


def test_summary_and_outputs(paper):
    base, _, stdout = paper
    assert "technique efficacy     231/258" in stdout
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
