"""The analysis' statistics against independent computations written out in this file."""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from fractions import Fraction

import duckdb
import pyarrow as pa
import pytest
from scipy.stats import beta, binom, chi2, norm

from cryoreg.analysis import fast_lifelines
from cryoreg.analysis import metrics as analyze

Z = norm.ppf(0.975)


# --- a small real warehouse with the fixed marts ---------------------------------------------


def tumor_rows() -> list[dict]:
    """40 tumors in 20 procedures: 10 >= 4 cm, 39 TS-evaluable, 36 TE-evaluable, tied times."""
    rows = []
    for i in range(1, 41):
        ge4, ts_eval, te_eval = i <= 10, i != 40, i <= 36
        time = round(0.3 + (i * 37 % 23) * 0.3, 2) if te_eval else None
        rows.append(
            {
                "tumor_key": f"t{i}",
                "procedure_key": f"p{(i + 1) // 2}",
                "patient_key": f"pt{(i + 3) // 4}",
                "procedure_date": date(2005, 1, 1) + timedelta(days=30 * ((i + 1) // 2)),
                "diameter_cm": 4.0 + i * 0.3 if ge4 else 0.5 + (i % 12) * 0.25,
                "size_group": "ge4cm" if ge4 else "lt4cm",
                "origin": "primary" if i % 4 == 0 else "metastasis",
                "histology": "hepatocellular" if i % 4 == 0 else "colorectal",
                "ts_evaluable": ts_eval,
                "ts_success": (i % 13 != 0) if ts_eval else None,
                "te_evaluable": te_eval,
                "te_success": ((i % 2 == 0) if ge4 else (i % 9 != 0)) if te_eval else None,
                "ltp_event": ((i % 3 != 0) if ge4 else (i % 5 == 0)) if te_eval else None,
                "ltp_time_years": time,
                "follow_up_years": time + 0.5 if te_eval else None,
            }
        )
    return with_competing_outcome(rows)


def patient_dies(k: int) -> bool:
    return k % 3 == 0


def with_competing_outcome(tumors: list[dict]) -> list[dict]:
    """LTP first, else the patient's death (1 year after the tumor's last imaging, or on the
    same day as another tumor's progression for pt3: a tie), else censoring."""
    for t in tumors:
        k = int(t["patient_key"][2:])
        died, te_eval = patient_dies(k), t["te_evaluable"]
        death = None
        if te_eval and died:
            death = 1.8 if k == 3 else t["ltp_time_years"] + 1.0
        t["patient_died"] = died if te_eval else None
        t["death_time_years"] = death
        if not te_eval:
            event, when = None, None
        elif t["ltp_event"]:
            event, when = "ltp", t["ltp_time_years"]
        elif died:
            event, when = "death", max(death, t["ltp_time_years"])
        else:
            event, when = "censored", t["ltp_time_years"]
        t["ltp_competing_event"], t["ltp_competing_time_years"] = event, when
    return tumors


def procedure_rows(tumors: list[dict]) -> list[dict]:
    guidance = ["CT", "MRI", "PET/CT", "CT", "MRI"]
    rows = []
    for k in range(1, 21):
        mine = [t for t in tumors if t["procedure_key"] == f"p{k}"]
        any_ae, major_ae = k % 3 == 0 or k % 5 == 0, k % 5 == 0
        rows.append(
            {
                "procedure_key": f"p{k}",
                "patient_key": mine[0]["patient_key"],
                "procedure_date": mine[0]["procedure_date"],
                "guidance": guidance[k % 5],
                "size_group": "ge4cm" if any(t["size_group"] == "ge4cm" for t in mine) else "lt4cm",
                "tumor_count": len(mine),
                "any_ae": any_ae,
                "major_ae": major_ae,
                "max_ctcae_grade": 3 if major_ae else (1 if any_ae else None),
            }
        )
    for t in tumors:
        t["guidance"] = next(
            p["guidance"] for p in rows if p["procedure_key"] == t["procedure_key"]
        )
    return rows


def patient_rows() -> list[dict]:
    return [
        {
            "patient_key": f"pt{k}",
            "sex": "F" if k % 2 else "M",
            "age_at_first_procedure": 40 + 3 * k,
            "procedure_count": 2,
            "died": patient_dies(k),
            "overall_survival_years": round(0.5 + (k * 7 % 11) * 0.4, 2),
        }
        for k in range(1, 11)
    ]


ATTRITION = [
    (1, "tumors treated", 40, 0, None),
    (2, "technical success evaluable", 39, 1, "technical result not recorded"),
    (3, "technique-efficacy evaluable", 36, 3, "no determinate imaging 30-180 days"),
]


def build_warehouse(path, tumors=None) -> dict:
    """Write marts.* into a real DuckDB file; returns the rows it wrote."""
    tumors = tumors or tumor_rows()
    procedures = procedure_rows(tumors)
    patients = patient_rows()
    events = [
        {"event_key": f"e{k}", "procedure_key": f"p{k}", "onset_day": k, "ctcae_grade": 3}
        for k in (5, 10, 15, 20)
    ]
    with duckdb.connect(str(path)) as con:
        con.execute("create schema marts")
        for name, rows in [
            ("fct_tumor", tumors),
            ("fct_procedure", procedures),
            ("dim_patient", patients),
            ("fct_adverse_event", events),
        ]:
            con.register("rows_view", pa.Table.from_pylist(rows))
            con.execute(f"create table marts.{name} as select * from rows_view")
            con.unregister("rows_view")
        con.execute("alter table marts.fct_adverse_event add column in_30_day_window bool")
        con.execute("update marts.fct_adverse_event set in_30_day_window = onset_day <= 30")
        con.execute(
            "create table marts.fct_tumor_attrition (step_order int, step varchar,"
            " tumors_remaining int, tumors_excluded int, exclusion_reason varchar)"
        )
        con.executemany("insert into marts.fct_tumor_attrition values (?, ?, ?, ?, ?)", ATTRITION)
    return {"tumors": tumors, "procedures": procedures, "patients": patients}


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    """The rows of the small warehouse and the typed results computed from it."""
    path = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    rows = build_warehouse(path)
    with duckdb.connect(str(path), read_only=True) as con:
        return rows, analyze.compute(con)


@pytest.fixture(scope="module")
def warehouse(analysis):
    """The rows and the metrics.json form of their results."""
    rows, results = analysis
    return rows, results.to_json()


# --- independent reference computations ------------------------------------------------------


def hand_fisher(a: int, b: int, c: int, d: int) -> float:
    """Two-sided Fisher exact: sum of hypergeometric tables no more likely than the observed."""
    row1, col1, total = a + b, a + c, a + b + c + d

    def prob(x: int) -> Fraction:
        return Fraction(
            math.comb(col1, x) * math.comb(total - col1, row1 - x), math.comb(total, row1)
        )

    observed = prob(a)
    support = range(max(0, row1 + col1 - total), min(row1, col1) + 1)
    return float(sum(p for p in map(prob, support) if p <= observed))


def hand_chi2(a: int, b: int, c: int, d: int) -> tuple[float, float, float]:
    table = [[a, b], [c, d]]
    rows, cols, total = [a + b, c + d], [a + c, b + d], a + b + c + d
    expected = [[rows[i] * cols[j] / total for j in range(2)] for i in range(2)]
    stat = sum(
        (table[i][j] - expected[i][j]) ** 2 / expected[i][j] for i in range(2) for j in (0, 1)
    )
    return stat, chi2.sf(stat, 1), min(min(r) for r in expected)


def hand_km(times, events, t):
    """Product-limit S(t) and Greenwood's sum d / (n (n - d)) over event times <= t."""
    s, greenwood = 1.0, 0.0
    for u in sorted({x for x, e in zip(times, events, strict=True) if e and x <= t}):
        n = sum(x >= u for x in times)
        d = sum(1 for x, e in zip(times, events, strict=True) if e and x == u)
        s *= 1 - d / n
        greenwood += d / (n * (n - d)) if n > d else math.inf
    return s, greenwood


def loglog_ci(s: float, greenwood: float) -> tuple[float, float]:
    """95% CI of S on the log(-log S) scale: S ** exp(+-z * sqrt(V) / |log S|)."""
    if s == 1.0:
        return 1.0, 1.0
    se = math.sqrt(greenwood) / abs(math.log(s))
    return s ** math.exp(Z * se), s ** math.exp(-Z * se)


def hand_logrank(times, events, groups) -> float:
    observed_minus_expected, variance = 0.0, 0.0
    for u in sorted({x for x, e in zip(times, events, strict=True) if e}):
        at_risk = [
            (g, e and x == u) for x, e, g in zip(times, events, groups, strict=True) if x >= u
        ]
        n, n_a = len(at_risk), sum(g == "lt4cm" for g, _ in at_risk)
        d, d_a = sum(died for _, died in at_risk), sum(died for g, died in at_risk if g == "lt4cm")
        observed_minus_expected += d_a - d * n_a / n
        if n > 1:
            variance += d * (n_a / n) * (1 - n_a / n) * (n - d) / (n - 1)
    return chi2.sf(observed_minus_expected**2 / variance, 1)


# --- proportions and 2x2 tests ---------------------------------------------------------------


def hand_clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """The exact interval as beta quantiles (Clopper & Pearson 1934)."""
    low = 0.0 if k == 0 else beta.ppf(0.025, k, n - k + 1)
    high = 1.0 if k == n else beta.ppf(0.975, k + 1, n - k)
    return low, high


@pytest.mark.parametrize(
    "k,n", [(0, 1), (0, 12), (1, 12), (7, 12), (12, 12), (279, 295), (8, 41), (17, 195)]
)
def test_exact_interval_is_clopper_pearson(k, n):
    p = analyze.proportion(k, n)
    assert (p.k, p.n) == (k, n)
    assert p.pct == pytest.approx(100 * k / n)
    low, high = p.ci95
    assert low == pytest.approx(hand_clopper_pearson(k, n)[0], abs=1e-12)
    assert high == pytest.approx(hand_clopper_pearson(k, n)[1], abs=1e-12)
    # the defining tail probabilities: each bound leaves 2.5% on its side
    if k > 0:
        assert binom.sf(k - 1, n, low) == pytest.approx(0.025, rel=1e-9)
    if k < n:
        assert binom.cdf(k, n, high) == pytest.approx(0.025, rel=1e-9)
    assert (k > 0 or low == 0.0) and (k < n or high == 1.0)


def test_empty_proportion_is_null_not_an_error():
    empty = {"k": 0, "n": 0, "pct": None, "ci95": [None, None]}
    assert analyze.proportion(0, 0).to_json() == empty
    cmp = analyze.compare(analyze.proportion(3, 10), analyze.proportion(0, 0))
    assert cmp.p_chi2 is None and cmp.p_fisher is None


@pytest.mark.parametrize(
    "a,n1,c,n2",
    [(17, 195, 8, 41), (213, 228, 18, 30), (41, 228, 19, 30), (3, 9, 6, 8), (0, 10, 4, 9)],
)
def test_chi2_and_fisher_against_hand_formulas(a, n1, c, n2):
    cmp = analyze.compare(analyze.proportion(a, n1), analyze.proportion(c, n2)).to_json()
    stat, p, min_expected = hand_chi2(a, n1 - a, c, n2 - c)
    assert cmp["chi2"] == pytest.approx(stat, rel=1e-12)
    assert cmp["p_chi2"] == pytest.approx(p, rel=1e-9)
    assert cmp["p_fisher"] == pytest.approx(hand_fisher(a, n1 - a, c, n2 - c), rel=1e-9)
    assert cmp["min_expected_cell"] == pytest.approx(min_expected)
    assert cmp["expected_cell_below_5"] is (min_expected < 5)


def test_paper_major_ae_comparison():
    """17/195 vs 8/41: the paper's p = 0.04 is the uncorrected chi-square; Fisher gives 0.052."""
    cmp = analyze.compare(analyze.proportion(17, 195), analyze.proportion(8, 41))
    assert round(cmp.p_chi2, 2) == 0.04
    assert round(cmp.p_fisher, 3) == 0.052
    assert cmp.expected_cell_below_5 is True  # 25 * 41 / 236 = 4.34


def test_chi2_undefined_when_a_margin_is_zero():
    cmp = analyze.compare(analyze.proportion(10, 10), analyze.proportion(5, 5))
    assert cmp.p_chi2 is None and cmp.p_fisher == pytest.approx(1.0)


# --- Kaplan-Meier and log-rank ---------------------------------------------------------------

# 8 tumors: two events tied at 1 y, event and censoring tied at 2 y, censorings tied at 4 y.
KM_TIMES = [1.0, 1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 5.0]
KM_EVENTS = [True, True, False, True, True, False, False, False]


def test_kaplan_meier_small_example_by_hand():
    import numpy as np

    km = analyze.kaplan_meier(np.array(KM_TIMES), np.array(KM_EVENTS)).to_json()
    assert km["n"] == 8 and km["events"] == 4
    # S(1) = 6/8; S(2) = 6/8 * 5/6 (censored at 2 still at risk); S(3) = 5/8 * 3/4.
    expected = {"1": (0.75, 8), "2": (0.625, 6), "3": (0.46875, 4), "5": (0.46875, 1)}
    greenwood = {"1": 2 / (8 * 6), "2": 2 / 48 + 1 / (6 * 5), "3": 2 / 48 + 1 / 30 + 1 / 12}
    greenwood["5"] = greenwood["3"]
    for t, (s, at_risk) in expected.items():
        got = km["at_years"][t]
        assert got["survival"] == pytest.approx(s)
        assert got["at_risk"] == at_risk
        assert hand_km(KM_TIMES, KM_EVENTS, float(t)) == pytest.approx((s, greenwood[t]))
        assert got["ci95"] == pytest.approx(loglog_ci(s, greenwood[t]), rel=1e-9)
    assert km["median_years"] == pytest.approx(3.0)  # first time S <= 0.5


def test_kaplan_meier_ci_is_the_step_value_between_event_times():
    import numpy as np

    times = np.array([0.5, 1.5, 2.5, 2.5, 6.0, 7.0])
    events = np.array([False, True, False, True, False, False])
    km = analyze.kaplan_meier(times, events).to_json()
    s1, v1 = hand_km(times, events, 1)
    s3, v3 = hand_km(times, events, 3)
    assert km["at_years"]["1"]["survival"] == 1.0 and km["at_years"]["1"]["ci95"] == [1.0, 1.0]
    assert km["at_years"]["3"]["ci95"] == pytest.approx(loglog_ci(s3, v3), rel=1e-9)
    assert [km["at_years"][t]["at_risk"] for t in "1235"] == [5, 4, 2, 2]
    assert km["median_years"] is None  # S never reaches 0.5: not reached, not infinity


def test_kaplan_meier_empty_group():
    import numpy as np

    km = analyze.kaplan_meier(np.array([]), np.array([], dtype=bool)).to_json()
    assert km["n"] == 0 and km["median_years"] is None
    assert km["at_years"]["1"] == {"survival": None, "ci95": [None, None], "at_risk": 0}


def test_logrank_against_hand_formula():
    import numpy as np

    times = np.array(KM_TIMES + [0.5, 1.0, 1.5, 2.0, 2.5, 6.0])
    events = np.array(KM_EVENTS + [True, True, True, False, True, False])
    groups = np.array(["lt4cm"] * 8 + ["ge4cm"] * 6)
    p = analyze.logrank_p(times, events, groups)
    assert p == pytest.approx(hand_logrank(times, events, groups), rel=1e-9)
    assert analyze.logrank_p(times, events, np.array(["lt4cm"] * 14)) is None


# --- compute on a real DuckDB ------------------------------------------------------------------


def test_metrics_contract_keys(warehouse):
    _, m = warehouse
    assert m["schema_version"] == 1
    assert set(m) >= {
        "cohort",
        "technical_success",
        "technique_efficacy",
        "local_tumor_progression",
        "adverse_events",
        "ltp_free_survival",
        "cox",
    }
    for block, groups in [
        ("technique_efficacy", ("all", "lt4cm", "ge4cm")),
        ("local_tumor_progression", ("all", "lt4cm", "ge4cm")),
        ("adverse_events", ("any", "major", "major_lt4cm", "major_ge4cm")),
    ]:
        assert {"p_chi2", "p_fisher", "min_expected_cell", "expected_cell_below_5"} <= set(m[block])
        for g in groups:
            assert set(m[block][g]) == {"k", "n", "pct", "ci95"}
    for g in ("all", "lt4cm", "ge4cm"):
        km = m["ltp_free_survival"][g]
        assert set(km) == {"n", "events", "median_years", "at_years"}
        assert set(km["at_years"]) == {"1", "2", "3", "5"}
    json.dumps(m, allow_nan=False)  # plain JSON types only


def test_metrics_counts_match_the_rows(warehouse):
    rows, m = warehouse
    tumors, procedures, patients = rows["tumors"], rows["procedures"], rows["patients"]
    te = [t for t in tumors if t["te_evaluable"]]

    def kn(block, group):
        return m[block][group]["k"], m[block][group]["n"]

    c = m["cohort"]
    assert (c["patients"], c["women"]) == (10, sum(p["sex"] == "F" for p in patients))
    assert c["age_years"]["min"] == 43 and c["age_years"]["max"] == 70
    assert c["procedures"] == 20 and sum(c["guidance"].values()) == 20
    assert (c["tumors"], c["metastases"], c["primary"]) == (40, 30, 10)
    assert c["follow_up_years"]["max"] == pytest.approx(max(t["follow_up_years"] for t in te))
    assert kn("technical_success", "all") == (
        sum(bool(t["ts_success"]) for t in tumors),
        sum(t["ts_evaluable"] for t in tumors),
    )
    for g in ("lt4cm", "ge4cm"):
        mine = [t for t in te if t["size_group"] == g]
        assert kn("technique_efficacy", g) == (sum(t["te_success"] for t in mine), len(mine))
        assert kn("local_tumor_progression", g) == (sum(t["ltp_event"] for t in mine), len(mine))
        procs = [p for p in procedures if p["size_group"] == g]
        assert kn("adverse_events", f"major_{g}") == (sum(p["major_ae"] for p in procs), len(procs))
    assert kn("technique_efficacy", "all") == (28, 36)
    assert kn("local_tumor_progression", "all") == (12, 36)
    assert kn("adverse_events", "any") == (9, 20)
    te_block = m["technique_efficacy"]
    a, b = te_block["lt4cm"], te_block["ge4cm"]
    assert te_block["p_fisher"] == pytest.approx(
        hand_fisher(a["k"], a["n"] - a["k"], b["k"], b["n"] - b["k"])
    )


def test_metrics_survival_matches_hand_km(warehouse):
    rows, m = warehouse
    te = [t for t in rows["tumors"] if t["te_evaluable"]]
    for group in ("all", "lt4cm", "ge4cm"):
        mine = [t for t in te if group == "all" or t["size_group"] == group]
        times = [t["ltp_time_years"] for t in mine]
        events = [t["ltp_event"] for t in mine]
        km = m["ltp_free_survival"][group]
        assert (km["n"], km["events"]) == (len(mine), sum(events))
        for t, got in km["at_years"].items():
            s, v = hand_km(times, events, float(t))
            assert got["survival"] == pytest.approx(s)
            assert got["at_risk"] == sum(x >= float(t) for x in times)
            if s > 0:
                assert got["ci95"] == pytest.approx(loglog_ci(s, v), rel=1e-9)
    times = [t["ltp_time_years"] for t in te]
    events = [t["ltp_event"] for t in te]
    groups = [t["size_group"] for t in te]
    assert m["ltp_free_survival"]["logrank_p"] == pytest.approx(
        hand_logrank(times, events, groups), rel=1e-9
    )


def test_cox_model_reports_hazard_ratios(warehouse):
    _, m = warehouse
    cox = m["cox"]
    assert cox["fitted"] is True and cox["n"] == 36 and cox["events"] == 12
    assert set(cox["covariates"]) == set(analyze.COX_COVARIATES)
    for cov in cox["covariates"].values():
        low, high = cov["ci95"]
        assert 0 < low <= cov["hr"] <= high and 0 <= cov["p"] <= 1


def test_edge_cases_give_null_stats_not_errors(tmp_path):
    """Every tumor < 4 cm and no progression: empty group, no events, Cox not estimable."""
    tumors = tumor_rows()
    for t in tumors:
        t["size_group"] = "lt4cm"
        t["ltp_event"] = False if t["te_evaluable"] else None
    with_competing_outcome(tumors)
    build_warehouse(tmp_path / "edge.duckdb", tumors)
    with duckdb.connect(str(tmp_path / "edge.duckdb"), read_only=True) as con:
        m = analyze.compute(con).to_json()
    assert m["technique_efficacy"]["ge4cm"]["pct"] is None
    assert m["technique_efficacy"]["p_chi2"] is None
    assert m["technique_efficacy"]["p_fisher"] is None
    assert m["ltp_free_survival"]["ge4cm"]["n"] == 0
    assert m["ltp_free_survival"]["logrank_p"] is None
    assert m["ltp_free_survival"]["all"]["median_years"] is None
    assert m["cox"]["fitted"] is False and m["cox"]["error"] == "no events"
    json.dumps(m, allow_nan=False)


def test_cox_non_convergence_is_reported_not_raised(tmp_path):
    """Progression exactly in the metastases: complete separation (monotone likelihood)."""
    tumors = tumor_rows()
    for t in tumors:
        if t["te_evaluable"]:
            t["origin"] = "metastasis" if t["ltp_event"] else "primary"
    build_warehouse(tmp_path / "sep.duckdb", tumors)
    with duckdb.connect(str(tmp_path / "sep.duckdb"), read_only=True) as con:
        cox = analyze.cox_model(analyze.cox_inputs(con)).to_json()
    assert cox["converged"] is False
    assert any("separation" in w for w in cox["warnings"]) or cox.get("error")
    assert not any("http" in w for w in cox["warnings"])
    json.dumps(cox, allow_nan=False)


def test_write_metrics_round_trip_with_run_block(tmp_path, analysis):
    _, results = analysis
    m = results.to_json()
    run = {
        "run_id": "r1",
        "code_version": "0.1.0+abc",
        "started_at": "2024-01-02T02:00:00+00:00",
        "finished_at": "2024-01-02T02:01:00+00:00",
        "extracts": [{"name": "2024-01-01", "content_hash": "ab12", "loaded_this_run": True}],
        "files": [
            {
                "extract": "2024-01-01",
                "file": "patients.csv",
                "read": 3,
                "loaded": 2,
                "quarantined": 1,
            }
        ],
    }
    path = analyze.write_metrics(
        analyze.metrics_json(results, run), tmp_path / "out" / "metrics.json"
    )
    text = path.read_text()
    assert json.loads(text) == json.loads(json.dumps({**m, "run": run}))
    assert text.startswith('{\n  "schema_version": 1')
    assert not list(path.parent.glob(".*tmp"))


# --- beyond the paper: overall survival, competing risks, clustered Cox -----------------------


def hand_cumulative_incidence(times, codes, t, cause):
    """Aalen-Johansen: sum over times u <= t of S(u-) * d_cause(u) / n(u), S the all-cause KM
    (tied events of both causes at u leave the risk set together)."""
    s, cif = 1.0, 0.0
    for u in sorted({x for x, c in zip(times, codes, strict=True) if c and x <= t}):
        n = sum(x >= u for x in times)
        d_cause = sum(1 for x, c in zip(times, codes, strict=True) if x == u and c == cause)
        d_any = sum(1 for x, c in zip(times, codes, strict=True) if x == u and c)
        cif += s * d_cause / n
        s *= 1 - d_any / n
    return cif


def test_metrics_add_blocks_beyond_the_paper(warehouse):
    _, m = warehouse
    assert {"overall_survival", "ltp_cumulative_incidence", "cox_clustered"} <= set(m)
    assert m["overall_survival"]["source"] == "marts.dim_patient"
    assert m["ltp_cumulative_incidence"]["source"] == "marts.fct_tumor"
    for g in ("all", "lt4cm", "ge4cm"):
        block = m["ltp_cumulative_incidence"][g]
        assert set(block["at_years"]) == {"1", "2", "3", "5"}
        assert set(block["at_years"]["1"]) == {"cif", "ci95", "death_cif", "one_minus_km"}


def test_overall_survival_matches_hand_km(warehouse):
    rows, m = warehouse
    patients = rows["patients"]
    times = [p["overall_survival_years"] for p in patients]
    events = [p["died"] for p in patients]
    block = m["overall_survival"]
    assert (block["n"], block["events"]) == (10, sum(events))
    for year in ("1", "2", "3"):
        s, _ = hand_km(times, events, float(year))
        assert block["at_years"][year]["survival"] == pytest.approx(s, abs=1e-12)


def competing_inputs(rows, group: str):
    """The TE-evaluable tumors of a size group, their competing-risk times and event codes
    (0 censored, 1 LTP, 2 death), as the hand computations take them."""
    code = {"censored": 0, "ltp": 1, "death": 2}
    mine = [
        t
        for t in rows["tumors"]
        if t["te_evaluable"] and (group == "all" or t["size_group"] == group)
    ]
    times = [t["ltp_competing_time_years"] for t in mine]
    return mine, times, [code[t["ltp_competing_event"]] for t in mine]


def test_cumulative_incidence_matches_hand_aalen_johansen(warehouse):
    rows, m = warehouse
    for group in ("all", "lt4cm", "ge4cm"):
        mine, times, codes = competing_inputs(rows, group)
        block = m["ltp_cumulative_incidence"][group]
        assert block["n"] == len(mine)
        assert block["ltp_events"] == codes.count(1) and block["deaths"] == codes.count(2)
        for year in ("1", "2", "3", "5"):
            at = block["at_years"][year]
            t = float(year)
            assert at["cif"] == pytest.approx(hand_cumulative_incidence(times, codes, t, 1))
            assert at["death_cif"] == pytest.approx(hand_cumulative_incidence(times, codes, t, 2))
            s, _ = hand_km(times, [c == 1 for c in codes], t)
            assert at["one_minus_km"] == pytest.approx(1 - s, abs=1e-12)
            assert at["cif"] <= at["one_minus_km"] + 1e-12  # deaths only lower the incidence
            if at["cif"] > 0:
                low, high = at["ci95"]
                assert 0 <= low <= at["cif"] <= high <= 1


def test_same_day_progression_and_death_are_a_tie_not_jittered(warehouse):
    """pt3's death at 1.8 y ties another tumor's progression: no random jitter, exact AJ."""
    rows, m = warehouse
    te = [t for t in rows["tumors"] if t["te_evaluable"]]
    ltp_times = {t["ltp_competing_time_years"] for t in te if t["ltp_competing_event"] == "ltp"}
    death_times = {t["ltp_competing_time_years"] for t in te if t["ltp_competing_event"] == "death"}
    assert ltp_times & death_times  # the fixture has a cross-cause tie
    with duckdb.connect() as con:  # same numbers twice: nothing random
        data = _competing(con, te)
        again = analyze.competing_risk(data["time"], data["code"], weight=data["weight"]).to_json()
    assert again == m["ltp_cumulative_incidence"]["all"]


def _competing(con, tumors):
    con.register("t", pa.Table.from_pylist(tumors))
    con.execute("create schema if not exists marts")
    con.execute("create or replace table marts.fct_tumor as select * from t")
    return analyze.competing_inputs(con)


def test_clustered_cox_keeps_the_hazard_ratios_and_changes_the_errors(warehouse):
    rows, m = warehouse
    naive, robust = m["cox"], m["cox_clustered"]
    assert robust["fitted"] and robust["clusters"] == len(
        {t["patient_key"] for t in rows["tumors"] if t["te_evaluable"]}
    )
    assert set(robust["covariates"]) == set(naive["covariates"])
    differ = 0
    for name, cov in robust["covariates"].items():
        assert cov["hr"] == pytest.approx(naive["covariates"][name]["hr"], rel=1e-6)
        differ += cov["se_log_hr"] != pytest.approx(naive["covariates"][name]["se_log_hr"])
    assert differ >= 1


def test_blocks_beyond_the_paper_tolerate_an_older_warehouse(tmp_path):
    build_warehouse(tmp_path / "old.duckdb")
    with duckdb.connect(str(tmp_path / "old.duckdb")) as con:
        con.execute("alter table marts.fct_tumor drop column ltp_competing_event")
        con.execute("alter table marts.dim_patient drop column died")
    with duckdb.connect(str(tmp_path / "old.duckdb"), read_only=True) as con:
        m = analyze.compute(con).to_json()
    assert m["overall_survival"]["error"].startswith("not available")
    assert m["ltp_cumulative_incidence"]["error"].startswith("not available")
    json.dumps(m, allow_nan=False)


def test_clustered_cox_sample_is_systematic_and_keeps_whole_patients():
    import pyarrow as pa

    from cryoreg.analysis.metrics import _patient_sample

    keys = [f"p{i:02d}" for i in range(10) for _ in range(3)]
    table = pa.table({"patient_key": keys, "duration": range(30)})
    kept, sample = _patient_sample(table, max_tumors=10)
    assert sample == {"every_kth_patient": 3, "tumors_in_cohort": 30}
    assert sorted(set(kept.column("patient_key").to_pylist())) == ["p00", "p03", "p06", "p09"]
    assert kept.num_rows == 12  # every tumor of a kept patient
    assert kept.column("duration").to_pylist() == sorted(kept.column("duration").to_pylist())
    shuffled = table.take(pa.array(list(reversed(range(30)))))
    again, _ = _patient_sample(shuffled, max_tumors=10)
    assert sorted(set(again.column("patient_key").to_pylist())) == ["p00", "p03", "p06", "p09"]


def _random_cox_frame(n: int = 400, seed: int = 7):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "duration": np.round(rng.exponential(2.0, n), 1) + 0.1,  # many ties, as with days
            "event": rng.integers(0, 2, n),
            "diameter_cm": rng.uniform(0.5, 8.0, n),
            "origin_metastasis": rng.integers(0, 2, n),
            "patient_key": [f"p{i // 3:04d}" for i in range(n)],
        }
    )
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_clustered_cox_equals_lifelines_own_sandwich():
    """The vectorised score residuals give lifelines' clustered errors (its O(n^2) loop)."""
    from lifelines import CoxPHFitter

    frame = _random_cox_frame()
    args = {"duration_col": "duration", "event_col": "event", "batch_mode": True}
    ours = fast_lifelines.cox_fitter(0.05).fit(frame, cluster_col="patient_key", **args).summary
    theirs = CoxPHFitter(alpha=0.05).fit(frame, cluster_col="patient_key", **args).summary
    assert ours.index.tolist() == theirs.index.tolist()
    for column in ("coef", "se(coef)", "p", "exp(coef) lower 95%", "exp(coef) upper 95%"):
        for a, b in zip(ours[column], theirs[column], strict=True):
            assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300), column


def test_cumulative_incidence_interval_equals_lifelines_own():
    """The vectorised Aalen-Johansen variance and CI are lifelines' (its iterrows loop)."""
    import warnings

    import numpy as np
    from lifelines import AalenJohansenFitter

    rng = np.random.default_rng(3)
    time = np.round(rng.exponential(2.0, 300), 2) + 0.01
    code = rng.integers(0, 3, 300)
    time = time + np.arange(300) * 1e-7  # no tied event times: lifelines would jitter them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = fast_lifelines.aalen_johansen()(alpha=0.05, seed=0).fit(
            time, code, event_of_interest=1
        )
        theirs = AalenJohansenFitter(alpha=0.05, seed=0).fit(time, code, event_of_interest=1)
    columns = ours.confidence_interval_.columns.tolist()
    assert columns == theirs.confidence_interval_.columns.tolist()
    np.testing.assert_allclose(ours.variance_, theirs.variance_, rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(
        ours.confidence_interval_, theirs.confidence_interval_, rtol=1e-12, atol=0
    )


# --- the fitted curves handed to the report ----------------------------------------------------


def test_kaplan_meier_curves_are_the_fitted_step_functions(analysis):
    """The report draws these curves instead of refitting: each must be the product-limit
    estimate at every time, with its band, the censoring ticks and the numbers at risk."""
    import numpy as np

    rows, results = analysis
    te = [t for t in rows["tumors"] if t["te_evaluable"]]
    for group in ("all", "lt4cm", "ge4cm"):
        mine = [t for t in te if group == "all" or t["size_group"] == group]
        times = [t["ltp_time_years"] for t in mine]
        events = [t["ltp_event"] for t in mine]
        km = results.ltp_free_survival[group]
        curve = km.curve
        assert curve.times[0] == 0 and list(curve.times) == sorted(set(curve.times))
        for when, value, low, high in zip(
            curve.times, curve.values, curve.lower, curve.upper, strict=True
        ):
            s, v = hand_km(times, events, when)
            assert value == pytest.approx(s, abs=1e-12)
            if 0 < s < 1:
                assert (low, high) == pytest.approx(loglog_ci(s, v), rel=1e-9)
            elif s == 0:
                assert np.isnan(low) and np.isnan(high)  # undefined, not lifelines' 1.0
        for year, at in km.at_years.items():
            assert curve.at(year) == at.survival
        censored = sorted({x for x, e in zip(times, events, strict=True) if not e})
        assert list(km.censored_times) == censored
        assert km.follow_up.max_time == max(times)
        assert km.follow_up.at_risk_by_year == tuple(
            sum(x >= year for x in times) for year in range(11)
        )


def test_cumulative_incidence_curves_are_the_fitted_step_functions(analysis):
    import numpy as np

    rows, results = analysis
    for group in ("all", "lt4cm", "ge4cm"):
        mine, times, codes = competing_inputs(rows, group)
        risk = results.ltp_cumulative_incidence[group]
        for when in sorted(set(times)) + [0.0, 1.0, 20.0]:
            assert risk.ltp.at(when) == pytest.approx(
                hand_cumulative_incidence(times, codes, when, 1), abs=1e-12
            )
            assert risk.death.at(when) == pytest.approx(
                hand_cumulative_incidence(times, codes, when, 2), abs=1e-12
            )
            s, _ = hand_km(times, [c == 1 for c in codes], when)
            assert risk.km.at(when) == pytest.approx(s, abs=1e-12)
        # the band where defined (not at 0, nor where the last at-risk tumor has its event)
        defined = (risk.ltp.values > 0) & ~np.isnan(risk.ltp.lower)
        assert defined.sum() > 3
        assert (risk.ltp.lower[defined] <= risk.ltp.values[defined]).all()
        assert (risk.ltp.values[defined] <= risk.ltp.upper[defined]).all()
        for year, at in risk.at_years.items():
            assert risk.ltp.at(year) == at.cif and risk.death.at(year) == at.death_cif


def test_attrition_steps_are_read_in_order(analysis, tmp_path):
    _, results = analysis
    assert [(s.step, s.tumors_remaining, s.tumors_excluded) for s in results.attrition] == [
        (step, left, out) for _, step, left, out, _ in ATTRITION
    ]
    build_warehouse(tmp_path / "bare.duckdb")
    with duckdb.connect(str(tmp_path / "bare.duckdb")) as con:
        con.execute("drop table marts.fct_tumor_attrition")
        assert analyze.attrition(con) is None


# --- metrics.json's schema ---------------------------------------------------------------------

RUN = {
    "run_id": "r1",
    "code_version": "0.1.0+abc",
    "started_at": "2024-01-02T02:00:00+00:00",
    "finished_at": "2024-01-02T02:01:00+00:00",
    "extracts": [{"name": "2024-01-01", "content_hash": "ab12", "loaded_this_run": True}],
    "warnings": [],
    "files": [
        {"extract": "2024-01-01", "file": "tumors.csv", "read": 3, "loaded": 3, "quarantined": 0}
    ],
    "data_quality": {
        "status": "passed",
        "checks": 1,
        "passed": 1,
        "failed": 0,
        "error": 0,
        "not_applicable": 0,
        "fatal": [],
        "warnings": [],
        "freshness": {
            "status": "passed",
            "warn_after_hours": 48,
            "error_after_hours": None,
            "sources": [
                {
                    "source": "registry.tumors",
                    "kind": "passed",
                    "age_hours": 0.01,
                    "loaded_at": "2024-01-02T02:00:10+00:00",
                    "summary": "newest row loaded 0.0 h ago (warn after 48 h)",
                }
            ],
        },
    },
    "dbt": {"nodes": 1, "passed": 1, "warned": [], "full_refresh": None, "slowest_nodes": []},
}


@pytest.mark.parametrize("case", ["cohort", "edge", "older warehouse"])
def test_metrics_of_every_case_match_the_schema(tmp_path, case):
    """Null statistics, an unfitted Cox model and blocks not available still follow the schema."""
    import jsonschema

    tumors = tumor_rows()
    if case == "edge":
        for t in tumors:
            t["size_group"] = "lt4cm"
            t["ltp_event"] = False if t["te_evaluable"] else None
        with_competing_outcome(tumors)
    path = tmp_path / "w.duckdb"
    build_warehouse(path, tumors)
    if case == "older warehouse":
        with duckdb.connect(str(path)) as con:
            con.execute("alter table marts.fct_tumor drop column ltp_competing_event")
            con.execute("alter table marts.dim_patient drop column died")
    with duckdb.connect(str(path), read_only=True) as con:
        metrics = analyze.metrics_json(analyze.compute(con), RUN)
    jsonschema.validate(metrics, analyze.metrics_schema())


# --- lifelines' private methods replaced for speed -----------------------------------------------


@pytest.mark.parametrize("qualified", sorted(fast_lifelines.REPLACED))
def test_replaced_lifelines_methods_keep_their_signature(qualified):
    """fast_lifelines replaces these private methods; a lifelines release that renames them or
    changes their parameters must fail here (pyproject pins lifelines to one minor version)."""
    import importlib
    import inspect

    module, owner, method = qualified.rsplit(".", 2)
    original = getattr(getattr(importlib.import_module(module), owner), method)
    assert tuple(inspect.signature(original).parameters) == fast_lifelines.REPLACED[qualified]


def test_fast_cox_fitter_fits_through_its_own_score_residuals():
    """The override is in effect: the fitted model is the subclass with the vectorised
    residuals (else the sandwich would silently fall back to lifelines' O(n^2) loop)."""
    frame = _random_cox_frame(n=60)
    cph = fast_lifelines.cox_fitter(0.05).fit(
        frame, duration_col="duration", event_col="event", cluster_col="patient_key"
    )
    assert type(cph._model)._compute_score_within_strata is fast_lifelines._score_residuals


def test_cohort_means_have_the_same_digits_on_every_run(tmp_path):
    """A million tumors span several row groups that DuckDB's threads sum in any order; the
    cohort's means (metrics.json) must not change in their last digits from run to run."""
    store = tmp_path / "analysts.duckdb"
    with duckdb.connect(str(store)) as con:
        con.execute("create schema marts")
        con.execute(
            "create table marts.dim_patient as select 'F' as sex, 60 as age_at_first_procedure"
        )
        con.execute("create table marts.fct_procedure as select 'CT' as guidance")
        con.execute(
            """create table marts.fct_tumor as
            select 'primary' as origin, true as te_evaluable,
                   round(0.3 + 8 * random(), 1) as diameter_cm, 14 * random() as follow_up_years
            from range(1000000)"""
        )
    seen = set()
    for _ in range(4):
        with duckdb.connect(str(store), read_only=True) as con:
            con.execute("set threads = 4")
            c = analyze.cohort(con)
            seen.add((c.diameter_cm.mean, c.follow_up_years.mean))
    assert len(seen) == 1
    with duckdb.connect(str(store), read_only=True) as con:
        (exact,) = con.execute(
            "select sum(diameter_cm * 10)::bigint from marts.fct_tumor"
        ).fetchone()
    assert seen.pop()[0] == pytest.approx(exact / 10 / 1_000_000, rel=1e-15)
