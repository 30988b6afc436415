{#- The registry's version rules (docs/extract-contract.md, "Identity and versions"), shared
    by the int_<table>_versions models. -#}

{#- The rows of a staging model that count: rows of a run that published, or of the run in
    progress. -#}
{% macro counted_rows(staging) -%}
    select rows_.*
    from {{ staging }} as rows_
    inner join {{ ref('stg_registry__run_events') }} as runs
        on rows_._run_id = runs.run_id
    where runs.is_counted
{%- endmacro %}

{#- Each counted row's verdict. A row with a problem of its own (_problems) is quarantined
    and is no version. Versions of an id are ordered by extract date, then line (the latest
    first); a version breaking a reference rule (_reference_problem not null) does not exist
    either, so the id's current version is its latest version that passes (a deletion always
    does). Versions later than it are quarantined, earlier ones superseded; an id whose current
    version is a deletion is deleted, one with no passing version has none.
    `judged`: a relation with `key`, _problems, _extract_date, _source_line, _is_deleted and
    _reference_problem (null on rows with problems of their own). -#}
{% macro version_verdicts(judged, key) -%}
    with

    ranked as (
        select
            judged.*,
            row_number() over (
                partition by judged.{{ key }}
                order by judged._extract_date desc, judged._source_line desc
            ) as _version_rank
        from {{ judged }} as judged
        where len(judged._problems) = 0
    ),

    first_passing as (
        select
            {{ key }},
            min(_version_rank) as _current_rank
        from ranked
        where _reference_problem is null
        group by {{ key }}
    )

    select
        ranked.*,
        case
            when ranked._version_rank < coalesce(first_passing._current_rank, 2147483647)
                then 'quarantined'
            when ranked._version_rank = first_passing._current_rank and ranked._is_deleted
                then 'deleted'
            when ranked._version_rank = first_passing._current_rank then 'current'
            else 'superseded'
        end as _verdict
    from ranked
    left join first_passing on ranked.{{ key }} = first_passing.{{ key }}

    union all by name

    select
        judged.*,
        cast(null as bigint) as _version_rank,
        'quarantined' as _verdict
    from {{ judged }} as judged
    where len(judged._problems) > 0
{%- endmacro %}
