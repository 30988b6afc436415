-- Current live version of each cryoablation session, typed, codes canonical, the patient's MRN
-- replaced by the same keyed hash as in stg_registry__patients.
{{ config(unique_key='procedure_key') }}

with

current_rows as (
    {{ current_version(source('registry', 'procedures'), 'procedure_id') }}
),

renamed as (
    select
        procedure_id as procedure_key,
        {{ pseudonymize('patient_mrn') }} as patient_key,
        cast(procedure_date as date) as procedure_date,
        upper(guidance) as guidance,
        lower(anesthesia) as anesthesia,
        cast(probe_count as integer) as probe_count,
        _extract_date,
        _source_file,
        _source_line,
        _id_loaded_at as _loaded_at,
        {{ build_time() }} as _built_at,
        _is_deleted
    from current_rows
)

select * from renamed
