-- Rule: every counted ledger row and, if it has no problem of its own, its version of each
-- procedure, judged against the current patients: a live version whose patient does not exist is
-- an orphan, one dated before its patient's birth an impossible date; the id's current version is
-- its latest version that passes (macro version_verdicts).
-- Source: docs/extract-contract.md ("Bad input").
with

versions as {{ inlined() }} (
    {{ counted_rows(ref('stg_registry__procedures')) }}
),

patients as (
    select * from {{ ref('int_patients_current') }}
),

judged as {{ inlined() }} (
    select
        versions.*,
        case
            when versions._is_deleted or {{ problem_count('versions._problems') }} > 0 then null
            when patients.patient_key is null
                then {{ problem('patient_mrn', 'versions.patient_mrn', 'orphan',
                    'no such patient_mrn in patients', 'true') }}
            when versions.procedure_date < patients.birth_date
                then {{ problem('procedure_date', 'cast(versions.procedure_date as string)',
                    'impossible_date', 'procedure before birth', 'true') }}
        end as _reference_problem
    from versions
    left join patients on versions.patient_key = patients.patient_key
),

verdicts as (
    {{ version_verdicts('judged', 'procedure_key') }}
)

select * from verdicts  -- noqa: AM04
