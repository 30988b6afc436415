-- One row per run that landed rows, with whether its rows count: a run's rows count once it
-- published, and while it is the run in progress (started, not yet ended); the rows of a run
-- that failed or was killed (abandoned) never count, and its folders load again when fixed.
with

events as (
    select * from {{ source('registry', 'run_events') }}
),

runs as (
    select
        run_id,
        min(case when event = 'started' then event_at end) as started_at,
        max(case when event = 'published' then event_at end) as published_at,
        max(case when event in ('failed', 'abandoned') then event_at end)
            as ended_without_publishing_at
    from events
    group by run_id
),

counted as (
    select
        run_id,
        started_at,
        published_at,
        published_at is not null
        or ended_without_publishing_at is null as is_counted
    from runs
)

select * from counted
