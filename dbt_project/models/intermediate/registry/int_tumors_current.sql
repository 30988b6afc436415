-- The registry's treated tumors: the current live version of each that passes the reference
-- rules against the current procedures, with that procedure's date (the anchor its imaging
-- reads may not precede). Source: docs/extract-contract.md.
-- A view: a filter on the versions table, read by a few models; nothing to store twice.
{{ config(materialized='view') }}

with

tumors as (
    select * from {{ ref('int_tumors_versions') }}
    where _verdict = 'current'
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

anchored as (
    select
        tumors.tumor_key,
        tumors.procedure_key,
        procedures.procedure_date,
        tumors.origin,
        tumors.histology,
        tumors.liver_segment,
        tumors.diameter_mm,
        tumors.technical_result,
        tumors._extract_date,
        tumors._source_file,
        tumors._source_line
    from tumors
    inner join procedures on tumors.procedure_key = procedures.procedure_key
)

select * from anchored
