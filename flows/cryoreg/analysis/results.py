"""The analysis' results as values: what metrics.json is written from and the report draws.

Each block knows its metrics.json form (`to_json`, the keys and order of the public file);
fields that are not in that file (fitted curves, at-risk counts on the figures' axes, the
attrition steps, the marts a figure comes from) are for the report, so that it never reads the
warehouse nor refits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

SCHEMA_VERSION = 1
SIZE_GROUPS = ("lt4cm", "ge4cm")
KM_YEARS = (1, 2, 3, 5)
# the figures' time axes run from 0 to at most this many years
AXIS_YEARS = 10


def num(value) -> float | None:
    """A JSON-safe float: None for null, NaN and infinity."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


Interval = tuple[float | None, float | None]
NO_INTERVAL: Interval = (None, None)


# --- proportions and 2x2 comparisons ---------------------------------------------------------


@dataclass(frozen=True)
class Proportion:
    """k of n with its 95% exact (Clopper-Pearson) interval, as fractions."""

    k: int
    n: int
    pct: float | None
    ci95: Interval

    def to_json(self) -> dict:
        return {"k": self.k, "n": self.n, "pct": self.pct, "ci95": list(self.ci95)}


@dataclass(frozen=True)
class Comparison:
    """Pearson chi-square (no continuity correction) and Fisher exact of two proportions."""

    p_chi2: float | None = None
    p_fisher: float | None = None
    chi2: float | None = None
    min_expected_cell: float | None = None
    expected_cell_below_5: bool | None = None

    def to_json(self) -> dict:
        return {
            "p_chi2": self.p_chi2,
            "p_fisher": self.p_fisher,
            "chi2": self.chi2,
            "min_expected_cell": self.min_expected_cell,
            "expected_cell_below_5": self.expected_cell_below_5,
        }


@dataclass(frozen=True)
class Outcome:
    """Proportions by group ("all", size groups...), and the test of the two compared."""

    groups: dict[str, Proportion]
    comparison: Comparison | None = None

    def __getitem__(self, group: str) -> Proportion:
        return self.groups[group]

    def to_json(self) -> dict:
        block = {name: p.to_json() for name, p in self.groups.items()}
        return block | (self.comparison.to_json() if self.comparison else {})


# --- fitted curves ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StepCurve:
    """A fitted right-continuous step function: `values[i]` from `times[i]` (the first is 0) to
    the next time; `lower`/`upper` its 95% band, NaN where the interval is undefined."""

    times: np.ndarray
    values: np.ndarray
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None

    def at(self, when) -> np.ndarray:
        """The step function read at `when` (the last step at or before)."""
        steps = np.searchsorted(self.times, np.asarray(when, dtype=float), side="right") - 1
        return self.values[np.clip(steps, 0, None)]


@dataclass(frozen=True)
class FollowUp:
    """What a time axis shows beside a curve: the longest time and the number at risk
    (time >= t) at t = 0, 1, ..., AXIS_YEARS years."""

    max_time: float
    at_risk_by_year: tuple[int, ...]

    @classmethod
    def of(cls, time: np.ndarray, weight: np.ndarray) -> FollowUp | None:
        """`weight`: how many subjects each time stands for."""
        if len(time) == 0:
            return None
        years = np.arange(AXIS_YEARS + 1, dtype=float)
        at_risk = [weight[time >= year].sum() for year in years]
        return cls(float(time.max()), tuple(int(x) for x in at_risk))


# --- Kaplan-Meier ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SurvivalAt:
    survival: float | None
    ci95: Interval
    at_risk: int

    def to_json(self) -> dict:
        return {"survival": self.survival, "ci95": list(self.ci95), "at_risk": self.at_risk}


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier estimate: counts, median, the fixed years, and the curve as fitted
    (Greenwood, log(-log) band) with the censoring times the figure ticks."""

    n: int
    events: int
    median_years: float | None
    at_years: dict[int, SurvivalAt]
    curve: StepCurve | None = None
    censored_times: np.ndarray = field(default_factory=lambda: np.empty(0))
    follow_up: FollowUp | None = None

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "events": self.events,
            "median_years": self.median_years,
            "at_years": {str(t): at.to_json() for t, at in self.at_years.items()},
        }


@dataclass(frozen=True)
class LtpFreeSurvival:
    """LTP-free survival of TE-evaluable tumors, all and by size group, and the log-rank p."""

    groups: dict[str, KaplanMeier]
    logrank_p: float | None
    source: str = "marts.fct_tumor (te_evaluable, ltp_event, ltp_time_years, size_group)"

    def __getitem__(self, group: str) -> KaplanMeier:
        return self.groups[group]

    def to_json(self) -> dict:
        return {g: km.to_json() for g, km in self.groups.items()} | {"logrank_p": self.logrank_p}


@dataclass(frozen=True)
class OverallSurvival:
    """Overall survival per patient; `error` when the mart's columns are absent."""

    source: str
    km: KaplanMeier | None = None
    median_follow_up_years: float | None = None
    error: str | None = None

    def to_json(self) -> dict:
        if self.error or self.km is None:
            return {"source": self.source, "error": self.error}
        return {
            "source": self.source,
            **self.km.to_json(),
            "median_follow_up_years": self.median_follow_up_years,
        }


# --- competing risks -------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidenceAt:
    cif: float | None
    ci95: Interval
    death_cif: float | None
    one_minus_km: float | None

    def to_json(self) -> dict:
        return {
            "cif": self.cif,
            "ci95": list(self.ci95),
            "death_cif": self.death_cif,
            "one_minus_km": self.one_minus_km,
        }


@dataclass(frozen=True)
class CompetingRisk:
    """Aalen-Johansen cumulative incidence of LTP (with its band) and of death without LTP,
    and the Kaplan-Meier survival that censors deaths (its 1 - S is the naive incidence)."""

    n: int
    ltp_events: int
    deaths: int
    censored: int
    at_years: dict[int, IncidenceAt]
    ltp: StepCurve | None = None
    death: StepCurve | None = None
    km: StepCurve | None = None
    follow_up: FollowUp | None = None

    def to_json(self) -> dict:
        return {
            "n": self.n,
            "ltp_events": self.ltp_events,
            "deaths": self.deaths,
            "censored": self.censored,
            "at_years": {str(t): at.to_json() for t, at in self.at_years.items()},
        }


@dataclass(frozen=True)
class CumulativeIncidence:
    source: str
    groups: dict[str, CompetingRisk] = field(default_factory=dict)
    error: str | None = None

    def __getitem__(self, group: str) -> CompetingRisk:
        return self.groups[group]

    def to_json(self) -> dict:
        if self.error:
            return {"source": self.source, "error": self.error}
        return {"source": self.source} | {g: b.to_json() for g, b in self.groups.items()}


# --- Cox model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CoxCovariate:
    label: str
    hr: float | None
    ci95: Interval
    p: float | None
    se_log_hr: float | None

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "hr": self.hr,
            "ci95": list(self.ci95),
            "p": self.p,
            "se_log_hr": self.se_log_hr,
        }


@dataclass(frozen=True)
class CoxModel:
    """A Cox PH fit (or why not); `clusters` and `variance` for the patient-clustered one."""

    n: int
    events: int
    source: str
    reference: dict[str, str]
    fitted: bool = False
    converged: bool = False
    warnings: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    covariates: dict[str, CoxCovariate] = field(default_factory=dict)
    sample: dict[str, int] | None = None
    clusters: int | None = None
    variance: str | None = None
    error: str | None = None

    def to_json(self) -> dict:
        out = {
            "n": self.n,
            "events": self.events,
            "reference": dict(self.reference),
            "source": self.source,
            "fitted": self.fitted,
            "converged": self.converged,
            "warnings": list(self.warnings),
            "dropped": list(self.dropped),
            "covariates": {name: c.to_json() for name, c in self.covariates.items()},
        }
        if self.sample:
            out["sample"] = dict(self.sample)
        if self.clusters is not None:
            out["clusters"] = self.clusters
            out["variance"] = self.variance
        if self.error:
            out["error"] = self.error
        return out


# --- cohort and inclusion --------------------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """mean / median / min / max of a column (median only where the paper gives one)."""

    mean: float | None
    min: float | int | None
    max: float | int | None
    median: float | None = None

    def to_json(self, with_median: bool = False) -> dict:
        out = {"mean": self.mean}
        if with_median:
            out["median"] = self.median
        return out | {"min": self.min, "max": self.max}


@dataclass(frozen=True)
class Cohort:
    """Who was treated: patients, procedures, tumors (marts.dim_patient, fct_procedure,
    fct_tumor)."""

    patients: int
    women: int
    age_years: Summary
    procedures: int
    guidance: dict[str, int]
    tumors: int
    metastases: int
    primary: int
    diameter_cm: Summary
    follow_up_years: Summary

    def to_json(self) -> dict:
        return {
            "patients": self.patients,
            "women": self.women,
            "age_years": self.age_years.to_json(),
            "procedures": self.procedures,
            "guidance": dict(self.guidance),
            "tumors": self.tumors,
            "metastases": self.metastases,
            "primary": self.primary,
            "diameter_cm": self.diameter_cm.to_json(with_median=True),
            "follow_up_years": self.follow_up_years.to_json(),
        }


@dataclass(frozen=True)
class AttritionStep:
    """One step of the tumors' inclusion flowchart (marts.fct_tumor_attrition)."""

    step: str
    tumors_remaining: int
    tumors_excluded: int
    exclusion_reason: str | None


# --- everything ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    """The night's analysis. `to_json()` is metrics.json without its `run` block;
    `attrition` (None when the mart is absent) is for the report's flowchart only."""

    cohort: Cohort
    technical_success: Outcome
    technique_efficacy: Outcome
    local_tumor_progression: Outcome
    adverse_events: Outcome
    ltp_free_survival: LtpFreeSurvival
    cox: CoxModel
    cox_clustered: CoxModel
    overall_survival: OverallSurvival
    ltp_cumulative_incidence: CumulativeIncidence
    attrition: tuple[AttritionStep, ...] | None = None
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "cohort": self.cohort.to_json(),
            "technical_success": self.technical_success.to_json(),
            "technique_efficacy": self.technique_efficacy.to_json(),
            "local_tumor_progression": self.local_tumor_progression.to_json(),
            "adverse_events": self.adverse_events.to_json(),
            "ltp_free_survival": self.ltp_free_survival.to_json(),
            "cox": self.cox.to_json(),
            "cox_clustered": self.cox_clustered.to_json(),
            "overall_survival": self.overall_survival.to_json(),
            "ltp_cumulative_incidence": self.ltp_cumulative_incidence.to_json(),
        }
