"""Adversarial sequences of nights: after any of them, loading night by night must end where
loading every folder at once does (same live registry, same marts, same outcome metrics).

Two layers: `ingest()` on DuckDB files (fast; the live registry staging reads) and the real
`cryoreg run` (ingest, incremental dbt build, analyze) compared mart by mart. The sequences are
hand-written and small; each night changes several things at once. Sequences that break the
promise are kept as strict xfails naming the bug.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from cryoreg.ingest import ingest
from cryoreg.registry import FILES

from conftest import metric_differences, quarantined, run_cryoreg, write_extract

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


# --- ingest layer ------------------------------------------------------------------------------


def live_rows(con: duckdb.DuckDBPyConnection) -> dict[str, set[tuple]]:
    """Per entity, the current live version of each id (what staging reads), extract columns."""
    out = {}
    for spec in FILES:
        cols = ", ".join(spec.column_names)
        out[spec.entity] = set(
            con.execute(
                f"""select {cols} from raw.{spec.entity}
                qualify row_number() over (partition by {spec.id_column}
                    order by _extract_date desc, _source_line desc) = 1
                    and coalesce(lower(record_status), '') <> 'deleted'"""
            ).fetchall()
        )
    return out


def ingested(tmp_path: Path, nights: list[Night], runs: list[list[int]]):
    """Ingest `runs` (folder indexes appearing before each run) into one DuckDB file."""
    root = tmp_path / f"extracts-{len(runs)}"
    tmp_path.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(tmp_path / f"w-{len(runs)}.duckdb"))
    for i, run in enumerate(runs):
        for k in run:
            write_extract(root, *nights[k])
        ingest(con, root, f"run-{i}", 1.0)
    return con


def live_differences(tmp_path: Path, nights: list[Night], runs: list[list[int]] | None = None):
    """Live rows only night by night, only all at once, per entity (empty when equal)."""
    by_night = live_rows(ingested(tmp_path, nights, runs or [[i] for i in range(len(nights))]))
    once = live_rows(ingested(tmp_path, nights, [list(range(len(nights)))]))
    return {
        e: (sorted(by_night[e] - once[e]), sorted(once[e] - by_night[e]))
        for e in by_night
        if by_night[e] != once[e]
    }


def test_mixed_sequence_gives_the_live_registry_of_all_at_once(tmp_path):
    assert live_differences(tmp_path, MIXED, MIXED_RUNS) == {}


def test_mixed_sequence_one_folder_a_run(tmp_path):
    assert live_differences(tmp_path, MIXED) == {}


def test_an_orphan_whose_parent_arrives_and_goes_within_one_run(tmp_path):
    """An orphan of night 1; its parent arrives in folder 2 and is deleted in folder 3, both
    loaded by the second run: the orphan stays out."""
    nights = [
        BASE,
        night(DATES[1], imaging="I20,T20,2010-03-01,CT,no_tumor,"),
        night(DATES[2], tumors="T20,P1,primary,hcc,10,complete,"),
        night(DATES[3], tumors=deleted("T20", entity="tumors")),
    ]
    assert live_differences(tmp_path, nights, [[0, 1], [2, 3]]) == {}
    assert live_differences(tmp_path, nights) == {}


def test_the_same_id_twice_in_a_night_and_in_two_folders_of_a_run(tmp_path):
    """A repeated id in one file (the last copy wins, here a deletion that cascades) and an id
    in both folders of one run (the later folder wins)."""
    nights = [
        BASE,
        night(
            DATES[1],
            tumors="T1,P2,primary,hcc,20,complete,\n" + deleted("T1", entity="tumors"),
            imaging="I2,T2,2010-04-02,MRI,indeterminate,",
        ),
        night(DATES[2], imaging="I2,T2,2010-04-03,CT,residual_tumor,"),
    ]
    assert live_differences(tmp_path, nights, [[0], [1, 2]]) == {}
    assert live_differences(tmp_path, nights) == {}


def test_cascade_keeps_the_earlier_version_of_a_moved_child(tmp_path):
    diff = live_differences(tmp_path, FALLBACK)
    assert diff == {}, diff
    # the version brought back is this run's change of the id (incremental staging sees it)
    (tmp_path / "again").mkdir()
    con = ingested(tmp_path / "again", FALLBACK, [[0], [1], [2]])
    back = con.execute(
        "select tumor_id, _source_file, _run_id from raw.imaging where imaging_id = 'I1'"
    ).fetchall()
    assert back == [("T1", f"{DATES[0]}/imaging.csv", "run-2")]


def test_cascade_falls_back_past_several_versions_and_onto_a_deletion(tmp_path):
    """I1 moves T1 -> T2 -> T3 and A3 is deleted then registered again on P2; one night deletes
    T3 and P2: I1's two latest versions are orphans (T2 goes with P2), its first is live; A3's
    current version is its deletion."""
    nights = [
        BASE,
        night(
            DATES[1],
            imaging="I1,T2,2010-04-15,CT,no_tumor,",
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
    ]
    assert live_differences(tmp_path, nights) == {}
    assert live_differences(tmp_path, nights, [[0], [1, 2], [3]]) == {}


def test_an_orphan_comes_back_although_its_later_version_was_cascaded(tmp_path):
    """I20 -> T20 (missing) in night 1; night 2 moves I20 to T2; night 3 deletes T2 (the move
    is an orphan now); night 4 registers T20. All at once I20's night-1 version is live."""
    first = {**BASE[1], "imaging.csv": BASE[1]["imaging.csv"] + "I20,T20,2010-03-01,CT,no_tumor,\n"}
    nights = [
        (DATES[0], first),
        night(DATES[1], imaging="I20,T2,2010-04-01,CT,no_tumor,"),
        night(DATES[2], tumors=deleted("T2", entity="tumors")),
        night(DATES[3], tumors="T20,P1,primary,hcc,10,complete,"),
    ]
    diff = live_differences(tmp_path, nights)
    assert diff == {}, diff


def assert_every_night_as_at_once(
    tmp_path: Path, nights: list[Night], runs: list[list[int]], quarantine: bool = True
):
    """After each run, the live registry and (with `quarantine`) what quarantine holds back,
    with the reason code, are those of loading the folders seen so far at once."""
    for n in range(1, len(runs) + 1):
        seen = sorted(k for run in runs[:n] for k in run)
        sub = tmp_path / f"after-{n}"
        by_night = ingested(sub / "nightly", nights, runs[:n])
        once = ingested(sub / "once", [nights[k] for k in seen], [list(range(len(seen)))])
        assert live_rows(by_night) == live_rows(once), f"live rows after run {n}"
        if quarantine:
            assert quarantined(by_night) == quarantined(once), f"quarantine after run {n}"


def test_a_procedure_date_correction_rejudges_its_reads(tmp_path):
    diff = live_differences(tmp_path, DATES_CORRECTED)
    assert diff == {}, diff
    root, con = tmp_path / "ex", duckdb.connect(str(tmp_path / "w.duckdb"))
    results = []
    for i, n in enumerate(DATES_CORRECTED):
        write_extract(root, *n)
        results.append(ingest(con, root, f"run-{i}", 1.0))
    assert results[1].orphans == {"cascaded": 1, "readmitted": 1}
    # I1 leaves with the first pass's reason and message; I12's rejection is released
    moved = con.execute(
        "select run_id, file, line, reason_code, reason, released_run_id "
        "from quarantine.rejected_rows where record_id in ('I1', 'I12') order by all"
    ).fetchall()
    assert moved == [
        ("run-0", f"{DATES[0]}/imaging.csv", 10, "impossible_date",
         "imaging_date: imaging before its procedure '2010-03-20'", "run-1"),
        ("run-1", f"{DATES[0]}/imaging.csv", 2, "impossible_date",
         "imaging_date: imaging before its procedure '2010-03-01'", None),
    ]  # fmt: skip
    log = con.execute(
        "select action, entity, record_id, parent_entity, parent_id, parent_file "
        "from audit.orphan_log order by all"
    ).fetchall()
    assert log == [
        ("cascaded", "imaging", "I1", "tumors", "T1", f"{DATES[0]}/tumors.csv"),
        ("readmitted", "imaging", "I12", "tumors", "T4", f"{DATES[0]}/tumors.csv"),
    ]
    # I12 is back with its own lineage and this run's id (the incremental models see it)
    assert con.execute(
        "select _source_file, _source_line, _run_id from raw.imaging where imaging_id = 'I12'"
    ).fetchall() == [(f"{DATES[0]}/imaging.csv", 10, "run-1")]


@pytest.mark.parametrize("runs", [[[0], [1], [2], [3]], [[0], [1, 2], [3]], [[0], [1], [2, 3]]])
def test_date_corrections_back_and_forth(tmp_path, runs):
    assert_every_night_as_at_once(tmp_path, DATES_BACK_AND_FORTH, runs)


def test_a_birth_date_correction_rejudges_the_procedures(tmp_path):
    diff = live_differences(tmp_path, BIRTH_BACK_AND_FORTH[:2])
    assert diff == {}, diff


@pytest.mark.parametrize("runs", [[[0], [1], [2], [3]], [[0], [1, 2], [3]]])
def test_birth_date_corrections_back_and_forth(tmp_path, runs):
    """P3 leaves as a procedure before birth and T3 and I4 as orphans (tombstones), then all
    three come back, then leave again."""
    assert_every_night_as_at_once(tmp_path, BIRTH_BACK_AND_FORTH, runs)
    con = ingested(tmp_path / "nightly", BIRTH_BACK_AND_FORTH, runs)
    tombs = con.execute(
        """select procedure_id, _source_file from raw.procedures where record_status = 'deleted'
        union all select tumor_id, _source_file from raw.tumors where record_status = 'deleted'
        union all select imaging_id, _source_file from raw.imaging
        where record_status = 'deleted' order by 1"""
    ).fetchall()
    assert [t[0] for t in tombs] == ["I4", "P3", "T3"]
    assert all(t[1].startswith("cascade:") for t in tombs)


def test_a_tumor_moved_to_a_later_procedure_rejudges_its_reads(tmp_path):
    assert_every_night_as_at_once(tmp_path, TUMOR_MOVED, [[0], [1], [2]])


def test_a_date_correction_falls_back_to_and_brings_back_versions(tmp_path):
    runs = [[i] for i in range(len(VERSIONS_AND_DATES))]
    assert_every_night_as_at_once(tmp_path, VERSIONS_AND_DATES, runs)
    con = ingested(tmp_path / "again", VERSIONS_AND_DATES, runs)
    assert con.execute(
        "select imaging_date, _run_id from raw.imaging where imaging_id = 'I30'"
    ).fetchall() == [("2010-03-01", "run-4")]


def test_a_date_rejection_comes_back_past_a_cascade_tombstone(tmp_path):
    """I12 (quarantined, before P4) moves to T2 the next night; T2 is deleted (the move is an
    orphan, I12 gets a tombstone); P4's date is corrected: I12's first version comes back.

    Quarantine differs: all at once never judges I12's first version while a later one is
    current, night by night it was judged (and rejected) the night it came."""
    nights = [
        BASE,
        night(DATES[1], imaging="I12,T2,2010-03-20,CT,no_tumor,"),
        night(DATES[2], tumors=deleted("T2", entity="tumors")),
        night(DATES[3], procedures="P4,M4,2010-02-01,CT,"),
    ]
    assert_every_night_as_at_once(tmp_path, nights, [[0], [1], [2], [3]], quarantine=False)
    assert_every_night_as_at_once(tmp_path / "two", nights, [[0], [1], [2, 3]], quarantine=False)


def test_a_parent_change_that_keeps_the_dates_leaves_the_children_alone(tmp_path):
    """P1's guidance and M1's last contact corrected: their children are judged again and
    stay, untouched (no new run id for the incremental models, no quarantine or audit row)."""
    nights = [
        BASE,
        night(
            DATES[1], procedures="P1,M1,2010-01-01,MRI,", patients="M1,F,1950-01-01,,2013-01-01,"
        ),
    ]
    con = ingested(tmp_path, nights, [[0], [1]])
    assert live_differences(tmp_path / "diff", nights) == {}
    assert con.execute(
        "select count(*) from raw.imaging where _run_id = 'run-1' union all "
        "select count(*) from raw.procedures where _run_id = 'run-1' and procedure_id <> 'P1' "
        "union all select count(*) from quarantine.rejected_rows where run_id = 'run-1' "
        "union all select count(*) from audit.orphan_log"
    ).fetchall() == [(0,), (0,), (0,), (0,)]


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
        # every nightly build was incremental (a dbt project edited mid-suite would not be)
        builds = con.execute("select full_refresh from audit.dbt_builds").fetchall()
        assert builds == [(None,)] * len(MIXED_RUNS)
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
        builds = con.execute("select full_refresh from audit.dbt_builds").fetchall()
        assert builds == [(None,)] * 3
        te = dict(con.execute("select tumor_key, te_evaluable from marts.fct_tumor").fetchall())
        # T1 lost its technique-efficacy read I1; T4 got I12 (day 47 of P4's corrected date)
        assert te["T1"] is False and te["T4"] is True and "T3" in te
