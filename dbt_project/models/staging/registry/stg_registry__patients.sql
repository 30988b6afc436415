-- A patients.csv row checked against the extract contract (its problems in _problems), typed,
-- codes canonical, the MRN also as its keyed hash (patient_key). One row per ledger row (every
-- version, every night, bad rows too), so that the registry's rules downstream are functions of
-- it. Incremental by appending the ledger rows landed since the last build: each row's checks
-- involve only its own file, which a run lands whole.
{{ config(
    materialized='incremental',
    incremental_strategy='append',
    on_schema_change='fail'
) }}

with

checked as (
    {{ checked_ledger_rows('patients') }}
),

typed as (
    select
        patient_mrn,
        {{ pseudonymize('patient_mrn') }} as patient_key,
        {{ canonical_code('patients', 'sex') }} as sex,
        {{ parsed_date('birth_date') }} as birth_date,
        {{ parsed_date('death_date') }} as death_date,
        {{ parsed_date('last_contact_date') }} as last_contact_date,
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
