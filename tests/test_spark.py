"""The same nightly run on Apache Spark (local mode): `CRYOREG_ENGINE=spark cryoreg run`.

The paper registry on Spark reproduces every count of the paper's table, as on DuckDB; a
registry with faults, loaded over three nights on each engine, ends in the same marts row by row
(patient keys included), the same quarantine and the same metrics. Analysts on Spark read the
published night through the views of the `cryoreg` database, and a failed night leaves those
views on the previous night's tables.

Run with `pytest -m spark` (a JVM and a Spark session per run: minutes, not seconds).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cryoreg import paper as figures
from cryoreg.synth.nights import extract_dates

from conftest import (
    marts_differences,
    metric_differences,
    quarantine_rows,
    run_cryoreg,
)

pytestmark = pytest.mark.spark

SPARK = {"CRYOREG_ENGINE": "spark", "CRYOREG_SPARK_MASTER": "local[2]"}
NIGHTS = 3
FAULTY = {"CRYOREG_QUARANTINE_LIMIT": "0.25"}


def metrics(folder: Path) -> dict:
    return json.loads((folder / "out" / "metrics.json").read_text())


def outcome(m: dict) -> dict:
    """Everything but the run block (ids, times, timings, code version)."""
    return {k: v for k, v in m.items() if k != "run"}


def spark_query(folder: Path, sql: str) -> list[list]:
    """Rows of a query on the run's Spark catalog, from a new process (the embedded metastore
    admits one process at a time), as a user's own Spark job would read it."""
    script = (
        "import json, sys; from pathlib import Path; from cryoreg.engine import spark;"
        "s = spark.session(Path(sys.argv[1]), '');"
        "print(json.dumps([list(r) for r in s.sql(sys.argv[2]).collect()], default=str))"
    )
    warehouse = folder / "warehouse" / "cryoreg.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(warehouse), sql],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def paper_on_spark(tmp_path_factory, paper_site):
    base = tmp_path_factory.mktemp("paper-spark")
    shutil.copytree(paper_site.base / "extracts", base / "extracts")
    proc = run_cryoreg("run", cwd=base, env=SPARK)
    return base, proc.stdout, metrics(paper_site.base)


@pytest.mark.xdist_group("spark-paper")
def test_paper_registry_on_spark_reproduces_the_paper(paper_on_spark):
    base, stdout, on_duckdb = paper_on_spark
    m = metrics(base)
    assert not metric_differences(outcome(m), outcome(on_duckdb))
    ts, te = m["technical_success"]["all"], m["technique_efficacy"]
    assert (ts["k"], ts["n"]) == (figures.TECHNICAL_SUCCESS.k, figures.TECHNICAL_SUCCESS.n)
    for group, p in figures.TECHNIQUE_EFFICACY.items():
        assert (te[group]["k"], te[group]["n"]) == (p.k, p.n), group
    for group, p in figures.LOCAL_TUMOR_PROGRESSION.items():
        ltp = m["local_tumor_progression"][group]
        assert (ltp["k"], ltp["n"]) == (p.k, p.n), group
    ae = m["adverse_events"]
    assert (ae["any"]["k"], ae["any"]["n"]) == (
        figures.ADVERSE_EVENTS.k,
        figures.ADVERSE_EVENTS.n,
    )
    assert "technical success      279/295" in stdout


@pytest.mark.xdist_group("spark-paper")
def test_analysts_on_spark_read_the_published_night(paper_on_spark):
    base = paper_on_spark[0]
    run_id = metrics(base)["run"]["run_id"]
    published, tumors, identifiers = spark_query(
        base,
        "select (select run_id from cryoreg.published_run),"
        " (select count(*) from cryoreg.fct_tumor),"
        " (select count(*) from cryoreg.rejected_rows where raw_value like 'MRN%')",
    )[0]
    assert (published, tumors, identifiers) == (run_id, figures.TUMORS, 0)


@pytest.fixture(scope="module")
def nights_on_both(tmp_path_factory):
    """One registry with faults, loaded night by night on DuckDB and on Spark."""
    base = tmp_path_factory.mktemp("spark-nights")
    scale = ["--profile", "scale", "--patients", "300"]
    run_cryoreg("synth", "registry", *scale, "--nights", str(NIGHTS), "--faults", "0.02", cwd=base)
    # a line with too few fields: held back as malformed_row on both engines, at the same line
    last = base / "registry" / extract_dates(NIGHTS)[-1] / "imaging.csv"
    with last.open("a", encoding="utf-8") as handle:
        handle.write("IMG-MALFORMED,short\n")
    sites = {}
    for engine, env in (("duckdb", FAULTY), ("spark", {**FAULTY, **SPARK})):
        site = base / engine
        (site / "extracts").mkdir(parents=True)
        for name in extract_dates(NIGHTS):
            shutil.copytree(base / "registry" / name, site / "extracts" / name)
            run_cryoreg("run", cwd=site, env=env)
        sites[engine] = site
    return sites


@pytest.mark.xdist_group("spark-nights")
def test_faults_and_nights_give_the_same_warehouse_on_both_engines(nights_on_both):
    duck, spark = (nights_on_both[e] / "warehouse" / "cryoreg.duckdb" for e in ("duckdb", "spark"))
    diffs = marts_differences(spark, duck)
    assert all(d == (0, 0) for d in diffs.values()), diffs
    held = quarantine_rows(spark)
    assert held == quarantine_rows(duck) and len(held) > 10
    assert sum(1 for row in held if row[-1] == "malformed_row") == 1
    assert not metric_differences(
        outcome(metrics(nights_on_both["spark"])), outcome(metrics(nights_on_both["duckdb"]))
    )


@pytest.mark.xdist_group("spark-nights")
def test_a_failed_night_on_spark_leaves_the_published_one(nights_on_both):
    site = nights_on_both["spark"]
    published = site / "warehouse" / "cryoreg.duckdb"
    before = published.read_bytes()
    run_id = metrics(site)["run"]["run_id"]
    folder = site / "extracts" / "2099-01-01"
    folder.mkdir()
    header = b"tumor_id,procedure_id,origin,histology,liver_segment,diameter_mm,technical_result\n"
    (folder / "tumors.csv").write_bytes(header + b"T1,P1,primary,hcc,1,2\xff0,complete\n")
    proc = run_cryoreg("run", cwd=site, env={**FAULTY, **SPARK}, check=False)
    assert proc.returncode == 1
    assert "2099-01-01/tumors.csv: not a valid UTF-8 CSV file" in proc.stderr, proc.stderr
    assert published.read_bytes() == before
    assert spark_query(site, "select run_id from cryoreg.published_run") == [[run_id]]
