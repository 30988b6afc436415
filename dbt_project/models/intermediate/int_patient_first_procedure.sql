-- Definition: a patient's first cryoablation and age at it, in completed years from
-- birth_date to the first procedure_date (one less than the difference of the years while
-- the birthday has not yet come that year); with the patient's number of procedures.
-- Patients without a procedure have no row.
-- Source: docs/outcome-definitions.md ("age: completed years from birth_date to the patient's first
-- procedure_date"); Glazer et al. AJR 2017;209:1381-1389 (mean age 60.9, 29-88).
with

patients as (
    select * from {{ ref('int_patients_current') }}
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

per_patient as (
    select
        patient_key,
        min(procedure_date) as first_procedure_date,
        count(*) as procedure_count
    from procedures
    group by patient_key
),

aged as (
    select
        per_patient.patient_key,
        per_patient.first_procedure_date,
        {{ completed_years('patients.birth_date', 'per_patient.first_procedure_date') }}
            as age_at_first_procedure,
        per_patient.procedure_count
    from per_patient
    inner join patients on per_patient.patient_key = patients.patient_key
)

select * from aged
