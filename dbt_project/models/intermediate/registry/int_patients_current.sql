-- The registry's patients: the current live version of each (latest extract, then latest
-- line; deleted ids gone). Holds birth_date (PHI, the registry's store only).
-- Source: docs/extract-contract.md ("Identity and versions").
-- A view: a filter on the versions table, read by a few models; nothing to store twice.
{{ config(materialized='view') }}

select
    patient_key,
    sex,
    birth_date,
    death_date,
    last_contact_date,
    _extract_date,
    _source_file,
    _source_line
from {{ ref('int_patients_versions') }}
where _verdict = 'current'
