"""The paper's statistics, computed from counts and times read from the marts.

The outcome definitions live in dbt; this module only aggregates in SQL and runs the tests
(Clopper-Pearson, chi-square, Fisher, Kaplan-Meier, log-rank, Cox). scipy and lifelines are
imported inside the functions because they are slow to import and the CLI should start fast.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path

import duckdb
import numpy as np

SCHEMA_VERSION = 1
SIZE_GROUPS = ("lt4cm", "ge4cm")
KM_YEARS = (1, 2, 3, 5)
ALPHA = 0.05


def _num(value) -> float | None:
    """A JSON-safe float: None for null, NaN and infinity."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int(value) -> int:
    return int(value or 0)


def _one_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    """The single row of an aggregate query (fetchall: DuckDB 2.0 wants results drained)."""
    return con.execute(sql).fetchall()[0]


# --- proportions and 2x2 comparisons ---------------------------------------------------------


def proportion(k: int, n: int) -> dict:
    """k/n with pct and the 95% Clopper-Pearson interval (fractions); null stats when n = 0."""
    k, n = int(k), int(n)
    if n == 0:
        return {"k": k, "n": n, "pct": None, "ci95": [None, None]}
    from scipy.stats import beta

    low = 0.0 if k == 0 else float(beta.ppf(ALPHA / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - ALPHA / 2, k + 1, n - k))
    return {"k": k, "n": n, "pct": 100.0 * k / n, "ci95": [low, high]}


def compare(a: dict, b: dict) -> dict:
    """Two-sided Pearson chi-square (no continuity correction) and Fisher exact of two P's.

    Also flags a 2x2 table with an expected cell count below 5, where the chi-square
    approximation is unreliable. Every statistic is null when a group is empty.
    """
    out = {"p_chi2": None, "p_fisher": None, "chi2": None}
    out.update(min_expected_cell=None, expected_cell_below_5=None)
    if a["n"] == 0 or b["n"] == 0:
        return out
    from scipy.stats import chi2_contingency, fisher_exact

    table = np.array([[a["k"], a["n"] - a["k"]], [b["k"], b["n"] - b["k"]]], dtype=float)
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    out["min_expected_cell"] = float(expected.min())
    out["expected_cell_below_5"] = bool(expected.min() < 5)
    out["p_fisher"] = float(fisher_exact(table.astype(int), alternative="two-sided").pvalue)
    if expected.min() > 0:  # chi-square is undefined when a margin is zero
        res = chi2_contingency(table, correction=False)
        out["chi2"], out["p_chi2"] = float(res.statistic), _num(res.pvalue)
    return out


# --- Kaplan-Meier ------------------------------------------------------------------------------


def survival_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Event/censoring times, event flags and size groups of the TE-evaluable tumors.

    Inputs are read in key order (here and below) so that floating-point sums, and so
    metrics.json, are identical from run to run.
    """
    table = con.sql(
        """
        select ltp_time_years as time, ltp_event as event, size_group
        from marts.fct_tumor
        where te_evaluable and ltp_time_years is not null and ltp_event is not null
        order by tumor_key
        """
    ).to_arrow_table()
    return {
        "time": table.column("time").to_numpy().astype(float),
        "event": table.column("event").to_numpy(zero_copy_only=False).astype(bool),
        "size_group": table.column("size_group").to_numpy(zero_copy_only=False).astype(str),
    }


def reused_fit(fit):
    """Reuse a fit on identical inputs within the process: the report draws the very curves
    the analysis fitted (at 1M patients each fit reads millions of times). Kept small: a
    `cryoreg serve` process runs many nights."""
    fitted: dict[tuple, object] = {}

    @functools.wraps(fit)
    def cached(*arrays: np.ndarray, **options):
        digest = hashlib.blake2b(digest_size=16)
        for array in arrays:
            digest.update(str((array.dtype, array.shape)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        key = (digest.digest(), tuple(sorted(options.items())))
        if key not in fitted:
            if len(fitted) >= 16:
                fitted.clear()
            fitted[key] = fit(*arrays, **options)
        return fitted[key]

    return cached


@reused_fit
def fit_km(time: np.ndarray, event: np.ndarray, label: str = "KM"):
    """A lifelines KaplanMeierFitter (Greenwood variance, log(-log) CI), or None when empty."""
    if len(time) == 0:
        return None
    from lifelines import KaplanMeierFitter

    return KaplanMeierFitter(alpha=ALPHA).fit(time, event_observed=event, label=label)


def km_summary(time: np.ndarray, event: np.ndarray, years=KM_YEARS) -> dict:
    """KM block of metrics.json: n, events, median and survival/CI/at-risk at fixed years.

    lifelines' interval is the exponential Greenwood one, i.e. Greenwood's variance on the
    log(-log S) scale. The CI at t is that of the step function at t (last step <= t).
    """
    at_risk = {str(t): int(np.count_nonzero(time >= t)) for t in years}
    kmf = fit_km(time, event)
    if kmf is None:
        empty = {"survival": None, "ci95": [None, None]}
        at = {str(t): {**empty, "at_risk": at_risk[str(t)]} for t in years}
        return {"n": 0, "events": 0, "median_years": None, "at_years": at}
    surv = kmf.survival_function_at_times(list(years)).to_numpy()
    ci = kmf.confidence_interval_survival_function_
    steps = np.searchsorted(ci.index.to_numpy(), np.asarray(years, dtype=float), side="right") - 1
    bounds = ci.to_numpy()[steps]
    at = {}
    for t, s, (low, high) in zip(years, surv, bounds, strict=True):
        # Greenwood is undefined once S reaches 0 (lifelines would report NaN -> 1.0).
        interval = [_num(low), _num(high)] if s > 0 else [None, None]
        at[str(t)] = {"survival": _num(s), "ci95": interval, "at_risk": at_risk[str(t)]}
    return {
        "n": int(len(time)),
        "events": int(np.count_nonzero(event)),
        "median_years": _num(kmf.median_survival_time_),
        "at_years": at,
    }


def logrank_p(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> float | None:
    """Log-rank p of lt4cm vs ge4cm; null when a group is empty or nobody had an event."""
    a, b = group == SIZE_GROUPS[0], group == SIZE_GROUPS[1]
    if not a.any() or not b.any() or not event[a | b].any():
        return None
    from lifelines.statistics import logrank_test

    res = logrank_test(time[a], time[b], event_observed_A=event[a], event_observed_B=event[b])
    return _num(res.p_value)


def survival_block(con: duckdb.DuckDBPyConnection) -> dict:
    data = survival_inputs(con)
    time, event, group = data["time"], data["event"], data["size_group"]
    block = {"all": km_summary(time, event)}
    for g in SIZE_GROUPS:
        block[g] = km_summary(time[group == g], event[group == g])
    block["logrank_p"] = logrank_p(time, event, group)
    return block


# --- Cox model -------------------------------------------------------------------------------

COX_COVARIATES = {
    "diameter_cm": "diameter (per cm)",
    "origin_metastasis": "metastasis vs primary",
    "guidance_mri": "MRI vs CT guidance",
    "guidance_pet_ct": "PET/CT vs CT guidance",
}


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


def _score_residuals(self, X, _T, E, weights, entries):
    """lifelines' Cox score residuals (Lin & Wei), vectorised: same formula, O(n) not O(n^2).

    lifelines loops over rows summing over all earlier rows (8 s for 50,000 tumors); the sum
    sum_{j<=i} c_j (x_i - m_j) is x_i * cumsum(c)_i - cumsum(c m)_i. Rows are sorted by time,
    ties are handled as lifelines handles them (not specially). Agrees to ~1e-15.
    """
    x, event, w = X.to_numpy(), E.to_numpy().astype(int), weights.to_numpy()
    phi = np.exp(x @ (self.params_.to_numpy() * self._norm_std.to_numpy()))
    wphi = w * phi
    risk_x = (x * wphi[:, None])[::-1].cumsum(0)[::-1]
    risk = wphi[::-1].cumsum()[::-1]
    c = event * w / risk
    mean = risk_x / risk[:, None]
    score = -phi[:, None] * (x * np.cumsum(c)[:, None] - np.cumsum(c[:, None] * mean, axis=0))
    score += event[:, None] * (x - mean)
    return score * w[:, None]


def _cox_fitter():
    """A CoxPHFitter whose sandwich (clustered) variance uses the vectorised score residuals."""
    from lifelines import CoxPHFitter
    from lifelines.fitters.coxph_fitter import SemiParametricPHFitter

    class FastScorePH(SemiParametricPHFitter):
        _compute_score_within_strata = _score_residuals

    class FastCoxPH(CoxPHFitter):
        def _fit_model_breslow(self, *args, **kwargs):
            model = FastScorePH(
                penalizer=self.penalizer,
                l1_ratio=self.l1_ratio,
                strata=self.strata,
                alpha=self.alpha,
                label=self._label,
            )
            model.fit(*args, **kwargs)  # right-censored data only, as in lifelines
            return model

    return FastCoxPH(alpha=ALPHA)


def _patient_sample(df, max_tumors: int):
    """Every k-th patient (in key order, so the same sample every night), all their tumors."""
    patients = np.sort(df["patient_key"].unique())
    step = -(-len(df) // max_tumors)
    kept = df[df["patient_key"].isin(set(patients[::step]))]
    return kept, {"every_kth_patient": int(step), "tumors_in_cohort": int(len(df))}


def cox_model(con: duckdb.DuckDBPyConnection, cluster: bool = False) -> dict:
    """Cox PH of LTP on diameter, origin and guidance; reports non-convergence, never raises.

    cluster=True gives robust (sandwich) standard errors clustered by patient: several tumors
    of one patient are not independent, so the naive intervals are too narrow. The hazard
    ratios are the same; only their CIs and p-values change.
    """
    df = con.sql(COX_SQL).to_arrow_table().to_pandas()
    sample = None
    if cluster and len(df) > CLUSTERED_COX_MAX_TUMORS:
        df, sample = _patient_sample(df, CLUSTERED_COX_MAX_TUMORS)
    out = {
        "n": len(df),
        "events": int(df["event"].sum()),
        "reference": {"origin": "primary", "guidance": "CT"},
        "source": "marts.fct_tumor, marts.fct_procedure",
        "fitted": False,
        "converged": False,
        "warnings": [],
        "dropped": [],
        "covariates": {},
    }
    if sample:
        out["sample"] = sample
    if cluster:
        out["clusters"] = int(df["patient_key"].nunique())
        out["variance"] = "robust sandwich, clustered by patient_key"
    else:
        df = df.drop(columns="patient_key")
    constant = [c for c in COX_COVARIATES if df[c].nunique() < 2]
    out["dropped"] = constant  # no variation in this cohort: not estimable
    df = df.drop(columns=constant)
    if out["events"] == 0 or len(df.columns) <= 2 + cluster:
        out["error"] = "no events" if out["events"] == 0 else "no covariate varies"
        return out
    from lifelines.exceptions import ConvergenceWarning

    cph = _cox_fitter()
    extra = {"cluster_col": "patient_key"} if cluster else {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # batch mode: same Efron estimates, much faster with the many tied day-based times
            cph.fit(df, duration_col="duration", event_col="event", batch_mode=True, **extra)
        except Exception as exc:  # lifelines raises ConvergenceError, numpy LinAlgError, ...
            out["error"] = f"{type(exc).__name__}: {exc}".strip()
            return out
    out["warnings"] = [
        _short(str(w.message)) for w in caught if w.category.__module__.startswith("lifelines")
    ]
    out["fitted"] = True
    out["converged"] = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    summary = cph.summary
    for name in summary.index:
        row = summary.loc[name]
        out["covariates"][name] = {
            "label": COX_COVARIATES[name],
            "hr": _num(row["exp(coef)"]),
            "ci95": [_num(row["exp(coef) lower 95%"]), _num(row["exp(coef) upper 95%"])],
            "p": _num(row["p"]),
            "se_log_hr": _num(row["se(coef)"]),
        }
    return out


# --- beyond the paper: overall survival and competing risks ------------------------------------


def _missing(source: str, exc: Exception) -> dict:
    """The block of an analysis whose mart columns are absent (an older warehouse)."""
    return {"source": source, "error": f"not available: {str(exc).splitlines()[0]}"}


def overall_survival_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Per patient: years from the first procedure to death or last known alive, and death."""
    table = con.sql(
        """
        select overall_survival_years as time, died as event from marts.dim_patient
        where overall_survival_years is not null and died is not null
        order by patient_key
        """
    ).to_arrow_table()
    return {
        "time": table.column("time").to_numpy().astype(float),
        "event": table.column("event").to_numpy(zero_copy_only=False).astype(bool),
    }


def overall_survival_block(con: duckdb.DuckDBPyConnection) -> dict:
    """KM overall survival per patient from the first procedure (a KM block, events = deaths),
    with the median follow-up by reverse Kaplan-Meier (censoring as the event)."""
    source = "marts.dim_patient"
    try:
        data = overall_survival_inputs(con)
    except duckdb.Error as exc:
        return _missing(source, exc)
    time, event = data["time"], data["event"]
    block = {"source": source, **km_summary(time, event)}
    reverse = fit_km(time, ~event)
    block["median_follow_up_years"] = (
        None if reverse is None else _num(reverse.median_survival_time_)
    )
    return block


COMPETING_CODES = {"censored": 0, "ltp": 1, "death": 2}
# Registry dates are days: an LTP read and a death on the same day are tied, and lifelines'
# Aalen-Johansen would then jitter all event times at random. The LTP is moved earlier by far
# less than a day instead: the estimate is then exactly the one with ties handled together
# (both causes leave the risk set at once; censoring at that time stays at risk), and the same
# on every run.
LTP_BEFORE_SAME_DAY_DEATH = 1e-8


def competing_inputs(con: duckdb.DuckDBPyConnection) -> dict[str, np.ndarray]:
    """Per TE-evaluable tumor: time, outcome code (0 censored, 1 LTP, 2 death), size group."""
    table = con.sql(
        """
        select ltp_competing_time_years as time,
               case ltp_competing_event when 'ltp' then 1 when 'death' then 2 else 0 end as code,
               size_group
        from marts.fct_tumor
        where te_evaluable and ltp_competing_event is not null
          and ltp_competing_time_years is not null
        order by tumor_key
        """
    ).to_arrow_table()
    code = table.column("code").to_numpy().astype(int)
    time = table.column("time").to_numpy().astype(float)
    return {
        "time": time - (code == 1) * LTP_BEFORE_SAME_DAY_DEATH,
        "code": code,
        "size_group": table.column("size_group").to_numpy(zero_copy_only=False).astype(str),
    }


@reused_fit
def fit_competing(time: np.ndarray, code: np.ndarray) -> dict | None:
    """Aalen-Johansen cumulative incidence of LTP and of death without LTP, and the
    Kaplan-Meier that censors deaths (its 1 - S is the naive 'incidence'); None when empty."""
    if len(time) == 0:
        return None
    fitter = _aalen_johansen()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns of ties it would jitter; none remain
        ltp = fitter(alpha=ALPHA, seed=0).fit(time, code, event_of_interest=1)
        # only the death CIF itself is reported or drawn: its interval is not computed
        death = fitter(alpha=ALPHA, seed=0, calculate_variance=False).fit(
            time, code, event_of_interest=2
        )
    return {"ltp": ltp, "death": death, "km": fit_km(time, code == 1)}


def _aj_bounds(self, lagged_survival, alpha, ci_labels):
    """lifelines' Aalen-Johansen variance and log(-log) interval, without its row loop.

    lifelines walks the event table with iterrows (1 s at 160,000 tumors) updating prefix sums;
    np.cumsum adds in the same order, on the same float64 values, so the result is the same.
    """
    from lifelines.utils import inv_normal_cdf

    df = self.event_table.copy()
    df["Ft"] = self.cumulative_density_
    df["lagS"] = lagged_survival.fillna(1)
    if ci_labels is None:
        ci = 1 - alpha
        ci_labels = [f"{self._label}_upper_{ci:g}", f"{self._label}_lower_{ci:g}"]
    f_t = df["Ft"].to_numpy(dtype=float)
    observed = df["observed"].to_numpy(dtype=float)
    at_risk = df["at_risk"].to_numpy(dtype=float)
    cause = df[self.label_cmprisk].to_numpy(dtype=float)
    lag_s = df["lagS"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = observed / at_risk / (at_risk - observed)
        const, linear, quad = np.cumsum(a * f_t**2), np.cumsum(-(2 * a * f_t)), np.cumsum(a)
        second = np.cumsum((lag_s**2) * cause * (at_risk - cause) / (at_risk**3))
        third_a = lag_s * cause / (at_risk**2)
        third_const, third_linear = np.cumsum(third_a * -f_t), np.cumsum(third_a)
        first = const + linear * f_t + quad * (f_t**2)
        df["variance"] = first + second - 2 * (third_const + third_linear * f_t)
        df["F_transformed"] = np.log(-np.log(df["Ft"]))
        df["se_transformed"] = np.sqrt(df["variance"]) / (df["Ft"] * np.absolute(np.log(df["Ft"])))
        z = inv_normal_cdf(1 - alpha / 2)
        df[ci_labels[0]] = np.exp(-np.exp(df["F_transformed"] + z * df["se_transformed"]))
        df[ci_labels[1]] = np.exp(-np.exp(df["F_transformed"] - z * df["se_transformed"]))
    return df["variance"], df[ci_labels]


def _aalen_johansen():
    """lifelines' AalenJohansenFitter with the vectorised interval (_aj_bounds)."""
    from lifelines import AalenJohansenFitter

    return type("AalenJohansen", (AalenJohansenFitter,), {"_bounds": _aj_bounds})


def _step_values(index: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """A right-continuous step function given at its jump times (the first is 0), read at `at`."""
    return values[np.clip(np.searchsorted(index, at, side="right") - 1, 0, None)]


def cumulative_incidence_summary(time: np.ndarray, code: np.ndarray, years=KM_YEARS) -> dict:
    """Counts and, at fixed years, the AJ cumulative incidence of LTP (95% CI, log(-log) delta
    method), that of death without LTP, and 1 - KM with deaths censored."""
    counts = {k: int(np.count_nonzero(code == v)) for k, v in COMPETING_CODES.items()}
    out = {"n": int(len(time)), "ltp_events": counts["ltp"], "deaths": counts["death"]}
    out["censored"] = counts["censored"]
    fits = fit_competing(time, code)
    at = np.asarray(years, dtype=float)
    if fits is None:
        empty = {"cif": None, "ci95": [None, None], "death_cif": None, "one_minus_km": None}
        out["at_years"] = {str(t): dict(empty) for t in years}
        return out
    ltp, death = fits["ltp"], fits["death"]
    cif = _step_values(
        ltp.cumulative_density_.index.to_numpy(), ltp.cumulative_density_.to_numpy()[:, 0], at
    )
    ci_frame = ltp.confidence_interval_cumulative_density_
    ci = _step_values(ci_frame.index.to_numpy(), ci_frame.to_numpy(), at)
    death_cif = _step_values(
        death.cumulative_density_.index.to_numpy(), death.cumulative_density_.to_numpy()[:, 0], at
    )
    km = fits["km"].survival_function_at_times(list(years)).to_numpy()
    # lifelines orders the CI columns upper, lower
    low, high = ci.min(axis=1), ci.max(axis=1)
    out["at_years"] = {
        str(t): {
            "cif": _num(c),
            "ci95": [_num(lo), _num(hi)] if c > 0 else [None, None],
            "death_cif": _num(d),
            "one_minus_km": _num(1 - s),
        }
        for t, c, lo, hi, d, s in zip(years, cif, low, high, death_cif, km, strict=True)
    }
    return out


def cumulative_incidence_block(con: duckdb.DuckDBPyConnection) -> dict:
    """LTP with death as a competing risk, all tumors and by size group (marts.fct_tumor)."""
    source = "marts.fct_tumor"
    try:
        data = competing_inputs(con)
    except duckdb.Error as exc:
        return _missing(source, exc)
    time, code, group = data["time"], data["code"], data["size_group"]
    block = {"source": source, "all": cumulative_incidence_summary(time, code)}
    for g in SIZE_GROUPS:
        block[g] = cumulative_incidence_summary(time[group == g], code[group == g])
    return block


# --- counts (SQL) ----------------------------------------------------------------------------


def cohort_block(con: duckdb.DuckDBPyConnection) -> dict:
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
        """
        select count(*), count_if(origin = 'metastasis'), count_if(origin = 'primary'),
               avg(diameter_cm), median(diameter_cm), min(diameter_cm), max(diameter_cm),
               avg(follow_up_years) filter (where te_evaluable),
               min(follow_up_years) filter (where te_evaluable),
               max(follow_up_years) filter (where te_evaluable)
        from marts.fct_tumor
        """,
    )
    return {
        "patients": _int(patients),
        "women": _int(women),
        "age_years": {
            "mean": _num(age_mean),
            "min": None if age_min is None else int(age_min),
            "max": None if age_max is None else int(age_max),
        },
        "procedures": _int(procedures),
        "guidance": {"CT": _int(ct), "MRI": _int(mri), "PET/CT": _int(pet)},
        "tumors": _int(tumors),
        "metastases": _int(mets),
        "primary": _int(primary),
        "diameter_cm": {
            "mean": _num(d_mean),
            "median": _num(d_median),
            "min": _num(d_min),
            "max": _num(d_max),
        },
        "follow_up_years": {"mean": _num(f_mean), "min": _num(f_min), "max": _num(f_max)},
    }


def _with_comparison(block: dict, a: str, b: str) -> dict:
    return {**block, **compare(block[a], block[b])}


def tumor_outcome_blocks(con: duckdb.DuckDBPyConnection) -> dict:
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
        "technical_success": {"all": proportion(ts_k, ts_n)},
        "technique_efficacy": _with_comparison(te, "lt4cm", "ge4cm"),
        "local_tumor_progression": _with_comparison(ltp, "lt4cm", "ge4cm"),
    }


def adverse_event_block(con: duckdb.DuckDBPyConnection) -> dict:
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
    block = {
        "any": proportion(any_k, n),
        "major": proportion(major_k, n),
        "major_lt4cm": proportion(lt_k, lt_n),
        "major_ge4cm": proportion(ge_k, ge_n),
    }
    return _with_comparison(block, "major_lt4cm", "major_ge4cm")


def compute_metrics(con: duckdb.DuckDBPyConnection) -> dict:
    """The metrics.json structure of metrics.md (floats unrounded) plus expected-cell flags and,
    beyond the paper, the Cox model (naive and clustered by patient), overall survival and the
    cumulative incidence of LTP with death as a competing risk."""
    return {
        "schema_version": SCHEMA_VERSION,
        "cohort": cohort_block(con),
        **tumor_outcome_blocks(con),
        "adverse_events": adverse_event_block(con),
        "ltp_free_survival": survival_block(con),
        "cox": cox_model(con),
        "cox_clustered": cox_model(con, cluster=True),
        "overall_survival": overall_survival_block(con),
        "ltp_cumulative_incidence": cumulative_incidence_block(con),
    }


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
