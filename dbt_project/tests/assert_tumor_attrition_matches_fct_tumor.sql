-- The flowchart's counts are the counts of fct_tumor: all tumors, TS-evaluable, and TS- and
-- TE-evaluable; and each step's exclusions are the previous step's remainder minus its own.
with

tumors as (
    select
        count(*) as all_tumors,
        sum(case when ts_evaluable then 1 else 0 end) as ts_evaluable,
        sum(case when ts_evaluable and te_evaluable then 1 else 0 end) as te_evaluable
    from {{ ref('fct_tumor') }}
),

steps as (
    select
        step_order,
        tumors_remaining,
        tumors_excluded,
        lag(tumors_remaining) over (order by step_order) as previous_remaining
    from {{ ref('fct_tumor_attrition') }}
)

select steps.*
from steps
cross join tumors
where
    (steps.step_order = 1 and steps.tumors_remaining <> tumors.all_tumors)
    or (steps.step_order = 2 and steps.tumors_remaining <> coalesce(tumors.ts_evaluable, 0))
    or (steps.step_order = 3 and steps.tumors_remaining <> coalesce(tumors.te_evaluable, 0))
    or (
        steps.step_order > 1
        and steps.tumors_excluded <> steps.previous_remaining - steps.tumors_remaining
    )
