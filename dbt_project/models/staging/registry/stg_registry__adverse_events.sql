-- An adverse_events.csv row checked against the extract contract (its problems in _problems),
-- typed. One row per ledger row (every version, every night, bad rows too), so that the
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
    {{ checked_ledger_rows('adverse_events') }}
),

typed as (
    select
        event_id as event_key,
        procedure_id as procedure_key,
        {{ parsed_date('onset_date') }} as onset_date,
        cast({{ parsed_number('ctcae_grade', 'integer') }} as integer) as ctcae_grade,
        description,
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
