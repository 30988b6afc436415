-- Definition: each follow-up imaging read placed on its tumor's timeline, as calendar days from
-- the tumor's procedure date to the imaging date (0 = day of ablation).
-- Source: docs/outcome-definitions.md ("days between two dates are calendar days"); the day
-- counts feed the technique-efficacy window (30-180 days) and local tumor progression.
with

imaging as (
    select * from {{ ref('int_imaging_current') }}
),

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

placed as (
    select
        imaging.imaging_key,
        imaging.tumor_key,
        tumors.procedure_key,
        procedures.patient_key,
        procedures.procedure_date,
        imaging.imaging_date,
        imaging.finding,
        {{ days_between('procedures.procedure_date', 'imaging.imaging_date') }}
            as days_after_procedure
    from imaging
    inner join tumors on imaging.tumor_key = tumors.tumor_key
    inner join procedures on tumors.procedure_key = procedures.procedure_key
)

select * from placed
