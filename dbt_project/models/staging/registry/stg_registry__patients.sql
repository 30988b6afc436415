-- Current live version of each patient. The MRN is replaced by its keyed hash (patient_key);
-- the name stops here; birth_date stays in staging only (int_patient_first_procedure turns it
-- into an age).
{{ config(unique_key='patient_key') }}

with

current_rows as (
    {{ current_version(source('registry', 'patients'), 'patient_mrn') }}
),

renamed as (
    select
        {{ pseudonymize('patient_mrn') }} as patient_key,
        upper(sex) as sex,
        cast(birth_date as date) as birth_date,
        cast(death_date as date) as death_date,
        cast(last_contact_date as date) as last_contact_date,
        _extract_date,
        _source_file,
        _source_line,
        _id_loaded_at as _loaded_at,
        {{ build_time() }} as _built_at,
        _is_deleted
    from current_rows
)

select * from renamed
