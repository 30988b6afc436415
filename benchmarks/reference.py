"""The bare reference: the fixed keys of metrics.json from the extract CSVs, in one process.

Plain DuckDB SQL over the CSV files + scipy + lifelines, written from metrics.md's definitions
and not from the dbt models, so that it both bounds what the pipeline's orchestration, checks
and layering cost and cross-checks its numbers. No validation, no quarantine, no warehouse:
it trusts the files (the benchmark feeds it clean synthetic extracts).

    python benchmarks/reference.py EXTRACTS_ROOT OUT.json
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

ENTITIES = {
    "patients": "patient_mrn",
    "procedures": "procedure_id",
    "tumors": "tumor_id",
    "imaging": "imaging_id",
    "adverse_events": "event_id",
}
YEARS = (1, 2, 3, 5)


def _num(x):
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def load_current(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """One view per entity: latest version per id over all extract folders, deletions dropped."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name[:1].isdigit())
    for entity, key in ENTITIES.items():
        files = [str(f / f"{entity}.csv") for f in folders if (f / f"{entity}.csv").exists()]
        parts = []
        for path in files:
            date = Path(path).parent.name
            with open(path, encoding="utf-8-sig") as handle:
                header = [h.strip().lower() for h in handle.readline().split(",")]
            status = "" if "record_status" in header else "null::varchar as record_status, "
            parts.append(
                f"select *, {status}date '{date}' as _x, row_number() over () as _l "
                f"from read_csv('{path}', all_varchar = true, union_by_name = true)"
            )
        union = " union all by name ".join(parts)
        con.execute(
            f"""create temp table {entity} as
            select * exclude (_x, _l, _rn) from (
                select *, row_number() over (partition by trim({key})
                                             order by _x desc, _l desc) as _rn
                from ({union}))
            where _rn = 1 and coalesce(lower(trim(record_status)), '') <> 'deleted'"""
        )


TUMOR_SQL = """
with pr as (
    select trim(procedure_id) as pid, trim(patient_mrn) as mrn,
           cast(trim(procedure_date) as date) as pdate, upper(trim(guidance)) as guidance
    from procedures),
tu as (
    select trim(tumor_id) as tid, trim(procedure_id) as pid, lower(trim(origin)) as origin,
           cast(trim(diameter_mm) as double) as mm, lower(trim(technical_result)) as tr
    from tumors),
im as (
    select trim(tumor_id) as tid, cast(trim(imaging_date) as date) as idate,
           lower(trim(finding)) as finding
    from imaging),
t as (select tu.*, pr.pdate from tu join pr using (pid)),
first_study as (
    select im.tid, min(im.idate) as te_date
    from im join t using (tid)
    where im.finding <> 'indeterminate' and im.idate - t.pdate between 30 and 180
    group by im.tid),
per_tumor as (
    select t.tid,
           bool_and(im.finding = 'no_tumor')
               filter (where im.idate = fs.te_date and im.finding <> 'indeterminate') as te_ok,
           min(im.idate) filter (where im.idate >= fs.te_date
                                 and im.finding in ('residual_tumor', 'local_progression'))
               as ltp_date,
           max(im.idate) filter (where im.finding <> 'indeterminate') as last_determinate,
           max(im.idate) as last_any
    from t join first_study fs using (tid) join im using (tid)
    group by t.tid)
select t.tid, t.origin, t.mm, t.tr, t.pdate, t.mm >= 40 as ge4,
       p.tid is not null as te_evaluable, p.te_ok,
       p.ltp_date is not null as ltp_event,
       (coalesce(p.ltp_date, p.last_determinate) - t.pdate) / 365.25 as ltp_years,
       (p.last_any - t.pdate) / 365.25 as follow_up_years
from t left join per_tumor p using (tid)
"""

PROCEDURE_SQL = """
with pr as (
    select trim(procedure_id) as pid, cast(trim(procedure_date) as date) as pdate
    from procedures),
ae as (
    select trim(procedure_id) as pid, cast(trim(onset_date) as date) as onset,
           cast(trim(ctcae_grade) as integer) as grade
    from adverse_events),
size as (select trim(procedure_id) as pid, max(cast(trim(diameter_mm) as double)) >= 40 as ge4
         from tumors group by all),
win as (select ae.pid, max(ae.grade) as worst
        from ae join pr using (pid) where ae.onset - pr.pdate between 0 and 30 group by all)
select count(*) as n,
       count(win.pid) as any_ae,
       count(*) filter (where win.worst >= 3) as major,
       count(*) filter (where not size.ge4) as n_lt,
       count(*) filter (where not size.ge4 and win.worst >= 3) as major_lt,
       count(*) filter (where size.ge4) as n_ge,
       count(*) filter (where size.ge4 and win.worst >= 3) as major_ge
from pr left join win using (pid) left join size using (pid)
"""

COHORT_SQL = """
with pr as (
    select trim(patient_mrn) as mrn, cast(trim(procedure_date) as date) as pdate,
           upper(trim(guidance)) as guidance
    from procedures),
first as (select mrn, min(pdate) as first_date from pr group by mrn),
pat as (
    select first.*, upper(trim(p.sex)) as sex, cast(trim(p.birth_date) as date) as birth
    from first join patients p on trim(p.patient_mrn) = first.mrn),
aged as (
    select sex, date_diff('year', birth, first_date)
               - case when strftime(first_date, '%m%d') < strftime(birth, '%m%d')
                      then 1 else 0 end as age
    from pat)
select count(*), count(*) filter (where sex = 'F'), avg(age), min(age), max(age),
       (select count(*) from pr),
       (select count(*) filter (where guidance = 'CT') from pr),
       (select count(*) filter (where guidance = 'MRI') from pr),
       (select count(*) filter (where guidance = 'PET/CT') from pr)
from aged
"""


def proportion(k, n) -> dict:
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n == 0:
        return {"k": k, "n": n, "pct": None, "ci95": [None, None]}
    low = 0.0 if k == 0 else float(beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(0.975, k + 1, n - k))
    return {"k": k, "n": n, "pct": 100.0 * k / n, "ci95": [low, high]}


def tests(a: dict, b: dict) -> dict:
    from scipy.stats import chi2_contingency, fisher_exact

    if a["n"] == 0 or b["n"] == 0:
        return {"p_chi2": None, "p_fisher": None}
    table = np.array([[a["k"], a["n"] - a["k"]], [b["k"], b["n"] - b["k"]]])
    fisher = float(fisher_exact(table).pvalue)
    try:
        chi2 = _num(chi2_contingency(table, correction=False).pvalue)
    except ValueError:  # a zero margin
        chi2 = None
    return {"p_chi2": chi2, "p_fisher": fisher}


def km(time_: np.ndarray, event: np.ndarray) -> dict:
    from lifelines import KaplanMeierFitter

    out = {"n": int(len(time_)), "events": int(event.sum()), "median_years": None, "at_years": {}}
    if len(time_) == 0:
        for t in YEARS:
            out["at_years"][str(t)] = {"survival": None, "ci95": [None, None], "at_risk": 0}
        return out
    fit = KaplanMeierFitter(alpha=0.05).fit(time_, event_observed=event)
    out["median_years"] = _num(fit.median_survival_time_)
    ci = fit.confidence_interval_survival_function_
    for t in YEARS:
        s = float(fit.survival_function_at_times(t).iloc[0])
        row = ci.iloc[int(np.searchsorted(ci.index.to_numpy(), t, side="right")) - 1]
        interval = [_num(row.iloc[0]), _num(row.iloc[1])] if s > 0 else [None, None]
        out["at_years"][str(t)] = {
            "survival": s,
            "ci95": interval,
            "at_risk": int((time_ >= t).sum()),
        }
    return out


def compute(root: Path) -> dict:
    con = duckdb.connect()
    load_current(con, root)
    cohort = con.execute(COHORT_SQL).fetchall()[0]
    con.execute(f"create temp table tumor as {TUMOR_SQL}")
    tum = con.execute(
        """select count(*), count(*) filter (where origin = 'metastasis'),
                  count(*) filter (where origin = 'primary'),
                  avg(mm) / 10, median(mm) / 10, min(mm) / 10, max(mm) / 10,
                  avg(follow_up_years) filter (where te_evaluable),
                  min(follow_up_years) filter (where te_evaluable),
                  max(follow_up_years) filter (where te_evaluable),
                  count(*) filter (where tr in ('complete', 'incomplete')),
                  count(*) filter (where tr = 'complete')
           from tumor"""
    ).fetchall()[0]
    groups = {}
    for name, cond in (("all", "true"), ("lt4cm", "not ge4"), ("ge4cm", "ge4")):
        groups[name] = con.execute(
            f"""select count(*), count(*) filter (where te_ok),
                       count(*) filter (where ltp_event)
                from tumor where te_evaluable and {cond}"""
        ).fetchall()[0]
    surv = con.execute(
        "select ltp_years, ltp_event, ge4 from tumor where te_evaluable"
    ).fetchnumpy()
    ae = con.execute(PROCEDURE_SQL).fetchall()[0]

    te = {g: proportion(v[1], v[0]) for g, v in groups.items()}
    ltp = {g: proportion(v[2], v[0]) for g, v in groups.items()}
    adverse = {
        "any": proportion(ae[1], ae[0]),
        "major": proportion(ae[2], ae[0]),
        "major_lt4cm": proportion(ae[4], ae[3]),
        "major_ge4cm": proportion(ae[6], ae[5]),
    }
    time_ = np.asarray(surv["ltp_years"], dtype=float)
    event = np.asarray(surv["ltp_event"], dtype=bool)
    ge4 = np.asarray(surv["ge4"], dtype=bool)
    survival = {"all": km(time_, event), "lt4cm": km(time_[~ge4], event[~ge4])}
    survival["ge4cm"] = km(time_[ge4], event[ge4])
    from lifelines.statistics import logrank_test

    survival["logrank_p"] = (
        _num(logrank_test(time_[~ge4], time_[ge4], event[~ge4], event[ge4]).p_value)
        if (~ge4).any() and ge4.any() and event.any()
        else None
    )
    return {
        "schema_version": 1,
        "cohort": {
            "patients": cohort[0],
            "women": cohort[1],
            "age_years": {"mean": cohort[2], "min": cohort[3], "max": cohort[4]},
            "procedures": cohort[5],
            "guidance": {"CT": cohort[6], "MRI": cohort[7], "PET/CT": cohort[8]},
            "tumors": tum[0],
            "metastases": tum[1],
            "primary": tum[2],
            "diameter_cm": {"mean": tum[3], "median": tum[4], "min": tum[5], "max": tum[6]},
            "follow_up_years": {"mean": tum[7], "min": tum[8], "max": tum[9]},
        },
        "technical_success": {"all": proportion(tum[11], tum[10])},
        "technique_efficacy": {**te, **tests(te["lt4cm"], te["ge4cm"])},
        "local_tumor_progression": {**ltp, **tests(ltp["lt4cm"], ltp["ge4cm"])},
        "adverse_events": {**adverse, **tests(adverse["major_lt4cm"], adverse["major_ge4cm"])},
        "ltp_free_survival": survival,
    }


def main(argv: list[str]) -> int:
    began = time.perf_counter()
    metrics = compute(Path(argv[0]))
    Path(argv[1]).write_text(json.dumps(metrics, indent=2, default=float))
    print(f"reference finished in {time.perf_counter() - began:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
