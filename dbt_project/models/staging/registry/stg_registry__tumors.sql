-- Current live version of each treated tumor, typed, codes canonical (lower case).
{{ config(unique_key='tumor_key') }}

with

current_rows as (
    {{ current_version(source('registry', 'tumors'), 'tumor_id') }}
),

renamed as (
    select
        tumor_id as tumor_key,
        procedure_id as procedure_key,
        lower(origin) as origin,
        lower(histology) as histology,
        cast(liver_segment as integer) as liver_segment,
        cast(diameter_mm as double precision) as diameter_mm,
        lower(technical_result) as technical_result,
        _extract_date,
        _source_file,
        _source_line,
        _id_loaded_at as _loaded_at,
        {{ build_time() }} as _built_at,
        _is_deleted
    from current_rows
)

select * from renamed
