-- Rule: every counted ledger row and, if it has no problem of its own, its version of each tumor,
-- judged against the current procedures: a live version whose procedure does not exist is an
-- orphan; the id's current version is its latest version that passes (macro version_verdicts).
-- Source: docs/extract-contract.md ("Bad input").
with

versions as {{ inlined() }} (
    {{ counted_rows(ref('stg_registry__tumors')) }}
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

judged as {{ inlined() }} (
    select
        versions.*,
        case
            when versions._is_deleted or {{ problem_count('versions._problems') }} > 0 then null
            when procedures.procedure_key is null
                then {{ problem('procedure_id', 'versions.procedure_key', 'orphan',
                    'no such procedure_id in procedures', 'true') }}
        end as _reference_problem
    from versions
    left join procedures on versions.procedure_key = procedures.procedure_key
),

verdicts as (
    {{ version_verdicts('judged', 'tumor_key') }}
)

select * from verdicts  -- noqa: AM04
