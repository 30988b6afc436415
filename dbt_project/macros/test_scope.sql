{#- A night's `dbt build` tests only what it rebuilt. The incremental models stamp each row
    they (re)write with _built_at = the build's start (build_time()) and rewrite a row
    whenever its inputs change; a row not rewritten tonight is unchanged since a build that
    was published, and a build is published only when every error-severity test passed
    (transform.py fails the night otherwise; nothing retries a build that ran). So a per-row
    test (not_null, accepted_values, an expression on the row's own columns) of an incremental
    model needs only tonight's rows: its `where` config is the placeholder
    __rebuilt_this_build__, which get_where_subquery below expands. A full build stamps every
    row, so every row is tested. Tests whose violation can involve an untouched row (unique,
    relationships, aggregates) and warn-severity tests (their failing-row count is reported
    every night) stay whole, as does any other command than `dbt build` (a `dbt test` after
    a `dbt run` must see every row). -#}

{% macro rebuilt_this_build() -%}
    {%- if flags.WHICH == 'build' -%}
        _built_at = {{ build_time() }}
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}

{#- A unique test of a big incremental model needs only the keys this build wrote, but counted
    over every row of those keys: a rewritten row may duplicate a row kept from an earlier
    build. Its `where` is "<key> in (select <key> from __this__ where __rebuilt_this_build__)"
    (__this__ = the tested model): a semi-join on tonight's keys instead of grouping the whole
    table. Exact by induction: a duplicated key has a row written by the build that wrote the
    later of its rows, whose unique test (error severity) then saw both; a full build writes
    every row. Outside `dbt build` the predicate is true, so every key is tested; when every
    row was written tonight (a full build) the test reads the table as is. -#}

{#- dbt's hook for a test's `where` config (a test's config in YAML cannot call a project
    macro): __rebuilt_this_build__ becomes rebuilt_this_build() and __this__ the tested
    relation; any other where is used as written. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where and '__this__' in where and execute and flags.WHICH == 'build' -%}
        {#- every row written tonight (a full build): test the whole table, without the
            semi-join -#}
        {%- set kept = run_query(
            "select count(*) from " ~ relation ~ " where not (" ~ rebuilt_this_build() ~ ")"
        ) -%}
        {%- if kept.rows[0][0] == 0 -%}
            {{ return(relation) }}
        {%- endif -%}
    {%- endif -%}
    {%- if where -%}
        {%- set where = where | replace('__rebuilt_this_build__', rebuilt_this_build())
            | replace('__this__', relation) -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) as dbt_subquery
        {%- endset -%}
        {{ return(filtered) }}
    {%- else -%}
        {{ return(relation) }}
    {%- endif -%}
{%- endmacro %}
