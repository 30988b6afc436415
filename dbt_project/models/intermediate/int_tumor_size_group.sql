-- Definition: size of a treated tumor. diameter_cm = diameter_mm / 10; size group 'ge4cm' when
-- diameter_mm >= 40, else 'lt4cm'.
-- Source: docs/outcome-definitions.md; Glazer et al. AJR 2017;209:1381-1389 (outcomes compared
-- for tumors < 4 cm and >= 4 cm).
with

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

sized as (
    select
        tumor_key,
        procedure_key,
        diameter_mm,
        diameter_mm / 10 as diameter_cm,
        {{ size_group('diameter_mm') }} as size_group
    from tumors
)

select * from sized
