-- Rule: every counted ledger row and, if it has no problem of its own, its version of each
-- patient with its verdict (current, superseded, deleted). A patient has no parent, so no version
-- breaks a reference rule.
-- Source: docs/extract-contract.md ("Identity and versions").
with

judged as {{ inlined() }} (
    select
        counted.*,
        {{ no_problem() }}
            as _reference_problem
    from ({{ counted_rows(ref('stg_registry__patients')) }}) as counted
),

verdicts as (
    {{ version_verdicts('judged', 'patient_key') }}
)

select * from verdicts  -- noqa: AM04
