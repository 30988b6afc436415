-- One row per cryoablation session with its size group and 30-day adverse-event outcome; the
-- unit of analysis for adverse events in Glazer et al. AJR 2017.
{{ config(contract=mart_contract()) }}

with

procedures as (
    select * from {{ ref('int_procedures_current') }}
),

sizes as (
    select * from {{ ref('int_procedure_size_group') }}
),

adverse_events as (
    select * from {{ ref('int_procedure_adverse_event_outcome') }}
),

final as (
    select
        procedures.procedure_key,
        procedures.patient_key,
        procedures.procedure_date,
        procedures.guidance,
        procedures.anesthesia,
        procedures.probe_count,
        sizes.size_group,
        sizes.largest_diameter_mm,
        cast(coalesce(sizes.tumor_count, 0) as integer) as tumor_count,
        coalesce(adverse_events.any_ae, false) as any_ae,
        coalesce(adverse_events.major_ae, false) as major_ae,
        cast(adverse_events.max_ctcae_grade as integer) as max_ctcae_grade,
        cast(coalesce(adverse_events.ae_count_30d, 0) as integer) as ae_count_30d
    from procedures
    left join sizes on procedures.procedure_key = sizes.procedure_key
    left join adverse_events on procedures.procedure_key = adverse_events.procedure_key
)

select * from final
