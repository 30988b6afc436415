-- Definition: local tumor progression with death as a competing risk, per TE-evaluable tumor.
-- The tumor's outcome is 'ltp' when it progressed (ltp_event, at ltp_time_years); else 'death'
-- when its patient died (death date known), at the time from the tumor's procedure to death;
-- else 'censored' at ltp_time_years (latest non-indeterminate imaging). A death before the
-- latest imaging of the tumor cannot happen in consistent data; the time is then never
-- earlier than ltp_time_years. death_time_years = (death date - procedure date) / 365.25.
-- Source: metrics.md (LTP, years = days / 365.25); Aalen-Johansen cumulative incidence as in
-- Putter et al. Stat Med 2007;26:2389-2430 (competing risks: tutorial in biostatistics).
-- Incremental by tumor: a night recomputes the tumors int_tumor_ltp_event rewrote and the
-- TE-evaluable tumors of the patients whose staging row changed (death_date; survival's other
-- inputs enter only through int_tumor_ltp_event's rows); tumors that left int_tumor_ltp_event
-- are deleted by the post-hook.
-- depends_on: {{ ref('stg_registry__patients') }}
{{ config(
    materialized='incremental',
    unique_key='tumor_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ delete_stale_keys('tumor_key',
        'select tumor_key from ' ~ ref('int_tumor_ltp_event')) }}"
) }}

with

{% if is_incremental() %}
    touched_tumors as (
        -- its progression was recomputed
        {{ keys_rebuilt(ref('int_tumor_ltp_event'), 'tumor_key') }}
        union
        -- its patient changed (death date)
        select progression.tumor_key
        from {{ ref('int_tumor_ltp_event') }} as progression
        where progression.patient_key in (
                {{ keys_rebuilt(ref('stg_registry__patients'), 'patient_key') }}
            )
    ),
{% endif %}

progression as (
    select * from {{ ref('int_tumor_ltp_event') }}
    where {{ touched_only('tumor_key') }}
),

survival as (
    select * from {{ ref('int_patient_overall_survival') }}
),

with_death as (
    select
        progression.tumor_key,
        progression.ltp_event,
        progression.ltp_time_years,
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
        end as ltp_competing_time_years,
        {{ build_time() }} as _built_at
    from with_death
)

select * from outcome
