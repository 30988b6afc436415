-- Definition: the tumor inclusion flowchart, one row per step. Step 1: all treated tumors. Step
-- 2: technical-success evaluable (excluded: technical result not assessed). Step 3: technique-
-- efficacy evaluable among those (excluded: no determinate imaging 30-180 days after the
-- procedure); a tumor counts at step 3 only when it is both TS- and TE-evaluable, so each step is
-- a subset of the one before.
-- Source: docs/outcome-definitions.md; Glazer et al. AJR 2017;209:1381-1389 (299 tumors, 295 for
-- technical success, 258 for technique efficacy).
with

technical_success as (
    select * from {{ ref('int_tumor_technical_success') }}
),

technique_efficacy as (
    select * from {{ ref('int_tumor_technique_efficacy_study') }}
),

counts as (
    select
        count(*) as all_tumors,
        coalesce(
            sum(case when technical_success.ts_evaluable then 1 else 0 end), 0
        ) as ts_evaluable,
        coalesce(
            sum(
                case
                    when technical_success.ts_evaluable and technique_efficacy.te_evaluable
                        then 1
                    else 0
                end
            ),
            0
        ) as te_evaluable
    from technical_success
    inner join technique_efficacy
        on technical_success.tumor_key = technique_efficacy.tumor_key
),

steps as (
    select
        1 as step_order,
        'all treated tumors' as step,
        all_tumors as tumors_remaining,
        0 as tumors_excluded,
        cast(null as {{ dbt.type_string() }}) as exclusion_reason
    from counts
    union all
    select
        2 as step_order,
        'technical success evaluable' as step,
        ts_evaluable as tumors_remaining,
        all_tumors - ts_evaluable as tumors_excluded,
        'technical result not assessed' as exclusion_reason
    from counts
    union all
    select
        3 as step_order,
        'technique efficacy evaluable' as step,
        te_evaluable as tumors_remaining,
        ts_evaluable - te_evaluable as tumors_excluded,
        'no determinate imaging 30-180 days after the procedure' as exclusion_reason
    from counts
)

select * from steps
