-- Definition: technical success (TS) of a tumor. Evaluable when technical_result is
-- 'complete' or 'incomplete' (the ice ball / ablation zone covered the tumor on intra- or
-- 24-hour post-procedure imaging); success when 'complete'. 'not_assessed' is not evaluable.
-- Source: docs/outcome-definitions.md; Ahmed et al. Radiology 2014;273:241-260 (technical success);
-- Glazer et al. AJR 2017;209:1381-1389 (279/295).
with

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

technical_success as (
    select
        tumor_key,
        technical_result,
        technical_result in ('complete', 'incomplete') as ts_evaluable,
        case
            when technical_result in ('complete', 'incomplete')
                then technical_result = 'complete'
        end as ts_success
    from tumors
)

select * from technical_success
