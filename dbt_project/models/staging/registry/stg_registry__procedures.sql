-- A procedures.csv row checked against the extract contract (its problems in _problems), typed,
-- codes canonical, the patient's MRN also as its keyed hash (patient_key). One row per ledger row
-- (every version, every night, bad rows too), so that the registry's rules downstream are
-- functions of it. Incremental by appending the ledger rows landed since the last build: each
-- row's checks involve only its own file, which a run lands whole.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

with

checked as (
    {{ checked_ledger_rows('procedures') }}
),

typed as (
    select
        procedure_id as procedure_key,
        patient_mrn,
        {{ pseudonymize('patient_mrn') }} as patient_key,
        {{ parsed_date('procedure_date') }} as procedure_date,
        {{ canonical_code('procedures', 'guidance') }} as guidance,
        {{ canonical_code('procedures', 'anesthesia') }} as anesthesia,
        cast({{ parsed_number('probe_count', 'integer') }} as integer) as probe_count,
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
