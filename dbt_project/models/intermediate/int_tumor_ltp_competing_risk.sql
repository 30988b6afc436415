-- Definition: local tumor progression with death as a competing risk, per TE-evaluable tumor. The
-- tumor's outcome is 'ltp' when it progressed (ltp_event, at ltp_time_years); else 'death' when
-- its patient died (death date known), at the time from the tumor's procedure to death; else
-- 'censored' at ltp_time_years (latest non-indeterminate imaging). A death before the latest
-- imaging of the tumor cannot happen in consistent data; the time is then never earlier than
-- ltp_time_years. death_time_years = (death date - procedure date) / 365.25.
-- Source: docs/outcome-definitions.md (LTP, years = days / 365.25); Aalen-Johansen cumulative
-- incidence as in Putter et al. Stat Med 2007;26:2389-2430 (competing risks: tutorial in
-- biostatistics). It carries the tumor's progression (int_tumor_ltp_event) along, so that the
-- tumor mart reads progression and competing risk from one place.
with

progression as (
    select * from {{ ref('int_tumor_ltp_event') }}
),

survival as (
    select * from {{ ref('int_patient_overall_survival') }}
),

with_death as (
    select
        progression.tumor_key,
        progression.ltp_event,
        progression.ltp_date,
        progression.ltp_time_years,
        progression.follow_up_years,
        survival.died as patient_died,
        case
            when survival.died
                then
                    {{ days_to_years(
                        days_between('progression.procedure_date', 'survival.survival_end_date')
                    ) }}
        end as death_time_years
    from progression
    inner join survival on progression.patient_key = survival.patient_key
),

outcome as (
    select
        tumor_key,
        ltp_event,
        ltp_date,
        ltp_time_years,
        follow_up_years,
        patient_died,
        death_time_years,
        case
            when ltp_event then 'ltp'
            when patient_died then 'death'
            else 'censored'
        end as ltp_competing_event,
        case
            when ltp_event then ltp_time_years
            when patient_died then greatest(death_time_years, ltp_time_years)
            else ltp_time_years
        end as ltp_competing_time_years
    from with_death
)

select * from outcome
