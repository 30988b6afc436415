-- The registry's adverse events: the current live version of each that passes the reference
-- rules against the current procedures. Source: docs/extract-contract.md.
-- A view: a filter on the versions table, read by a few models; nothing to store twice.
{{ config(materialized='view') }}

select
    event_key,
    procedure_key,
    onset_date,
    ctcae_grade,
    description,
    _extract_date,
    _source_file,
    _source_line
from {{ ref('int_adverse_events_versions') }}
where _verdict = 'current'
