{#- The registry's version rules (docs/extract-contract.md, "Identity and versions"), shared
    by the int_<table>_versions models. -#}

{#- The rows of a staging model that count: rows of a run that published (or of the run in
    progress) without a problem of their own. -#}
{% macro counted_rows(staging) -%}
    select rows_.*
    from {{ staging }} as rows_
    inner join {{ ref('stg_registry__run_events') }} as runs
        on rows_._run_id = runs.run_id
    where runs.is_counted and len(rows_._problems) = 0
{%- endmacro %}

{#- Each version's verdict. Versions of an id are ordered by extract date, then line (the
    latest first); a version breaking a reference rule (_reference_problem not null) does not
    exist, so the id's current version is its latest version that passes (a deletion always
    does). Versions later than it are quarantined, earlier ones superseded; an id whose current
    version is a deletion is deleted, one with no passing version has none.
    `judged`: a relation with `key`, _extract_date, _source_line, _is_deleted and
    _reference_problem. -#}
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
{%- endmacro %}
