-- Example queries against the published warehouse's marts (DuckDB SQL).
--
-- Open the file read-only, so the nightly run can still replace it:
--   duckdb -readonly warehouse/cryoreg.duckdb          (DuckDB command line)
--   python -c "import duckdb; con = duckdb.connect('warehouse/cryoreg.duckdb', read_only=True)"
-- Each query starts with a `-- name:` line; tests/test_analyst_sql.py runs every one of them
-- against the paper-calibrated demo warehouse and checks the paper's numbers.
-- Definitions (technique efficacy, LTP, the 30-day window, size groups) are computed in dbt:
-- the marts hold them as columns, so the queries only count.

-- name: paper_cohort
-- Patients, women, age at the first procedure (paper: 186 / 95, mean 60.9, 29-88).
select
    count(*) as patients,
    count_if(sex = 'F') as women,
    round(avg(age_at_first_procedure), 1) as age_mean,
    min(age_at_first_procedure) as age_min,
    max(age_at_first_procedure) as age_max
from marts.dim_patient;

-- name: paper_guidance
-- Procedures by guidance modality (paper: CT 126, MRI 100, PET/CT 10).
select
    guidance,
    count(*) as procedures
from marts.fct_procedure
group by guidance
order by procedures desc;

-- name: paper_technical_success
-- Technical success among tumors whose result was assessed (paper: 279/295).
select
    count_if(ts_success) as successes,
    count(*) as evaluable,
    round(100.0 * count_if(ts_success) / count(*), 1) as pct
from marts.fct_tumor
where ts_evaluable;

-- name: paper_technique_efficacy
-- Technique efficacy by size group, and all tumors (paper: 213/228, 18/30, 231/258).
select
    coalesce(size_group, 'all') as size_group,
    count_if(te_success) as successes,
    count(*) as evaluable,
    round(100.0 * count_if(te_success) / count(*), 1) as pct
from marts.fct_tumor
where te_evaluable
group by rollup (size_group)
order by size_group;

-- name: paper_local_tumor_progression
-- Local tumor progression by size group, and all tumors (paper: 41/228, 19/30, 60/258).
select
    coalesce(size_group, 'all') as size_group,
    count_if(ltp_event) as progressed,
    count(*) as evaluable,
    round(100.0 * count_if(ltp_event) / count(*), 1) as pct
from marts.fct_tumor
where te_evaluable
group by rollup (size_group)
order by size_group;

-- name: paper_adverse_events
-- Any and major (CTCAE >= 3) adverse events within 30 days, per procedure, by the size group
-- of its largest tumor (paper: any 80/236, major 25/236, 17/195 < 4 cm, 8/41 >= 4 cm).
select
    coalesce(size_group, 'all') as size_group,
    count_if(any_ae) as any_ae,
    count_if(major_ae) as major_ae,
    count(*) as procedures,
    round(100.0 * count_if(major_ae) / count(*), 1) as major_pct
from marts.fct_procedure
group by rollup (size_group)
order by size_group;

-- name: ltp_by_histology
-- Local tumor progression by histology among TE-evaluable tumors.
select
    histology,
    count_if(ltp_event) as progressed,
    count(*) as evaluable,
    round(100.0 * count_if(ltp_event) / count(*), 1) as pct
from marts.fct_tumor
where te_evaluable
group by histology
order by evaluable desc, histology;

-- name: ae_by_guidance
-- Adverse events within 30 days by guidance modality.
select
    guidance,
    count_if(any_ae) as any_ae,
    count_if(major_ae) as major_ae,
    count(*) as procedures,
    round(100.0 * count_if(any_ae) / count(*), 1) as any_pct,
    round(100.0 * count_if(major_ae) / count(*), 1) as major_pct
from marts.fct_procedure
group by guidance
order by procedures desc;

-- name: ae_grades_in_window
-- Adverse events in the 30-day window by CTCAE grade (events, not procedures).
select
    ctcae_grade,
    count(*) as events,
    count(distinct procedure_key) as procedures
from marts.fct_adverse_event
where in_30_day_window
group by ctcae_grade
order by ctcae_grade;

-- name: ltp_competing_outcomes
-- Each TE-evaluable tumor's outcome with death as a competing risk, by size group.
select
    size_group,
    count_if(ltp_competing_event = 'ltp') as progressed,
    count_if(ltp_competing_event = 'death') as died_without_progression,
    count_if(ltp_competing_event = 'censored') as censored,
    count(*) as evaluable
from marts.fct_tumor
where te_evaluable
group by size_group
order by size_group;

-- name: overall_survival_by_sex
-- Deaths and crude follow-up per patient from the first procedure, by sex.
select
    sex,
    count(*) as patients,
    count_if(died) as deaths,
    round(median(overall_survival_years), 2) as median_years_observed
from marts.dim_patient
group by sex
order by sex;

-- name: tumors_per_patient
-- How many patients had one, two, ... tumors treated (tumors of one patient are not
-- independent: the report's clustered Cox model accounts for it).
select
    tumors,
    count(*) as patients
from (
    select
        patient_key,
        count(*) as tumors
    from marts.fct_tumor
    group by patient_key
)
group by tumors
order by tumors;

-- name: inclusion_flowchart
-- The tumor inclusion steps behind the report's flowchart.
select
    step_order,
    step,
    tumors_remaining,
    tumors_excluded,
    exclusion_reason
from marts.fct_tumor_attrition
order by step_order;

-- name: quarantined_rows_by_reason
-- Data quality: source rows the registry holds back now, by file and reason (an orphan whose
-- parent arrived on a later night is no longer here).
select
    file,
    reason_code,
    count(*) as rows_rejected
from quarantine.rejected_rows
group by file, reason_code
order by rows_rejected desc;
