-- Definition: each adverse event placed relative to its procedure. onset_day = onset_date -
-- procedure_date in calendar days; the event belongs to the procedure's 30-day window when
-- onset_day is 0 to 30 (inclusive); it is major when its CTCAE grade is >= 3. Events outside the
-- window stay here, flagged.
-- Source: docs/outcome-definitions.md; Ahmed et al. Radiology 2014;273:241-260 (complications
-- within 30 days; major = CTCAE grade 3 or higher); Glazer et al. AJR 2017;209:1381-1389.
with

adverse_events as (
    select * from {{ ref('int_adverse_events_current') }}
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

placed as (
    select
        adverse_events.event_key,
        adverse_events.procedure_key,
        procedures.patient_key,
        adverse_events.onset_date,
        adverse_events.ctcae_grade,
        {{ days_between('procedures.procedure_date', 'adverse_events.onset_date') }}
            as onset_day
    from adverse_events
    inner join procedures on adverse_events.procedure_key = procedures.procedure_key
),

flagged as (
    select
        event_key,
        procedure_key,
        patient_key,
        onset_date,
        onset_day,
        ctcae_grade,
        onset_day between 0 and 30 as in_30_day_window,
        ctcae_grade >= 3 as is_major
    from placed
)

select * from flagged
