"""Adversarial sequences of nights: after any of them, loading night by night must end where
loading every folder at once does (same live registry, same marts, same outcome metrics).

Two layers: the registry (real ingest and dbt build of the registry's models on a store: its
current rows and quarantine) and the real `cryoreg run` (every stage) compared mart by mart.
The sequences are hand-written and small; each night changes several things at once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from conftest import (
    REGISTRY_LAYERS,
    build_registry,
    live_rows,
    metric_differences,
    nights_in_runs,
    quarantined,
    run_cryoreg,
    write_extract,
)

pytestmark = pytest.mark.xdist_group("sequences")

ENV = {
    "CRYOREG_QUARANTINE_LIMIT": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
DATES = ["2014-12-30", "2014-12-31", "2015-01-01", "2015-01-02", "2015-01-03"]
HEADERS = {
    "patients": "patient_mrn,sex,birth_date,death_date,last_contact_date,record_status",
    "procedures": "procedure_id,patient_mrn,procedure_date,guidance,record_status",
    "tumors": "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result,record_status",
    "imaging": "imaging_id,tumor_id,imaging_date,modality,finding,record_status",
    "adverse_events": "event_id,procedure_id,onset_date,ctcae_grade,record_status",
}

Night = tuple[str, dict[str, str]]


def night(date: str, **rows: str) -> Night:
    """One extract folder: {entity: CSV rows without header} (the header has record_status)."""
    return date, {f"{e}.csv": f"{HEADERS[e]}\n{text.strip()}\n" for e, text in rows.items()}


def deleted(*ids: str, entity: str) -> str:
    """Deletion rows: the id, empty values, record_status = deleted."""
    blanks = "," * (HEADERS[entity].count(",") - 1)
    return "".join(f"{i}{blanks},deleted\n" for i in ids)


# The first night every end-to-end sequence starts from. Tumors with a technique-efficacy read
# (30-180 days) and later reads, in both size groups; I12 precedes its procedure (quarantined).
BASE = night(
    DATES[0],
    patients="""
M1,F,1950-01-01,,,
M2,M,1960-01-01,,,
M3,F,1970-01-01,2012-06-01,,
M4,M,1955-01-01,,2012-01-01,
""",
    procedures="""
P1,M1,2010-01-01,CT,
P2,M2,2010-02-01,CT,
P3,M3,2010-03-01,MRI,
P4,M4,2010-04-01,CT,
P5,M1,2011-01-01,CT,
""",
    tumors="""
T1,P1,primary,hcc,20,complete,
T2,P2,primary,hcc,45,complete,
T3,P3,metastasis,colorectal,30,incomplete,
T4,P4,primary,hcc,50,complete,
T5,P5,primary,hcc,15,complete,
T6,P4,metastasis,breast,25,not_assessed,
""",
    imaging="""
I1,T1,2010-03-01,CT,no_tumor,
I2,T2,2010-04-01,CT,no_tumor,
I3,T2,2011-02-01,MRI,local_progression,
I4,T3,2010-05-01,CT,residual_tumor,
I5,T4,2010-06-01,CT,no_tumor,
I6,T4,2011-06-01,MRI,no_tumor,
I7,T5,2011-03-01,CT,no_tumor,
I8,T1,2011-01-01,CT,no_tumor,
I12,T4,2010-03-20,CT,no_tumor,
""",
    adverse_events="""
A1,P1,2010-01-05,2,
A2,P2,2010-02-03,3,
A3,P4,2010-04-10,1,
""",
)

# --- a mixed sequence that must (and does) reach the marts of all at once -------------------

MIXED = [
    BASE,
    night(
        DATES[1],
        # a read moved to another tumor; a new read for a tumor deleted the same night; an
        # orphan read whose tumor arrives later
        imaging="""
I8,T5,2011-04-01,CT,no_tumor,
I9,T6,2010-06-01,CT,no_tumor,
I10,T7,2011-05-01,CT,residual_tumor,
""",
        # a tumor moved to another procedure (I4 stays after its date); T6 deleted
        tumors="T3,P4,metastasis,colorectal,30,incomplete,\n" + deleted("T6", entity="tumors"),
        # a procedure a week earlier (its reads later in their days)
        procedures="P2,M2,2010-01-25,CT,",
        # a death date and a corrected death date (overall survival, LTP censoring)
        patients="M4,M,1955-01-01,2011-09-01,2012-01-01,\nM3,F,1970-01-01,2011-10-01,,",
        # an adverse event moved to another procedure
        adverse_events="A1,P5,2011-01-03,3,",
    ),
    night(
        DATES[2],
        # T6 registered again (on P1): I9 comes back; T7 arrives: I10 comes back
        tumors="T6,P1,metastasis,breast,25,complete,\nT7,P5,primary,hcc,35,complete,",
    ),
    # the last two folders arrive together (a missed night): one run loads both
    night(
        DATES[3],
        # T7 deleted again: I10 goes; T4's technique-efficacy read deleted; P4 to M2
        tumors=deleted("T7", entity="tumors"),
        imaging=deleted("I5", entity="imaging"),
        procedures="P4,M2,2010-04-01,CT,",
    ),
    night(
        DATES[4],
        imaging="I11,T1,2011-06-01,MRI,local_progression,",
        patients="M2,M,1960-01-01,,2013-01-01,",
    ),
]
MIXED_RUNS = [[0], [1], [2], [3, 4]]  # folder indexes each nightly run sees appear

# --- a parent deleted after its child moved to it --------------------------------------------

# Night 2 moves a read (I1: T1 -> T2), a tumor (T5: P5 -> P2) and an adverse event (A1: P1 ->
# P2) onto P2's family; night 3 deletes P2. All at once, the moved rows' latest versions are
# orphans and quarantined, so their earlier versions (on T1, P5, P1) are current and live.
# Night by night the cascade removes only the moved versions and brings the earlier ones back.
FALLBACK = [
    BASE,
    night(
        DATES[1],
        imaging="I1,T2,2010-04-15,CT,no_tumor,",
        tumors="T5,P2,primary,hcc,15,complete,",
        adverse_events="A1,P2,2010-02-05,2,",
    ),
    night(DATES[2], procedures=deleted("P2", entity="procedures")),
]

# --- parents' dates corrected after their children were judged -------------------------------

# P1 moves from 2010-01-01 to 2010-03-15: I1 (2010-03-01, live) now precedes it; all at once
# quarantines I1 (T1 loses its technique-efficacy read). P4 moves from 2010-04-01 to 2010-02-01:
# I12 (2010-03-20, quarantined as before its procedure) is now day 47, T4's technique-efficacy
# study; all at once loads it. Night by night, the run that loads the corrections re-judges the
# parents' live children of earlier nights and re-admits the date rejections that pass now.
DATES_CORRECTED = [
    BASE,
    night(DATES[1], procedures="P1,M1,2010-03-15,CT,\nP4,M4,2010-02-01,CT,"),
]
# the corrections undone the next night and made again the night after
DATES_BACK_AND_FORTH = [
    *DATES_CORRECTED,
    night(DATES[2], procedures="P1,M1,2010-01-01,CT,\nP4,M4,2010-04-01,CT,"),
    night(DATES[3], procedures="P1,M1,2010-03-15,CT,\nP4,M4,2010-02-01,CT,"),
]
# M3 born after P3 (2010-03-01): P3 is a procedure before birth, its tumor T3 and T3's read I4
# orphans; the birth date corrected back brings the three back; then wrong again
BIRTH_BACK_AND_FORTH = [
    BASE,
    night(DATES[1], patients="M3,F,2010-06-01,2012-06-01,,"),
    night(DATES[2], patients="M3,F,1970-01-01,2012-06-01,,"),
    night(DATES[3], patients="M3,F,2010-06-01,2012-06-01,,"),
]
# T1 moves from P1 (2010-01-01) to P5 (2011-01-01): I1 (2010-03-01) now precedes its procedure;
# then back to P1
TUMOR_MOVED = [
    BASE,
    night(DATES[1], tumors="T1,P5,primary,hcc,20,complete,"),
    night(DATES[2], tumors="T1,P1,primary,hcc,20,complete,"),
]
# I30's second version precedes P1 (quarantined, the first stays current); P1 moved earlier
# makes the second pass (current); P1 moved back makes the first current again
VERSIONS_AND_DATES = [
    BASE,
    night(DATES[1], imaging="I30,T1,2010-03-01,CT,no_tumor,"),
    night(DATES[2], imaging="I30,T1,2009-12-20,MRI,residual_tumor,"),
    night(DATES[3], procedures="P1,M1,2009-12-01,CT,"),
    night(DATES[4], procedures="P1,M1,2010-01-01,CT,"),
]


# --- the registry layer: real ingest and dbt build on a store, night by night vs at once ---


def ingested(tmp_path: Path, nights: list[Night], runs: list[list[int]]):
    """Land and build `runs` (folder indexes appearing before each run) in one store."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    return nights_in_runs(tmp_path / f"w-{len(runs)}.duckdb", nights, runs)[1]


def assert_every_night_as_at_once(tmp_path: Path, nights: list[Night], runs: list[list[int]]):
    """After each run, the live registry and what quarantine holds back (with the reason) are
    those of loading the folders seen so far at once."""
    for n in range(1, len(runs) + 1):
        _, nightly = nights_in_runs(tmp_path / "nightly.duckdb", nights, [runs[n - 1]], n - 1)
        seen = sorted(k for run in runs[:n] for k in run)
        once = ingested(tmp_path / f"once-{n}", [nights[k] for k in seen], [list(range(len(seen)))])
        assert live_rows(nightly) == live_rows(once), f"live rows after run {n}"
        assert quarantined(nightly) == quarantined(once), f"quarantine after run {n}"
        nightly.close()
        once.close()


def test_mixed_sequence_gives_the_registry_of_all_at_once(tmp_path):
    assert_every_night_as_at_once(tmp_path, MIXED, MIXED_RUNS)


def test_parents_deleted_and_recreated_and_orphans_whose_parent_comes_later(tmp_path):
    """An orphan whose parent arrives and goes within one run; an id twice in a file (the last
    copy, a deletion, wins) and in two folders of a run; a child moved through several parents
    that are deleted; an orphan whose parent is registered on a later night."""
    first = {**BASE[1], "imaging.csv": BASE[1]["imaging.csv"] + "I20,T20,2010-03-01,CT,no_tumor,\n"}
    nights = [
        (DATES[0], first),
        night(
            DATES[1],
            tumors="T1,P2,primary,hcc,20,complete,\n" + deleted("T1", entity="tumors"),
            imaging="I1,T2,2010-04-15,CT,no_tumor,\nI20,T2,2010-04-01,CT,no_tumor,",
            adverse_events=deleted("A3", entity="adverse_events"),
        ),
        night(
            DATES[2],
            tumors="T3,P3,metastasis,colorectal,30,incomplete,",
            imaging="I1,T3,2010-04-16,CT,no_tumor,",
            adverse_events="A3,P2,2010-02-05,1,",
        ),
        night(
            DATES[3],
            procedures=deleted("P2", entity="procedures"),
            tumors=deleted("T3", entity="tumors"),
        ),
        night(DATES[4], tumors="T20,P1,primary,hcc,10,complete,"),
    ]
    assert_every_night_as_at_once(tmp_path, nights, [[0], [1, 2], [3], [4]])


def test_a_failed_nights_rows_change_nothing_when_the_registry_is_rebuilt(tmp_path):
    """A night that fails keeps its rows in the ledger, and its folder, fixed, loads again with
    the same ids on other lines. The registry rebuilt from the whole ledger (a full refresh, as
    after an upgrade) is the one built night by night: the failed night's copy of the file is
    no duplicate of the fixed one."""
    import os

    from cryoreg.transform import dbt as transform

    store, root = tmp_path / "w.duckdb", tmp_path / "extracts"
    write_extract(root, *BASE)
    build_registry(store, root, "run-0")[1].close()
    failed = night(DATES[1], imaging="I40,T1,2010-03-01,XR,no_tumor,\nI41,T1,2010-03-02,CT,,")
    write_extract(root, *failed)
    build_registry(store, root, "run-1", publish=False)[1].close()
    shutil.rmtree(root / DATES[1])
    write_extract(
        root,
        *night(DATES[1], imaging="I41,T1,2010-03-02,CT,no_tumor,\nI40,T1,2010-03-01,CT,no_tumor,"),
    )
    _, con = build_registry(store, root, "run-2")
    nightly = live_rows(con), quarantined(con)
    con.close()
    assert {"I40", "I41"} <= {row[0] for row in nightly[0]["imaging"]}
    transform.dbt_build(
        store, os.environ["CRYOREG_PSEUDONYM_KEY"], full_refresh=True, select=REGISTRY_LAYERS
    )
    with duckdb.connect(str(store)) as con:
        assert (live_rows(con), quarantined(con)) == nightly


def test_date_corrections_back_and_forth(tmp_path):
    assert_every_night_as_at_once(tmp_path, DATES_BACK_AND_FORTH, [[0], [1], [2, 3]])


def test_birth_date_corrections_back_and_forth(tmp_path):
    assert_every_night_as_at_once(tmp_path, BIRTH_BACK_AND_FORTH, [[0], [1, 2], [3]])


def test_a_date_correction_falls_back_to_and_brings_back_versions(tmp_path):
    runs = [[i] for i in range(len(VERSIONS_AND_DATES))]
    assert_every_night_as_at_once(tmp_path, VERSIONS_AND_DATES, runs)


# --- end to end: `cryoreg run` night by night vs all at once ---------------------------------


def warehouse(site: Path) -> Path:
    return site / "warehouse" / "cryoreg.duckdb"


def outcome(site: Path) -> dict:
    m = json.loads((site / "out" / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k != "run" and "quarantin" not in k}


def marts_differences(a: Path, b: Path) -> dict[str, tuple[int, int]]:
    """Per marts table with a difference: (rows only in a, rows only in b)."""
    out = {}
    with duckdb.connect() as con:
        con.execute(f"attach '{a}' as a (read_only)")
        con.execute(f"attach '{b}' as b (read_only)")
        tables = [
            t
            for (t,) in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'a' and table_schema = 'marts' order by 1"
            ).fetchall()
        ]
        assert len(tables) >= 4
        for t in tables:
            counts = tuple(
                con.execute(
                    f"select count(*) from (select * from {x}.marts.{t} "
                    f"except all select * from {y}.marts.{t})"
                ).fetchone()[0]
                for x, y in (("a", "b"), ("b", "a"))
            )
            if counts != (0, 0):
                out[t] = counts
    return out


@pytest.fixture(scope="module")
def first_night(tmp_path_factory) -> Path:
    """A site whose warehouse holds BASE, built by one `cryoreg run` (copied by each test)."""
    site = tmp_path_factory.mktemp("first-night")
    write_extract(site / "extracts", *BASE)
    run_cryoreg("run", cwd=site, env=ENV)
    return site


def nightly_and_once(
    first_night: Path,
    tmp_path: Path,
    nights: list[Night],
    runs: list[list[int]],
    fail_first_at: int | None = None,
):
    """Continue the first night's site run by run; load every folder in one run elsewhere.

    With `fail_first_at`, that run is first made to fail late in ingest (after re-admission
    and the cascade: quarantine limit 0), then run again as usual."""
    assert nights[0] is BASE and runs[0] == [0]
    site = tmp_path / "nightly"
    shutil.copytree(first_night, site)
    for i, run in enumerate(runs):
        if i == 0:
            continue
        for k in run:
            write_extract(site / "extracts", *nights[k])
        if i == fail_first_at:
            published = warehouse(site).read_bytes()
            failed = run_cryoreg(
                "run", cwd=site, env={**ENV, "CRYOREG_QUARANTINE_LIMIT": "0"}, check=False
            )
            assert failed.returncode != 0 and "above the limit" in failed.stderr
            assert warehouse(site).read_bytes() == published
        run_cryoreg("run", cwd=site, env=ENV)
    once = tmp_path / "once"
    for n in nights:
        write_extract(once / "extracts", *n)
    run_cryoreg("run", cwd=once, env=ENV)
    return site, once


def assert_same_outcome(site: Path, once: Path) -> None:
    diffs = marts_differences(warehouse(site), warehouse(once))
    assert diffs == {}, diffs
    assert not metric_differences(outcome(site), outcome(once))


def test_mixed_sequence_reaches_the_marts_of_all_at_once(first_night, tmp_path):
    site, once = nightly_and_once(first_night, tmp_path, MIXED, MIXED_RUNS, fail_first_at=1)
    assert_same_outcome(site, once)
    with duckdb.connect(str(warehouse(site)), read_only=True) as con:
        tumors = dict(
            con.execute("select tumor_key, procedure_key from marts.fct_tumor").fetchall()
        )
        # the sequence did happen: T3 moved, T6 back on P1, T7 gone, T4 lost its TE read
        assert tumors == {"T1": "P1", "T2": "P2", "T3": "P4", "T4": "P4", "T5": "P5", "T6": "P1"}
        te = dict(con.execute("select tumor_key, te_evaluable from marts.fct_tumor").fetchall())
        assert te["T4"] is False and te["T6"] is True
        assert con.execute(
            "select ltp_event from marts.fct_tumor where tumor_key = 'T1'"
        ).fetchall() == [(True,)]


def test_date_corrections_reach_the_marts_of_all_at_once(first_night, tmp_path):
    """Procedure and birth dates corrected, the birth date corrected back the next night: the
    incremental models see the re-judged reads (I1 out, I12 in) and P3, T3 and I4 removed then
    brought back, as all at once does."""
    nights = [
        BASE,
        night(
            DATES[1],
            procedures="P1,M1,2010-03-15,CT,\nP4,M4,2010-02-01,CT,",
            patients="M3,F,2010-06-01,2012-06-01,,",
        ),
        night(DATES[2], patients="M3,F,1970-01-01,2012-06-01,,"),
    ]
    site, once = nightly_and_once(first_night, tmp_path, nights, [[0], [1], [2]])
    assert_same_outcome(site, once)
    with duckdb.connect(str(warehouse(site)), read_only=True) as con:
        te = dict(con.execute("select tumor_key, te_evaluable from marts.fct_tumor").fetchall())
        # T1 lost its technique-efficacy read I1; T4 got I12 (day 47 of P4's corrected date)
        assert te["T1"] is False and te["T4"] is True and "T3" in te
