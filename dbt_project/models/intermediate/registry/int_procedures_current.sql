-- The registry's procedures: the current live version of each that passes the reference
-- rules against the current patients. Source: docs/extract-contract.md.
-- A view: a filter on the versions table, read by a few models; nothing to store twice.
{{ config(materialized='view') }}

select
    procedure_key,
    patient_key,
    procedure_date,
    guidance,
    anesthesia,
    probe_count,
    _extract_date,
    _source_file,
    _source_line
from {{ ref('int_procedures_versions') }}
where _verdict = 'current'
