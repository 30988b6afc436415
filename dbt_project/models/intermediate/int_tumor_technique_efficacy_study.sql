-- Definition: the technique-efficacy (TE) study of a tumor is its earliest imaging read dated
-- 30 to 180 days (inclusive) after its procedure whose finding is not 'indeterminate'. A tumor
-- is TE-evaluable when it has one. TE succeeds when that study shows 'no_tumor'; when several
-- determinate reads share that date, all of them must be 'no_tumor'.
-- Source: metrics.md; Ahmed et al. Radiology 2014;273:241-260 (technique efficacy assessed
-- at a prespecified follow-up); Glazer et al. AJR 2017;209:1381-1389.
-- Incremental by tumor: a night recomputes the tumors whose reads int_imaging_days_after_
-- procedure rebuilt (_built_at), new and deleted tumors, and TE-evaluable tumors left without
-- a determinate read in the window; tombstones remove the deleted ones.
{{ config(
    materialized='incremental',
    unique_key='tumor_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ remove_deleted_ids() }}"
) }}

with

tumors as (
    select * from {{ ref('stg_registry__tumors') }}
),

imaging as (
    select * from {{ ref('int_imaging_days_after_procedure') }}
),

{% if is_incremental() %}
    touched_tumors as (
        -- its reads were rebuilt since this model's last build
        select tumor_key
        from {{ ref('int_imaging_days_after_procedure') }}
        where _built_at > ({{ incremental_watermark('_built_at') }})
        union
        -- a new tumor
        {{ keys_missing_from(ref('stg_registry__tumors'), this, 'tumor_key') }}
        union
        -- a deleted tumor
        {{ keys_missing_from(this, ref('stg_registry__tumors'), 'tumor_key') }}
        union
        -- a TE study whose reads are all gone
        {{ keys_missing_from(
            this, ref('int_imaging_days_after_procedure'), 'tumor_key',
            only='missing.te_evaluable',
            condition="present.days_after_procedure between 30 and 180"
                ~ " and present.finding <> 'indeterminate'"
        ) }}
    ),
{% endif %}

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
        and {{ touched_only('tumor_key') }}
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
        studies.te_success,
        {{ build_time() }} as _built_at,
        false as _is_deleted
    from tumors
    left join studies on tumors.tumor_key = studies.tumor_key
    where {{ touched_only('tumors.tumor_key') }}
)

{% if is_incremental() %}
    select * from per_tumor
    union all
    select
        touched_tumors.tumor_key,
        null as te_study_date,
        null as te_study_day,
        null as te_evaluable,
        null as te_success,
        null as _built_at,
        true as _is_deleted
    from touched_tumors
    where touched_tumors.tumor_key not in (select per_tumor.tumor_key from per_tumor)
{% else %}
    select * from per_tumor
{% endif %}
