-- Definition: size group of a procedure, from its largest treated tumor: 'ge4cm' when that
-- tumor's diameter_mm >= 40, else 'lt4cm'; with the number of tumors treated in the session.
-- Source: docs/outcome-definitions.md ("procedure size group"); Glazer et al. AJR
-- 2017;209:1381-1389 (major adverse events 17/195 vs 8/41 procedures by size).
with

tumors as (
    select * from {{ ref('int_tumor_size_group') }}
),

per_procedure as (
    select
        procedure_key,
        max(diameter_mm) as largest_diameter_mm,
        count(*) as tumor_count
    from tumors
    group by procedure_key
),

grouped as (
    select
        procedure_key,
        largest_diameter_mm,
        {{ size_group('largest_diameter_mm') }} as size_group,
        tumor_count
    from per_procedure
)

select * from grouped
