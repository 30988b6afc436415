-- An imaging.csv row (a follow-up read of one tumor) checked against the extract contract (its
-- problems in _problems), typed, codes canonical. One row per ledger row (every version, every
-- night, bad rows too), so that the registry's rules downstream are functions of it. Incremental
-- by appending the ledger rows landed since the last build: each row's checks involve only its
-- own file, which a run lands whole.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

with

checked as (
    {{ checked_ledger_rows('imaging') }}
),

typed as (
    select
        imaging_id as imaging_key,
        tumor_id as tumor_key,
        {{ parsed_date('imaging_date') }} as imaging_date,
        {{ canonical_code('imaging', 'modality') }} as modality,
        {{ canonical_code('imaging', 'finding') }} as finding,
        _is_deleted,
        _problems,
        _extract_date,
        _source_file,
        _source_line,
        _run_id,
        _loaded_at
    from checked
)

select * from typed
