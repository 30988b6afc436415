-- A tumors.csv row checked against the extract contract (its problems in _problems), typed, codes
-- canonical. One row per ledger row (every version, every night, bad rows too), so that the
-- registry's rules downstream are functions of it. Incremental by appending the ledger rows
-- landed since the last build: each row's checks involve only its own file, which a run lands
-- whole.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

with

checked as (
    {{ checked_ledger_rows('tumors') }}
),

typed as (
    select
        tumor_id as tumor_key,
        procedure_id as procedure_key,
        {{ canonical_code('tumors', 'origin') }} as origin,
        lower(histology) as histology,
        cast({{ parsed_number('liver_segment', 'integer') }} as integer) as liver_segment,
        {{ parsed_number('diameter_mm', 'number') }} as diameter_mm,
        {{ canonical_code('tumors', 'technical_result') }} as technical_result,
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
