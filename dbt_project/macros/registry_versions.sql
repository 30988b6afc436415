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
    _reference_problem (null on rows with problems of their own). One hash aggregate per id
    finds the current version, no sort of the versions. `judged` and the CTEs here are inlined,
    not materialized: the aggregate reads only the keys, order and problems it needs, instead
    of a stored copy of every version with all its columns. -#}
{% macro version_verdicts(judged, key) -%}
    with

    ordered as {{ inlined() }} (
        select
            judged.*,
            {{ version_order('judged._extract_date', 'judged._source_line') }} as _version_order
        from {{ judged }} as judged
    ),

    current_versions as {{ inlined() }} (
        select
            {{ key }},
            max(_version_order) as _current_order
        from ordered
        where {{ problem_count('_problems') }} = 0 and _reference_problem is null
        group by {{ key }}
    )

    select
        ordered.*,
        case
            when {{ problem_count('ordered._problems') }} > 0 then 'quarantined'
            when current_versions._current_order is null then 'quarantined'
            when ordered._version_order > current_versions._current_order then 'quarantined'
            when ordered._version_order < current_versions._current_order then 'superseded'
            when ordered._is_deleted then 'deleted'
            else 'current'
        end as _verdict
    from ordered
    left join current_versions on ordered.{{ key }} = current_versions.{{ key }}
{%- endmacro %}

{#- A version's place in the order of versions, as one number: its extract date (YYYYMMDD),
    then its line. -#}
{% macro version_order(extract_date, line) -%}
    (
        extract(year from {{ extract_date }}) * 10000
        + extract(month from {{ extract_date }}) * 100
        + extract(day from {{ extract_date }})
    ) * 10000000000 + {{ line }}
{%- endmacro %}
