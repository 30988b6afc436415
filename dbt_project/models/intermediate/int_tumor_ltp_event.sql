-- Definition: local tumor progression (LTP) among TE-evaluable tumors. An event when any
-- imaging read dated on or after the technique-efficacy study shows 'residual_tumor' or
-- 'local_progression' (residual tumor at the 3-month study counts, as in the paper); event
-- date = the first such read. Without an event the tumor is censored at its latest
-- non-indeterminate imaging date. ltp_time_years = (event or censoring date - procedure date)
-- / 365.25. Follow-up = (latest imaging date, any finding - procedure date) / 365.25.
-- Source: metrics.md; Ahmed et al. Radiology 2014;273:241-260 (local tumor progression);
-- Glazer et al. AJR 2017;209:1381-1389 (19 of 30 tumors >= 4 cm progressed, 18 had TE).
-- Incremental by tumor: a night recomputes the tumors int_tumor_technique_efficacy_study
-- recomputed (it does for every tumor whose reads changed) and removes, by tombstones, those
-- no longer TE-evaluable.
{{ config(
    materialized='incremental',
    unique_key='tumor_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ remove_deleted_ids() }}"
) }}

with

technique_efficacy as (
    select * from {{ ref('int_tumor_technique_efficacy_study') }}
),

{% if is_incremental() %}
    touched_tumors as (
        select tumor_key
        from {{ ref('int_tumor_technique_efficacy_study') }}
        where _built_at > ({{ incremental_watermark('_built_at') }})
        union
        -- no longer TE-evaluable (or deleted)
        {{ keys_missing_from(
            this, ref('int_tumor_technique_efficacy_study'), 'tumor_key',
            condition='present.te_evaluable'
        ) }}
    ),
{% endif %}

te_evaluable as (
    select
        tumor_key,
        te_study_date
    from technique_efficacy
    where
        te_evaluable
        and {{ touched_only('tumor_key') }}
),

imaging as (
    select * from {{ ref('int_imaging_days_after_procedure') }}
    where {{ touched_only('tumor_key') }}
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
            as follow_up_years,
        {{ build_time() }} as _built_at,
        false as _is_deleted
    from outcome
)

{% if is_incremental() %}
    select * from in_years
    union all
    select
        touched_tumors.tumor_key,
        null as patient_key,
        null as procedure_date,
        null as te_study_date,
        null as ltp_event,
        null as ltp_date,
        null as ltp_censor_date,
        null as last_imaging_date,
        null as ltp_time_years,
        null as follow_up_years,
        null as _built_at,
        true as _is_deleted
    from touched_tumors
    where touched_tumors.tumor_key not in (select in_years.tumor_key from in_years)
{% else %}
    select * from in_years
{% endif %}
