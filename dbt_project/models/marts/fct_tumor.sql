-- One row per treated tumor with its outcomes (technical success, technique efficacy, local
-- tumor progression, follow-up, death as a competing risk); the unit of analysis of Glazer et
-- al. AJR 2017.
-- Incremental by tumor (delete+insert; no column beyond the contract): a night rewrites the
-- tumors whose row changed in a model before it this build (staging, TE study, progression,
-- competing risk) or whose procedure's staging row did; the post-hook deletes
-- removed tumors. Every column is the tumor's own or its current procedure's and patient's,
-- so the tumors of a changed parent are found by the current keys.
-- Written by merge (update the matched keys, insert the new ones): the same rows as
-- delete+insert of a batch with one row per key, but the primary-key index keeps its entries
-- instead of dropping and re-adding each one (about 2 s of commit at 1M patients).
{{ config(
    materialized='incremental',
    unique_key='tumor_key',
    incremental_strategy='merge',
    merge_exclude_columns=['tumor_key'],
    on_schema_change='fail',
    post_hook="{{ delete_stale_keys('tumor_key',
        'select tumor_key from ' ~ ref('stg_registry__tumors'),
        live_count=ref('stg_registry__tumors')) }}"
) }}

with

{% if is_incremental() %}
    touched_tumors as (
        {{ keys_rebuilt(ref('stg_registry__tumors'), 'tumor_key') }}
        union
        {{ keys_rebuilt(ref('int_tumor_technique_efficacy_study'), 'tumor_key') }}
        union
        {{ keys_rebuilt(ref('int_tumor_ltp_event'), 'tumor_key') }}
        union
        {{ keys_rebuilt(ref('int_tumor_ltp_competing_risk'), 'tumor_key') }}
        union
        -- its procedure changed (the patient's death reaches it through competing risk)
        select treated.tumor_key
        from {{ ref('stg_registry__tumors') }} as treated
        where treated.procedure_key in (
                {{ keys_rebuilt(ref('stg_registry__procedures'), 'procedure_key') }}
            )
    ),
{% endif %}

tumors as (
    select * from {{ ref('stg_registry__tumors') }}
    where {{ touched_only('tumor_key') }}
),

procedures as (
    select * from {{ ref('stg_registry__procedures') }}
),

sizes as (
    select * from {{ ref('int_tumor_size_group') }}
),

technical_success as (
    select * from {{ ref('int_tumor_technical_success') }}
),

technique_efficacy as (
    select * from {{ ref('int_tumor_technique_efficacy_study') }}
),

progression as (
    select * from {{ ref('int_tumor_ltp_event') }}
),

competing as (
    select * from {{ ref('int_tumor_ltp_competing_risk') }}
),

final as (
    select
        tumors.tumor_key,
        tumors.procedure_key,
        procedures.patient_key,
        procedures.procedure_date,
        procedures.guidance,
        sizes.diameter_mm,
        sizes.diameter_cm,
        sizes.size_group,
        tumors.origin,
        tumors.histology,
        tumors.liver_segment,
        technical_success.technical_result,
        technical_success.ts_evaluable,
        technical_success.ts_success,
        technique_efficacy.te_evaluable,
        technique_efficacy.te_study_date,
        technique_efficacy.te_success,
        progression.ltp_event,
        progression.ltp_date,
        progression.ltp_time_years,
        progression.follow_up_years,
        competing.patient_died,
        competing.death_time_years,
        competing.ltp_competing_event,
        competing.ltp_competing_time_years
    from tumors
    inner join procedures on tumors.procedure_key = procedures.procedure_key
    inner join sizes on tumors.tumor_key = sizes.tumor_key
    inner join technical_success on tumors.tumor_key = technical_success.tumor_key
    inner join technique_efficacy on tumors.tumor_key = technique_efficacy.tumor_key
    left join progression on tumors.tumor_key = progression.tumor_key
    left join competing on tumors.tumor_key = competing.tumor_key
)

select * from final
