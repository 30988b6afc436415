-- One row per adverse event: onset day relative to its procedure, CTCAE grade and whether it
-- falls in the 30-day window. The free-text description is left out (it may hold
-- identifiers).
{{ config(contract=mart_contract()) }}

with

adverse_events as (
    select * from {{ ref('int_procedure_adverse_events_30d') }}
),

final as (
    select
        event_key,
        procedure_key,
        patient_key,
        cast(onset_day as integer) as onset_day,
        cast(ctcae_grade as integer) as ctcae_grade,
        in_30_day_window,
        is_major
    from adverse_events
)

select * from final
