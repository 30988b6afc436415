-- Definition: the technique-efficacy (TE) study of a tumor is its earliest imaging read dated 30
-- to 180 days (inclusive) after its procedure whose finding is not 'indeterminate'. A tumor is
-- TE-evaluable when it has one. TE succeeds when that study shows 'no_tumor'; when several
-- determinate reads share that date, all of them must be 'no_tumor'.
-- Source: docs/outcome-definitions.md; Ahmed et al. Radiology 2014;273:241-260 (technique
-- efficacy assessed at a prespecified follow-up); Glazer et al. AJR 2017;209:1381-1389.
with

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

imaging as (
    select * from {{ ref('int_imaging_days_after_procedure') }}
),

determinate_in_window as (
    select
        tumor_key,
        imaging_date,
        days_after_procedure,
        finding
    from imaging
    where
        days_after_procedure between 30 and 180
        and finding <> 'indeterminate'
),

study_dates as (
    select
        tumor_key,
        min(imaging_date) as te_study_date
    from determinate_in_window
    group by tumor_key
),

studies as (
    select
        study_dates.tumor_key,
        study_dates.te_study_date,
        min(determinate_in_window.days_after_procedure) as te_study_day,
        min(
            case when determinate_in_window.finding = 'no_tumor' then 1 else 0 end
        ) = 1 as te_success
    from study_dates
    inner join determinate_in_window
        on
            study_dates.tumor_key = determinate_in_window.tumor_key
            and study_dates.te_study_date = determinate_in_window.imaging_date
    group by study_dates.tumor_key, study_dates.te_study_date
),

per_tumor as (
    select
        tumors.tumor_key,
        studies.te_study_date,
        studies.te_study_day,
        studies.tumor_key is not null as te_evaluable,
        studies.te_success
    from tumors
    left join studies on tumors.tumor_key = studies.tumor_key
)

select * from per_tumor
