-- Definition: local tumor progression (LTP) among TE-evaluable tumors. An event when any imaging
-- read dated on or after the technique-efficacy study shows 'residual_tumor' or
-- 'local_progression' (residual tumor at the 3-month study counts, as in the paper); event date =
-- the first such read. Without an event the tumor is censored at its latest non-indeterminate
-- imaging date. ltp_time_years = (event or censoring date - procedure date) / 365.25. Follow-up =
-- (latest imaging date, any finding - procedure date) / 365.25.
-- Source: docs/outcome-definitions.md; Ahmed et al. Radiology 2014;273:241-260 (local tumor
-- progression); Glazer et al. AJR 2017;209:1381-1389 (19 of 30 tumors >= 4 cm progressed, 18 had
-- TE).
with

te_evaluable as (
    select
        tumor_key,
        te_study_date
    from {{ ref('int_tumor_technique_efficacy_study') }}
    where te_evaluable
),

imaging as (
    select * from {{ ref('int_imaging_days_after_procedure') }}
),

timeline as (
    select
        te_evaluable.tumor_key,
        te_evaluable.te_study_date,
        imaging.patient_key,
        imaging.procedure_date,
        min(
            case
                when
                    imaging.imaging_date >= te_evaluable.te_study_date
                    and imaging.finding in ('residual_tumor', 'local_progression')
                    then imaging.imaging_date
            end
        ) as ltp_date,
        max(
            case
                when imaging.finding <> 'indeterminate' then imaging.imaging_date
            end
        ) as last_determinate_imaging_date,
        max(imaging.imaging_date) as last_imaging_date
    from te_evaluable
    inner join imaging on te_evaluable.tumor_key = imaging.tumor_key
    group by
        te_evaluable.tumor_key,
        te_evaluable.te_study_date,
        imaging.patient_key,
        imaging.procedure_date
),

outcome as (
    select
        tumor_key,
        patient_key,
        procedure_date,
        te_study_date,
        ltp_date is not null as ltp_event,
        ltp_date,
        case when ltp_date is null then last_determinate_imaging_date end as ltp_censor_date,
        coalesce(ltp_date, last_determinate_imaging_date) as ltp_end_date,
        last_imaging_date
    from timeline
),

in_years as (
    select
        tumor_key,
        patient_key,
        procedure_date,
        te_study_date,
        ltp_event,
        ltp_date,
        ltp_censor_date,
        last_imaging_date,
        {{ days_to_years(days_between('procedure_date', 'ltp_end_date')) }} as ltp_time_years,
        {{ days_to_years(days_between('procedure_date', 'last_imaging_date')) }}
            as follow_up_years
    from outcome
)

select * from in_years
