"""The paper's statistics, computed from counts and times read from the marts.

The outcome definitions live in dbt; this module only aggregates in SQL and runs the tests
(exact binomial intervals, chi-square, Fisher, Kaplan-Meier, log-rank, Cox, Aalen-Johansen).
Each curve is fitted once, here, and handed on in the results (analysis.results) that
metrics.json is written from and the report draws. scipy and lifelines are imported inside the
functions because they are slow to import and the CLI should start fast.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import duckdb
import numpy as np

from cryoreg.analysis import fast_lifelines
from cryoreg.analysis.results import (
    KM_YEARS,
    NO_INTERVAL,
    SIZE_GROUPS,
    AttritionStep,
    Cohort,
    Comparison,
    CompetingRisk,
    CoxCovariate,
    CoxModel,
    CumulativeIncidence,
    FollowUp,
    IncidenceAt,
    KaplanMeier,
    LtpFreeSurvival,
    Outcome,
    OverallSurvival,
    Proportion,
    Results,
    StepCurve,
    Summary,
    SurvivalAt,
    num,
)

ALPHA = 0.05


def _one_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    """The single row of an aggregate query (fetchall: DuckDB 2.0 wants results drained)."""
    return con.execute(sql).fetchall()[0]


def _int(value) -> int:
    return int(value or 0)


# --- proportions and 2x2 comparisons ---------------------------------------------------------


def proportion(k: int, n: int) -> Proportion:
    """k/n with pct and the 95% exact (Clopper-Pearson) interval; null stats when n = 0."""
    k, n = int(k), int(n)
    if n == 0:
        return Proportion(k, n, None, NO_INTERVAL)
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=1 - ALPHA, method="exact")
    return Proportion(k, n, 100.0 * k / n, (float(ci.low), float(ci.high)))


def compare(a: Proportion, b: Proportion) -> Comparison:
    """Two-sided Pearson chi-square (no continuity correction) and Fisher exact of two P's.

    Also flags a 2x2 table with an expected cell count below 5, where the chi-square
    approximation is unreliable. Every statistic is null when a group is empty.
    """
    if a.n == 0 or b.n == 0:
        return Comparison()
    from scipy.stats import chi2_contingency, fisher_exact

    table = np.array([[a.k, a.n - a.k], [b.k, b.n - b.k]], dtype=float)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    p_fisher = float(fisher_exact(table.astype(int), alternative="two-sided").pvalue)
    chi2 = p_chi2 = None
    if expected.min() > 0:  # chi-square is undefined when a margin is zero
        res = chi2_contingency(table, correction=False)
        chi2, p_chi2 = float(res.statistic), num(res.pvalue)
    return Comparison(p_chi2, p_fisher, chi2, float(expected.min()), bool(expected.min() < 5))


def _compared(groups: dict[str, Proportion], a: str, b: str) -> Outcome:
    return Outcome(groups, compare(groups[a], groups[b]))


# --- Kaplan-Meier ------------------------------------------------------------------------------


def survival_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Event/censoring times, event flags and size groups of the TE-evaluable tumors, one row
    per distinct (time, event, group) with its count (_weighted)."""
    return _weighted(
        con,
        """
        select ltp_time_years::double as time, ltp_event::boolean as event,
               size_group
        from marts.fct_tumor
        where te_evaluable and ltp_time_years is not null and ltp_event is not null
        """,
    )


def _weighted(con: duckdb.DuckDBPyConnection, sql: str) -> dict[str, np.ndarray]:
    """The columns of `sql`'s rows counted per distinct row, in that row order, the count as
    "weight". Times are days, so a million tumors are a few thousand distinct rows; lifelines'
    estimates from integer weights are those of the rows one by one (the same sums, exactly),
    in a fraction of the time, and the fixed order keeps metrics.json identical from run to
    run."""
    table = con.sql(
        f"select *, count(*)::double as weight from ({sql}) as rows_ group by all order by all"
    ).to_arrow_table()
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _fit_km(time: np.ndarray, event: np.ndarray, weight: np.ndarray | None = None):
    """A lifelines KaplanMeierFitter (Greenwood variance, log(-log) CI), or None when empty."""
    if len(time) == 0:
        return None
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter(alpha=ALPHA).fit(
        time, event_observed=event, weights=weight, label="KM"
    )


def _ones(time: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    """The weights of the rows (how many subjects each stands for): one each when none given."""
    return np.ones(len(time)) if weight is None else weight


def _survival_curve(kmf) -> StepCurve:
    """The fitted survival function and its band (undefined, NaN, where S reaches 0)."""
    values = kmf.survival_function_.iloc[:, 0].to_numpy()
    bounds = kmf.confidence_interval_survival_function_.to_numpy().copy()  # lower, upper
    bounds[values == 0] = np.nan  # Greenwood is undefined at S = 0 (lifelines reports 1.0)
    times = kmf.survival_function_.index.to_numpy()
    return StepCurve(times, values, bounds[:, 0], bounds[:, 1])


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, years=KM_YEARS, weight: np.ndarray | None = None
) -> KaplanMeier:
    """n, events, median and survival/CI/at-risk at fixed years, and the curve itself; `weight`:
    how many subjects each row stands for (one each when None).

    lifelines' interval is the exponential Greenwood one, i.e. Greenwood's variance on the
    log(-log S) scale. The CI at t is that of the step function at t (last step <= t).
    """
    weight = _ones(time, weight)
    at_risk = {t: int(weight[time >= t].sum()) for t in years}
    kmf = _fit_km(time, event, weight)
    if kmf is None:
        at = {t: SurvivalAt(None, NO_INTERVAL, at_risk[t]) for t in years}
        return KaplanMeier(0, 0, None, at)
    surv = kmf.survival_function_at_times(list(years)).to_numpy()
    ci = kmf.confidence_interval_survival_function_
    steps = np.searchsorted(ci.index.to_numpy(), np.asarray(years, dtype=float), side="right") - 1
    bounds = ci.to_numpy()[steps]
    at = {}
    for t, s, (low, high) in zip(years, surv, bounds, strict=True):
        # Greenwood is undefined once S reaches 0 (lifelines would report NaN -> 1.0).
        interval = (num(low), num(high)) if s > 0 else NO_INTERVAL
        at[t] = SurvivalAt(num(s), interval, at_risk[t])
    return KaplanMeier(
        n=int(weight.sum()),
        events=int(weight[event].sum()),
        median_years=num(kmf.median_survival_time_),
        at_years=at,
        curve=_survival_curve(kmf),
        censored_times=np.unique(time[~event]),
        follow_up=FollowUp.of(time, weight),
    )


def logrank_p(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, weight: np.ndarray | None = None
) -> float | None:
    """Log-rank p of lt4cm vs ge4cm; null when a group is empty or nobody had an event."""
    a, b = group == SIZE_GROUPS[0], group == SIZE_GROUPS[1]
    if not a.any() or not b.any() or not event[a | b].any():
        return None
    from lifelines.statistics import logrank_test

    weight = _ones(time, weight)
    res = logrank_test(
        time[a],
        time[b],
        event_observed_A=event[a],
        event_observed_B=event[b],
        weights_A=weight[a],
        weights_B=weight[b],
    )
    return num(res.p_value)


def ltp_free_survival(con: duckdb.DuckDBPyConnection) -> LtpFreeSurvival:
    data = survival_inputs(con)
    time, event, group, weight = data["time"], data["event"], data["size_group"], data["weight"]
    groups = {"all": kaplan_meier(time, event, weight=weight)}
    for g in SIZE_GROUPS:
        mine = group == g
        groups[g] = kaplan_meier(time[mine], event[mine], weight=weight[mine])
    return LtpFreeSurvival(groups, logrank_p(time, event, group, weight))


# --- Cox model -------------------------------------------------------------------------------

COX_COVARIATES = {
    "diameter_cm": "diameter (per cm)",
    "origin_metastasis": "metastasis vs primary",
    "guidance_mri": "MRI vs CT guidance",
    "guidance_pet_ct": "PET/CT vs CT guidance",
}
COX_REFERENCE = {"origin": "primary", "guidance": "CT"}
COX_SOURCE = "marts.fct_tumor, marts.fct_procedure"


def _short(message: str) -> str:
    """A lifelines warning without its code samples and links (it ends up in the report)."""
    sentences = re.split(r"(?<=[.?])\s+", " ".join(message.split()))
    kept = [x for x in sentences if not any(m in x for m in ("http", ">>>", "print("))]
    return " ".join(kept[:3])


COX_SQL = """
    select t.ltp_time_years as duration, t.ltp_event::int as event, t.diameter_cm,
           (t.origin = 'metastasis')::int as origin_metastasis,
           (p.guidance = 'MRI')::int as guidance_mri,
           (p.guidance = 'PET/CT')::int as guidance_pet_ct,
           t.patient_key
    from marts.fct_tumor as t
    join marts.fct_procedure as p on p.procedure_key = t.procedure_key
    where t.te_evaluable and t.ltp_time_years is not null and t.ltp_event is not null
      and t.diameter_cm is not null and t.origin is not null and p.guidance is not null
    order by t.tumor_key
"""


# The clustered model is fitted on a systematic sample of patients above this size (lifelines'
# own score residuals were O(n^2); kept so that metrics stay those of earlier nights).
CLUSTERED_COX_MAX_TUMORS = 50_000


def _patient_sample(table, max_tumors: int):
    """Every k-th patient (in key order, so the same sample every night), all their tumors.
    DuckDB numbers the patients and Arrow filters the rows, so a million keys never become
    Python strings."""
    import pyarrow.compute as pc

    step = -(-table.num_rows // max_tumors)
    keys = table.select(["patient_key"])  # noqa: F841 (read by name in the query)
    kept = duckdb.sql(
        f"""select patient_key from (select distinct patient_key from keys)
        qualify (row_number() over (order by patient_key) - 1) % {step} = 0"""
    ).to_arrow_table()
    sample = table.filter(pc.is_in(table.column("patient_key"), value_set=kept.column(0)))
    return sample, {"every_kth_patient": int(step), "tumors_in_cohort": int(table.num_rows)}


def cox_inputs(con: duckdb.DuckDBPyConnection):
    """The Cox models' rows (COX_SQL) as Arrow, read once for both models."""
    return con.sql(COX_SQL).to_arrow_table()


def cox_model(table, cluster: bool = False) -> CoxModel:
    """Cox PH of LTP on diameter, origin and guidance (`table`: cox_inputs); reports
    non-convergence, never raises.

    cluster=True gives robust (sandwich) standard errors clustered by patient: several tumors
    of one patient are not independent, so the naive intervals are too narrow. The hazard
    ratios are the same; only their CIs and p-values change.
    """
    sample = None
    if cluster and table.num_rows > CLUSTERED_COX_MAX_TUMORS:
        table, sample = _patient_sample(table, CLUSTERED_COX_MAX_TUMORS)
    if not cluster:
        table = table.drop_columns(["patient_key"])
    df = table.to_pandas()
    base = {"n": len(df), "events": int(df["event"].sum()), "source": COX_SOURCE}
    base["reference"] = COX_REFERENCE
    if sample:
        base["sample"] = sample
    if cluster:
        base["clusters"] = int(df["patient_key"].nunique())
        base["variance"] = "robust sandwich, clustered by patient_key"
    constant = tuple(c for c in COX_COVARIATES if df[c].nunique() < 2)
    base["dropped"] = constant  # no variation in this cohort: not estimable
    df = df.drop(columns=list(constant))
    if base["events"] == 0 or len(df.columns) <= 2 + cluster:
        return CoxModel(**base, error="no events" if base["events"] == 0 else "no covariate varies")
    from lifelines.exceptions import ConvergenceWarning

    cph = fast_lifelines.cox_fitter(ALPHA)
    extra = {"cluster_col": "patient_key"} if cluster else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # batch mode: same Efron estimates, much faster with the many tied day-based times
            cph.fit(df, duration_col="duration", event_col="event", batch_mode=True, **extra)
        except Exception as exc:  # lifelines raises ConvergenceError, numpy LinAlgError, ...
            return CoxModel(**base, error=f"{type(exc).__name__}: {exc}".strip())
    summary = cph.summary
    covariates = {}
    for name in summary.index:
        row = summary.loc[name]
        covariates[name] = CoxCovariate(
            label=COX_COVARIATES[name],
            hr=num(row["exp(coef)"]),
            ci95=(num(row["exp(coef) lower 95%"]), num(row["exp(coef) upper 95%"])),
            p=num(row["p"]),
            se_log_hr=num(row["se(coef)"]),
        )
    return CoxModel(
        **base,
        fitted=True,
        converged=not any(issubclass(w.category, ConvergenceWarning) for w in caught),
        warnings=tuple(
            _short(str(w.message)) for w in caught if w.category.__module__.startswith("lifelines")
        ),
        covariates=covariates,
    )


# --- beyond the paper: overall survival and competing risks ------------------------------------


def _missing(exc: Exception) -> str:
    """Why an analysis whose mart columns are absent (an older warehouse) is not there."""
    return f"not available: {str(exc).splitlines()[0]}"


def overall_survival_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Per patient: years from the first procedure to death or last known alive, and death
    (counted per distinct pair, _weighted)."""
    return _weighted(
        con,
        """
        select overall_survival_years::double as time, died::boolean as event
        from marts.dim_patient
        where overall_survival_years is not null and died is not null
        """,
    )


def overall_survival(con: duckdb.DuckDBPyConnection) -> OverallSurvival:
    """KM overall survival per patient from the first procedure (events = deaths), with the
    median follow-up by reverse Kaplan-Meier (censoring as the event)."""
    source = "marts.dim_patient"
    try:
        data = overall_survival_inputs(con)
    except duckdb.Error as exc:
        return OverallSurvival(source, error=_missing(exc))
    time, event, weight = data["time"], data["event"], data["weight"]
    reverse = _fit_km(time, ~event, weight)
    follow = None if reverse is None else num(reverse.median_survival_time_)
    return OverallSurvival(source, kaplan_meier(time, event, weight=weight), follow)


COMPETING_CODES = {"censored": 0, "ltp": 1, "death": 2}
# Registry dates are days: an LTP read and a death on the same day are tied, and lifelines'
# Aalen-Johansen would then jitter all event times at random. The LTP is moved earlier by far
# less than a day instead: the estimate is then exactly the one with ties handled together
# (both causes leave the risk set at once; censoring at that time stays at risk), and the same
# on every run.
LTP_BEFORE_SAME_DAY_DEATH = 1e-8


def competing_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Per TE-evaluable tumor: time, outcome code (0 censored, 1 LTP, 2 death), size group
    (counted per distinct row, _weighted)."""
    data = _weighted(
        con,
        """
        select ltp_competing_time_years::double as time,
               case ltp_competing_event when 'ltp' then 1 when 'death' then 2 else 0 end as code,
               size_group
        from marts.fct_tumor
        where te_evaluable and ltp_competing_event is not null
          and ltp_competing_time_years is not null
        """,
    )
    data["time"] = data["time"] - (data["code"] == 1) * LTP_BEFORE_SAME_DAY_DEATH
    return data


def _incidence_curve(fit, band: bool) -> StepCurve:
    density = fit.cumulative_density_
    times, values = density.index.to_numpy(), density.to_numpy()[:, 0]
    if not band:
        return StepCurve(times, values)
    ci = fit.confidence_interval_cumulative_density_  # lifelines orders it upper, lower
    bounds = ci.to_numpy()
    return StepCurve(times, values, bounds.min(axis=1), bounds.max(axis=1))


def competing_risk(
    time: np.ndarray, code: np.ndarray, years=KM_YEARS, weight: np.ndarray | None = None
) -> CompetingRisk:
    """Counts, the curves, and at fixed years the AJ cumulative incidence of LTP (95% CI,
    log(-log) delta method), that of death without LTP, and 1 - KM with deaths censored;
    `weight`: how many tumors each row stands for (one each when None)."""
    weight = _ones(time, weight)
    counts = {k: int(weight[code == v].sum()) for k, v in COMPETING_CODES.items()}
    n, ltp_events, deaths = int(weight.sum()), counts["ltp"], counts["death"]
    censored = counts["censored"]
    if n == 0:
        empty = IncidenceAt(None, NO_INTERVAL, None, None)
        return CompetingRisk(0, ltp_events, deaths, censored, {t: empty for t in years})
    fitter = fast_lifelines.aalen_johansen()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns of ties it would jitter; none remain
        ltp_fit = fitter(alpha=ALPHA, seed=0).fit(time, code, event_of_interest=1, weights=weight)
        # only the death CIF itself is reported or drawn: its interval is not computed
        death_fit = fitter(alpha=ALPHA, seed=0, calculate_variance=False).fit(
            time, code, event_of_interest=2, weights=weight
        )
    ltp, death = _incidence_curve(ltp_fit, band=True), _incidence_curve(death_fit, band=False)
    km = _survival_curve(_fit_km(time, code == 1, weight))
    at = np.asarray(years, dtype=float)
    cif, low, high = ltp.at(at), _step(ltp.times, ltp.lower, at), _step(ltp.times, ltp.upper, at)
    at_years = {
        t: IncidenceAt(
            cif=num(c),
            ci95=(num(lo), num(hi)) if c > 0 else NO_INTERVAL,
            death_cif=num(d),
            one_minus_km=num(1 - s),
        )
        for t, c, lo, hi, d, s in zip(years, cif, low, high, death.at(at), km.at(at), strict=True)
    }
    return CompetingRisk(
        n, ltp_events, deaths, censored, at_years, ltp, death, km, FollowUp.of(time, weight)
    )


def _step(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    return StepCurve(times, values).at(at)


def ltp_cumulative_incidence(con: duckdb.DuckDBPyConnection) -> CumulativeIncidence:
    """LTP with death as a competing risk, all tumors and by size group (marts.fct_tumor)."""
    source = "marts.fct_tumor"
    try:
        data = competing_inputs(con)
    except duckdb.Error as exc:
        return CumulativeIncidence(source, error=_missing(exc))
    time, code, group, weight = data["time"], data["code"], data["size_group"], data["weight"]
    groups = {"all": competing_risk(time, code, weight=weight)}
    for g in SIZE_GROUPS:
        mine = group == g
        groups[g] = competing_risk(time[mine], code[mine], weight=weight[mine])
    return CumulativeIncidence(source, groups)


# --- counts (SQL) ----------------------------------------------------------------------------


# Means are taken over decimals: their sums are exact, so the mean has the same digits on every
# run; a sum of doubles adds in whatever order DuckDB's threads finish (the last digits vary).
def _mean(column: str) -> str:
    return f"avg(cast({column} as decimal(38, 15)))"


def cohort(con: duckdb.DuckDBPyConnection) -> Cohort:
    patients, women, age_mean, age_min, age_max = _one_row(
        con,
        """
        select count(*), count_if(sex = 'F'), avg(age_at_first_procedure),
               min(age_at_first_procedure), max(age_at_first_procedure)
        from marts.dim_patient
        """,
    )
    procedures, ct, mri, pet = _one_row(
        con,
        """
        select count(*), count_if(guidance = 'CT'), count_if(guidance = 'MRI'),
               count_if(guidance = 'PET/CT')
        from marts.fct_procedure
        """,
    )
    tumors, mets, primary, d_mean, d_median, d_min, d_max, f_mean, f_min, f_max = _one_row(
        con,
        f"""
        select count(*), count_if(origin = 'metastasis'), count_if(origin = 'primary'),
               {_mean("diameter_cm")}, median(diameter_cm), min(diameter_cm), max(diameter_cm),
               {_mean("follow_up_years")} filter (where te_evaluable),
               min(follow_up_years) filter (where te_evaluable),
               max(follow_up_years) filter (where te_evaluable)
        from marts.fct_tumor
        """,
    )
    return Cohort(
        patients=_int(patients),
        women=_int(women),
        age_years=Summary(
            mean=num(age_mean),
            min=None if age_min is None else int(age_min),
            max=None if age_max is None else int(age_max),
        ),
        procedures=_int(procedures),
        guidance={"CT": _int(ct), "MRI": _int(mri), "PET/CT": _int(pet)},
        tumors=_int(tumors),
        metastases=_int(mets),
        primary=_int(primary),
        diameter_cm=Summary(num(d_mean), num(d_min), num(d_max), median=num(d_median)),
        follow_up_years=Summary(num(f_mean), num(f_min), num(f_max)),
    )


def tumor_outcomes(con: duckdb.DuckDBPyConnection) -> dict[str, Outcome]:
    """Technical success, technique efficacy and LTP counts in one pass over fct_tumor."""
    row = _one_row(
        con,
        """
        select
            count_if(ts_evaluable and ts_success), count_if(ts_evaluable),
            count_if(te_evaluable and te_success), count_if(te_evaluable),
            count_if(te_evaluable and te_success and size_group = 'lt4cm'),
            count_if(te_evaluable and size_group = 'lt4cm'),
            count_if(te_evaluable and te_success and size_group = 'ge4cm'),
            count_if(te_evaluable and size_group = 'ge4cm'),
            count_if(te_evaluable and ltp_event),
            count_if(te_evaluable and ltp_event and size_group = 'lt4cm'),
            count_if(te_evaluable and ltp_event and size_group = 'ge4cm')
        from marts.fct_tumor
        """,
    )
    ts_k, ts_n, te_k, te_n, te_lt_k, lt_n, te_ge_k, ge_n, ltp_k, ltp_lt_k, ltp_ge_k = row
    te = {
        "all": proportion(te_k, te_n),
        "lt4cm": proportion(te_lt_k, lt_n),
        "ge4cm": proportion(te_ge_k, ge_n),
    }
    ltp = {
        "all": proportion(ltp_k, te_n),
        "lt4cm": proportion(ltp_lt_k, lt_n),
        "ge4cm": proportion(ltp_ge_k, ge_n),
    }
    return {
        "technical_success": Outcome({"all": proportion(ts_k, ts_n)}),
        "technique_efficacy": _compared(te, "lt4cm", "ge4cm"),
        "local_tumor_progression": _compared(ltp, "lt4cm", "ge4cm"),
    }


def adverse_events(con: duckdb.DuckDBPyConnection) -> Outcome:
    """Any/major AE per procedure (30-day window resolved in dbt), major AE by size group."""
    n, any_k, major_k, lt_k, lt_n, ge_k, ge_n = _one_row(
        con,
        """
        select count(*), count_if(any_ae), count_if(major_ae),
               count_if(major_ae and size_group = 'lt4cm'), count_if(size_group = 'lt4cm'),
               count_if(major_ae and size_group = 'ge4cm'), count_if(size_group = 'ge4cm')
        from marts.fct_procedure
        """,
    )
    groups = {
        "any": proportion(any_k, n),
        "major": proportion(major_k, n),
        "major_lt4cm": proportion(lt_k, lt_n),
        "major_ge4cm": proportion(ge_k, ge_n),
    }
    return _compared(groups, "major_lt4cm", "major_ge4cm")


def attrition(con: duckdb.DuckDBPyConnection) -> tuple[AttritionStep, ...] | None:
    """The inclusion steps of marts.fct_tumor_attrition in order; None when the mart is absent."""
    try:
        rows = con.execute(
            """
            select step, tumors_remaining, tumors_excluded, exclusion_reason
            from marts.fct_tumor_attrition order by step_order
            """
        ).fetchall()
    except duckdb.Error:
        return None
    return tuple(
        AttritionStep(step, int(left), int(out or 0), why) for step, left, out, why in rows
    )


def compute(con: duckdb.DuckDBPyConnection) -> Results:
    """Every result of the night: the paper's (floats unrounded) with expected-cell flags and,
    beyond the paper, the Cox model (naive and clustered by patient), overall survival and the
    cumulative incidence of LTP with death as a competing risk."""
    cox_rows = cox_inputs(con)
    return Results(
        cohort=cohort(con),
        **tumor_outcomes(con),
        adverse_events=adverse_events(con),
        ltp_free_survival=ltp_free_survival(con),
        cox=cox_model(cox_rows),
        cox_clustered=cox_model(cox_rows, cluster=True),
        overall_survival=overall_survival(con),
        ltp_cumulative_incidence=ltp_cumulative_incidence(con),
        attrition=attrition(con),
    )


def metrics_json(results: Results, run: dict | None = None) -> dict:
    """The content of metrics.json: the results, and the flow's `run` block when given."""
    metrics = results.to_json()
    if run is not None:
        metrics["run"] = run
    return metrics


SCHEMA_PATH = Path(__file__).with_name("metrics.schema.json")


def metrics_schema() -> dict:
    """The JSON Schema of metrics.json (its fixed keys and their types)."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def write_metrics(metrics: dict, path: Path) -> Path:
    """metrics.json, indent 2; written to a temp file and renamed so readers never see half.

    A `run` block added by the caller is written as given (non-JSON values via str()).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, default=str, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
