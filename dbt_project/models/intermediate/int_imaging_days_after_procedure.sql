-- Definition: each follow-up imaging read placed on its tumor's timeline, as calendar days
-- from the tumor's procedure date to the imaging date (0 = day of ablation).
-- Source: metrics.md ("days between two dates are calendar days"); the day counts feed the
-- technique-efficacy window (30-180 days) and local tumor progression.
-- Incremental by tumor: a night rebuilds every read of each tumor it touched (a read of it
-- new, changed, moved in or out, or deleted; the tumor or its procedure changed), plus one
-- tombstone per touched tumor so that delete+insert also clears tumors left without reads.
-- The anti-join that finds deleted reads (10M rows at 1M patients) runs only on nights when a
-- count shows that some read left staging (keys_may_be_gone).
{{ config(
    materialized='incremental',
    unique_key='tumor_key',
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ remove_deleted_ids() }}"
) }}

with

imaging as (
    select * from {{ ref('stg_registry__imaging') }}
),

tumors as (
    select * from {{ ref('stg_registry__tumors') }}
),

procedures as (
    select * from {{ ref('stg_registry__procedures') }}
),

{% if is_incremental() %}
    changed_imaging as (
        select
            imaging_key,
            tumor_key
        from {{ ref('stg_registry__imaging') }}
        where _loaded_at > ({{ incremental_watermark() }})
    ),

    touched_tumors as (
        -- a read is new or changed: its tumor now
        select tumor_key from changed_imaging
        union
        -- a changed read belonged to another tumor before (moved out)
        select built.tumor_key
        from {{ this }} as built
        inner join changed_imaging on built.imaging_key = changed_imaging.imaging_key
        {% if keys_may_be_gone(ref('stg_registry__imaging'), 'imaging_key') %}
            union
            -- a read is gone (deleted, or its tumor was); skipped when the counts show
            -- that none is (macros/touched_keys.sql)
            {{ keys_missing_from(
                this, ref('stg_registry__imaging'), 'imaging_key', 'tumor_key'
            ) }}
        {% endif %}
        union
        -- the tumor changed (e.g. its procedure)
        select tumor_key
        from {{ ref('stg_registry__tumors') }}
        where _loaded_at > ({{ incremental_watermark() }})
        union
        -- its procedure changed (date, patient)
        select treated.tumor_key
        from {{ ref('stg_registry__tumors') }} as treated
        inner join {{ ref('stg_registry__procedures') }} as sessions
            on treated.procedure_key = sessions.procedure_key
        where sessions._loaded_at > ({{ incremental_watermark() }})
    ),
{% endif %}

placed as (
    select
        imaging.imaging_key,
        imaging.tumor_key,
        tumors.procedure_key,
        procedures.patient_key,
        procedures.procedure_date,
        imaging.imaging_date,
        imaging.finding,
        {{ days_between('procedures.procedure_date', 'imaging.imaging_date') }}
            as days_after_procedure,
        greatest(imaging._loaded_at, tumors._loaded_at, procedures._loaded_at) as _loaded_at,
        {{ build_time() }} as _built_at,
        false as _is_deleted
    from imaging
    inner join tumors on imaging.tumor_key = tumors.tumor_key
    inner join procedures on tumors.procedure_key = procedures.procedure_key
    where {{ touched_only('imaging.tumor_key') }}
)

{% if is_incremental() %}
    select * from placed
    union all
    select
        null as imaging_key,
        tumor_key,
        null as procedure_key,
        null as patient_key,
        null as procedure_date,
        null as imaging_date,
        null as finding,
        null as days_after_procedure,
        null as _loaded_at,
        null as _built_at,
        true as _is_deleted
    from touched_tumors
{% else %}
    select * from placed
{% endif %}
