-- Current live version of each follow-up imaging read, typed, codes canonical.
{{ config(unique_key='imaging_key') }}

with

current_rows as (
    {{ current_version(source('registry', 'imaging'), 'imaging_id') }}
),

renamed as (
    select
        imaging_id as imaging_key,
        tumor_id as tumor_key,
        cast(imaging_date as date) as imaging_date,
        upper(modality) as modality,
        lower(finding) as finding,
        _extract_date,
        _source_file,
        _source_line,
        _id_loaded_at as _loaded_at,
        {{ build_time() }} as _built_at,
        _is_deleted
    from current_rows
)

select * from renamed
