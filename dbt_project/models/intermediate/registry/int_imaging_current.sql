-- The registry's follow-up imaging reads: the current live version of each that passes the
-- reference rules against the current tumors. Source: docs/extract-contract.md.
-- A view: a filter on the versions table, read by a few models; nothing to store twice.
{{ config(materialized='view') }}

select
    imaging_key,
    tumor_key,
    imaging_date,
    modality,
    finding,
    _extract_date,
    _source_file,
    _source_line
from {{ ref('int_imaging_versions') }}
where _verdict = 'current'
