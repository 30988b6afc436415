-- Current live version of each adverse event, typed. The free-text description stays in
-- staging (it may hold identifiers) and is not carried into the marts.
{{ config(unique_key='event_key') }}

with

current_rows as (
    {{ current_version(source('registry', 'adverse_events'), 'event_id') }}
),

renamed as (
    select
        event_id as event_key,
        procedure_id as procedure_key,
        cast(onset_date as date) as onset_date,
        cast(ctcae_grade as integer) as ctcae_grade,
        description,
        _extract_date,
        _source_file,
        _source_line,
        _id_loaded_at as _loaded_at,
        {{ build_time() }} as _built_at,
        _is_deleted
    from current_rows
)

select * from renamed
