-- One row per adverse event: onset day relative to its procedure, CTCAE grade and whether it
-- falls in the 30-day window. The free-text description is left out (it may hold
-- identifiers).
-- Incremental by event (delete+insert; no column beyond the contract): a night rewrites the
-- events whose staging row or whose procedure's staging row changed this build (every column
-- is the event's own or its current procedure's); the post-hook deletes removed events.
-- depends_on: {{ ref('stg_registry__adverse_events') }}
-- depends_on: {{ ref('stg_registry__procedures') }}
{{ config(
    materialized='incremental',
    unique_key='event_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ delete_stale_keys('event_key',
        'select event_key from ' ~ ref('int_procedure_adverse_events_30d')) }}"
) }}

with

{% if is_incremental() %}
    touched_events as (
        {{ keys_rebuilt(ref('stg_registry__adverse_events'), 'event_key') }}
        union
        select events.event_key
        from {{ ref('stg_registry__adverse_events') }} as events
        where events.procedure_key in (
                {{ keys_rebuilt(ref('stg_registry__procedures'), 'procedure_key') }}
            )
    ),
{% endif %}

adverse_events as (
    select * from {{ ref('int_procedure_adverse_events_30d') }}
    where {{ touched_only('event_key', 'touched_events', 'event_key') }}
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
