-- One row per treated tumor with its outcomes (technical success, technique efficacy, local
-- tumor progression, follow-up, death as a competing risk); the unit of analysis of Glazer et
-- al. AJR 2017.
{{ config(contract=mart_contract()) }}

with

tumors as (
    select * from {{ ref('int_tumors_current') }}
),

procedures as (
    select * from {{ ref('int_procedures_current') }}
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
        competing.ltp_event,
        competing.ltp_date,
        competing.ltp_time_years,
        competing.follow_up_years,
        competing.patient_died,
        competing.death_time_years,
        competing.ltp_competing_event,
        competing.ltp_competing_time_years
    from tumors
    inner join procedures on tumors.procedure_key = procedures.procedure_key
    inner join sizes on tumors.tumor_key = sizes.tumor_key
    inner join technical_success on tumors.tumor_key = technical_success.tumor_key
    inner join technique_efficacy on tumors.tumor_key = technique_efficacy.tumor_key
    left join competing on tumors.tumor_key = competing.tumor_key
)

select * from final
