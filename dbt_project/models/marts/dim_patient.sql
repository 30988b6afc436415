-- One row per treated patient (at least one procedure on record: the cohort), with sex, age at
-- first procedure, number of procedures and overall survival. Keyed by the pseudonymous
-- patient_key; no MRN, name or birth date. Registry patients without a live procedure are not
-- part of the cohort and stay in staging.
{{ config(contract=mart_contract()) }}

with

patients as (
    select * from {{ ref('int_patients_current') }}
),

first_procedures as (
    select * from {{ ref('int_patient_first_procedure') }}
),

survival as (
    select * from {{ ref('int_patient_overall_survival') }}
),

final as (
    select
        patients.patient_key,
        patients.sex,
        cast(first_procedures.age_at_first_procedure as integer) as age_at_first_procedure,
        cast(first_procedures.procedure_count as integer) as procedure_count,
        first_procedures.first_procedure_date,
        survival.died,
        survival.overall_survival_years
    from first_procedures
    inner join patients on first_procedures.patient_key = patients.patient_key
    inner join survival on first_procedures.patient_key = survival.patient_key
)

select * from final
