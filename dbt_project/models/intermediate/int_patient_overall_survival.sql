-- Definition: overall survival from a patient's first procedure. Event = death (death_date
-- known); otherwise censored at the last date the patient was known alive: the latest of the
-- first procedure date, last_contact_date and any imaging date of the patient's tumors.
-- overall_survival_years = (death or censoring date - first procedure date) / 365.25.
-- Source: docs/outcome-definitions.md (years = days / 365.25); Glazer et al. AJR
-- 2017;209:1381-1389 (overall survival beside tumor outcomes).
with

patients as (
    select * from {{ ref('int_patients_current') }}
),

first_procedures as (
    select * from {{ ref('int_patient_first_procedure') }}
),

imaging as (
    select * from {{ ref('int_imaging_days_after_procedure') }}
),

alive_dates as (
    select
        patient_key,
        first_procedure_date as alive_date
    from first_procedures
    union all
    select
        patient_key,
        last_contact_date as alive_date
    from patients
    where last_contact_date is not null
    union all
    -- one row per patient, not per read: the max of the maxes is the same date, and the
    -- union below then groups ~3 rows per patient instead of ~12
    select
        patient_key,
        max(imaging_date) as alive_date
    from imaging
    group by patient_key
),

last_alive as (
    select
        patient_key,
        max(alive_date) as last_known_alive_date
    from alive_dates
    group by patient_key
),

survival as (
    select
        first_procedures.patient_key,
        first_procedures.first_procedure_date,
        patients.death_date is not null as died,
        coalesce(patients.death_date, last_alive.last_known_alive_date) as survival_end_date
    from first_procedures
    inner join patients on first_procedures.patient_key = patients.patient_key
    inner join last_alive on first_procedures.patient_key = last_alive.patient_key
),

in_years as (
    select
        patient_key,
        died,
        survival_end_date,
        {{ days_to_years(days_between('first_procedure_date', 'survival_end_date')) }}
            as overall_survival_years
    from survival
)

select * from in_years
