"""The outcome definitions at every boundary, on a tiny hand-written registry run end to end.

Each tumor below exercises one rule of the definitions (technique-efficacy window 30-180 days,
indeterminate studies, same-day studies, residual tumor counted as progression, censoring, the
4 cm cut); the expected values are worked out by hand in the comments.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import duckdb
import pytest

from conftest import run_cryoreg, write_extract

pytestmark = pytest.mark.xdist_group("definitions")

DAY0 = date(2010, 1, 1)
YEAR = 365.25


def day(n: int) -> str:
    return (DAY0 + timedelta(days=n)).isoformat()


# tumor: (procedure, diameter_mm, technical_result, [(day, finding), ...])
TUMORS = {
    "T_DAY29": ("PA", 20, "complete", [(29, "no_tumor"), (200, "no_tumor")]),
    "T_DAY30": ("PA", 20, "complete", [(30, "no_tumor"), (400, "no_tumor")]),
    "T_DAY180": ("PB", 20, "complete", [(180, "residual_tumor")]),
    "T_DAY181": ("PB", 20, "complete", [(181, "no_tumor")]),
    "T_INDET": (
        "PC",
        20,
        "complete",
        [(40, "indeterminate"), (90, "no_tumor"), (500, "local_progression")],
    ),
    "T_TIE": ("PC", 20, "complete", [(60, "no_tumor"), (60, "residual_tumor")]),
    "T_RES3M": ("PD", 45, "incomplete", [(91, "residual_tumor"), (200, "residual_tumor")]),
    "T_CENSOR": (
        "PD",
        20,
        "complete",
        [(60, "no_tumor"), (400, "no_tumor"), (800, "indeterminate")],
    ),
    "T_39_9": ("PE", 39.9, "complete", [(60, "no_tumor")]),
    "T_40_0": ("PE", 40.0, "complete", [(60, "no_tumor")]),
    "T_NA": ("PA", 20, "not_assessed", []),
}
PROCEDURES = {"PA": "MRN1", "PB": "MRN2", "PC": "MRN1", "PD": "MRN2", "PE": "MRN3"}
PATIENTS = {  # birth dates around the first procedure's date DAY0 = 2010-01-01
    "MRN1": ("F", "1950-01-01"),  # 60th birthday on the procedure day -> 60
    "MRN2": ("M", "1960-01-02"),  # 50th birthday the day after -> 49
    "MRN3": ("F", "1970-07-01"),  # -> 39
}
AES = [  # (event, procedure, day, grade)
    ("E_DAY30", "PA", 30, 3),  # in the window, major
    ("E_DAY31", "PB", 31, 4),  # outside the window: PB has no AE
    ("E_DAY0", "PC", 0, 1),  # in the window, minor
    ("E_BEFORE", "PE", -1, 2),  # before the procedure: outside the window
]


def _csv(header: str, rows: list[tuple]) -> str:
    return header + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows)


@pytest.fixture(scope="module")
def boundary_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("boundaries")
    imaging = [
        (f"I_{tumor}_{i}", tumor, day(d), "CT", finding)
        for tumor, (_, _, _, studies) in TUMORS.items()
        for i, (d, finding) in enumerate(studies)
    ]
    write_extract(
        base / "extracts",
        "2014-12-31",
        {
            "patients.csv": _csv(
                "patient_mrn,patient_name,sex,birth_date",
                [(m, f"Name {m}", s, b) for m, (s, b) in PATIENTS.items()],
            ),
            "procedures.csv": _csv(
                "procedure_id,patient_mrn,procedure_date,guidance",
                [(p, m, day(0), "CT") for p, m in PROCEDURES.items()],
            ),
            "tumors.csv": _csv(
                "tumor_id,procedure_id,origin,histology,diameter_mm,technical_result",
                [(t, p, "metastasis", "colorectal", d, r) for t, (p, d, r, _) in TUMORS.items()],
            ),
            "imaging.csv": _csv("imaging_id,tumor_id,imaging_date,modality,finding", imaging),
            "adverse_events.csv": _csv(
                "event_id,procedure_id,onset_date,ctcae_grade",
                [(e, p, day(d), g) for e, p, d, g in AES],
            ),
        },
    )
    run_cryoreg(
        "run",
        "--extracts",
        "extracts",
        "--warehouse",
        "wh/cryoreg.duckdb",
        "--out",
        "out",
        cwd=base,
    )
    con = duckdb.connect(str(base / "wh" / "cryoreg.duckdb"), read_only=True)
    metrics = json.loads((base / "out" / "metrics.json").read_text())
    yield con, metrics
    con.close()


def _tumors(con) -> dict[str, dict]:
    rel = con.execute("select * from marts.fct_tumor")
    names = [d[0] for d in rel.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in rel.fetchall()}


@pytest.mark.parametrize(
    ("tumor", "evaluable", "success", "event", "time_days", "follow_up_days"),
    [
        ("T_DAY29", False, None, None, None, None),  # day 29 is before the window
        ("T_DAY30", True, True, False, 400, 400),  # day 30 opens the window
        ("T_DAY180", True, False, True, 180, 180),  # day 180 closes it; residual = LTP
        ("T_DAY181", False, None, None, None, None),  # day 181 is after the window
        ("T_INDET", True, True, True, 500, 500),  # indeterminate day 40 skipped -> day 90
        ("T_TIE", True, False, True, 60, 60),  # same-day no_tumor + residual -> failure
        ("T_RES3M", True, False, True, 91, 200),  # residual at 3 months counts as LTP
        ("T_CENSOR", True, True, False, 400, 800),  # censored at last determinate study
        ("T_39_9", True, True, False, 60, 60),
        ("T_40_0", True, True, False, 60, 60),
        ("T_NA", False, None, None, None, None),
    ],
)
def test_tumor_outcomes_at_the_boundaries(
    boundary_run, tumor, evaluable, success, event, time_days, follow_up_days
):
    row = _tumors(boundary_run[0])[tumor]
    assert row["te_evaluable"] is evaluable
    assert row["te_success"] is success
    assert row["ltp_event"] is event
    if time_days is None:
        assert row["ltp_time_years"] is None and row["follow_up_years"] is None
    else:
        assert row["ltp_time_years"] == pytest.approx(time_days / YEAR)
        assert row["follow_up_years"] == pytest.approx(follow_up_days / YEAR)


def test_size_groups_and_technical_success(boundary_run):
    tumors = _tumors(boundary_run[0])
    assert tumors["T_39_9"]["size_group"] == "lt4cm"
    assert tumors["T_39_9"]["diameter_cm"] == pytest.approx(3.99)
    assert tumors["T_40_0"]["size_group"] == "ge4cm"
    assert (tumors["T_NA"]["ts_evaluable"], tumors["T_NA"]["ts_success"]) == (False, None)
    assert (tumors["T_RES3M"]["ts_evaluable"], tumors["T_RES3M"]["ts_success"]) == (True, False)
    procedures = dict(
        boundary_run[0]
        .execute("select procedure_key, size_group from marts.fct_procedure")
        .fetchall()
    )
    # PE holds a 39.9 mm and a 40.0 mm tumor: the largest decides
    assert procedures == {"PA": "lt4cm", "PB": "lt4cm", "PC": "lt4cm", "PD": "ge4cm", "PE": "ge4cm"}


def test_adverse_event_window(boundary_run):
    con = boundary_run[0]
    window = dict(
        con.execute("select event_key, in_30_day_window from marts.fct_adverse_event").fetchall()
    )
    assert window == {"E_DAY30": True, "E_DAY31": False, "E_DAY0": True, "E_BEFORE": False}
    procs = {
        r[0]: r[1:]
        for r in con.execute(
            "select procedure_key, any_ae, major_ae, max_ctcae_grade from marts.fct_procedure"
        ).fetchall()
    }
    assert procs["PA"] == (True, True, 3)
    assert procs["PB"] == (False, False, None)
    assert procs["PC"] == (True, False, 1)
    assert procs["PE"] == (False, False, None)


def test_patient_age_and_counts(boundary_run):
    rows = (
        boundary_run[0]
        .execute(
            "select age_at_first_procedure, procedure_count, sex from marts.dim_patient "
            "order by age_at_first_procedure"
        )
        .fetchall()
    )
    assert rows == [(39, 1, "F"), (49, 2, "M"), (60, 2, "F")]


def test_metrics_counts_and_hand_computed_kaplan_meier(boundary_run):
    metrics = boundary_run[1]
    te = metrics["technique_efficacy"]["all"]
    assert (te["k"], te["n"]) == (5, 8)
    ltp = metrics["local_tumor_progression"]["all"]
    assert (ltp["k"], ltp["n"]) == (4, 8)
    assert (metrics["technical_success"]["all"]["k"], metrics["technical_success"]["all"]["n"]) == (
        9,
        10,
    )
    km = metrics["ltp_free_survival"]["all"]
    # events at 60 d (1 of 8 at risk; 2 censored there too), 91 d (1 of 5), 180 d (1 of 4)
    assert km["n"] == 8 and km["events"] == 4
    assert km["at_years"]["1"]["survival"] == pytest.approx(7 / 8 * 4 / 5 * 3 / 4)
    assert km["at_years"]["1"]["at_risk"] == 3  # T_DAY30, T_INDET, T_CENSOR reach a year
    assert km["at_years"]["2"]["at_risk"] == 0
    assert km["median_years"] == pytest.approx(500 / YEAR)  # S drops to 0 at 500 d
    assert metrics["adverse_events"]["any"]["k"] == 2
    assert metrics["adverse_events"]["major"]["k"] == 1
