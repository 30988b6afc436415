-- Definition: adverse-event outcome of a procedure, counting only events in its 30-day window
-- (onset 0-30 days): any AE = at least one such event; major AE = at least one of CTCAE
-- grade >= 3; the highest grade among them (null when none). One row per procedure with at
-- least one adverse event on record; procedures without any have no row (no AE).
-- Source: docs/outcome-definitions.md; Ahmed et al. Radiology 2014;273:241-260; Glazer et al. AJR
-- 2017;209:1381-1389 (any AE 80/236, major AE 25/236).
with

adverse_events as (
    select * from {{ ref('int_procedure_adverse_events_30d') }}
),

per_procedure as (
    select
        procedure_key,
        sum(case when in_30_day_window then 1 else 0 end) as ae_count_30d,
        sum(case when in_30_day_window and is_major then 1 else 0 end) as major_ae_count_30d,
        max(case when in_30_day_window then ctcae_grade end) as max_ctcae_grade
    from adverse_events
    group by procedure_key
),

outcome as (
    select
        procedure_key,
        ae_count_30d,
        ae_count_30d > 0 as any_ae,
        major_ae_count_30d > 0 as major_ae,
        max_ctcae_grade
    from per_procedure
)

select * from outcome
