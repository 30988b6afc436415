-- Rule: every counted ledger row and, if it has no problem of its own, its version of each
-- imaging read, judged against the current tumors: a live version whose tumor does not exist is
-- an orphan, one dated before the tumor's procedure an impossible date; the id's current version
-- is its latest version that passes (macro version_verdicts).
-- Source: docs/extract-contract.md ("Bad input").
with

versions as {{ inlined() }} (
    {{ counted_rows(ref('stg_registry__imaging')) }}
),

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

judged as {{ inlined() }} (
    select
        versions.*,
        case
            when versions._is_deleted or {{ problem_count('versions._problems') }} > 0 then null
            when tumors.tumor_key is null
                then {{ problem('tumor_id', 'versions.tumor_key', 'orphan',
                    'no such tumor_id in tumors', 'true') }}
            when versions.imaging_date < tumors.procedure_date
                then {{ problem('imaging_date', 'cast(versions.imaging_date as string)',
                    'impossible_date', 'imaging before its procedure', 'true') }}
        end as _reference_problem
    from versions
    left join tumors on versions.tumor_key = tumors.tumor_key
),

verdicts as (
    {{ version_verdicts('judged', 'imaging_key') }}
)

select * from verdicts  -- noqa: AM04
