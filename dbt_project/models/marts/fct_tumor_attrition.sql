-- The tumor inclusion flowchart (all treated -> technical success evaluable -> technique
-- efficacy evaluable), one row per step, for the report.
{{ config(contract=mart_contract()) }}

with

steps as (
    select * from {{ ref('int_tumor_attrition') }}
),

final as (
    select
        cast(step_order as integer) as step_order,
        step,
        cast(tumors_remaining as integer) as tumors_remaining,
        cast(tumors_excluded as integer) as tumors_excluded,
        exclusion_reason
    from steps
)

select * from final
