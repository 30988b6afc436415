-- noqa: disable=LT02,LT05
{#- The extract contract as the staging models use it. The contract is declared once, as
    data, in models/staging/registry/_registry__sources.yml (each column's meta: kind,
    required, codes, range, not_before, identifies); these macros read it from dbt's graph
    when a model runs, so the row checks below are the contract, not a copy of it. At parse
    time the graph is not filled in and they render placeholders. (The noqa line above: these
    macros are Jinja that writes SQL text; sqlfluff's layout rules do not apply to it.) -#}

{#- The source node of one registry table. -#}
{% macro registry_table(name) -%}
    {%- for node in graph.sources.values() -%}
        {%- if node.source_name == 'registry' and node.name == name -%}
            {{ return(node) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(none) }}
{%- endmacro %}

{#- The extract columns of one table (lineage excluded), in file order, as (name, meta). -#}
{% macro registry_columns(name) -%}
    {%- set node = registry_table(name) if execute else none -%}
    {%- set found = [] -%}
    {%- if node is not none -%}
        {%- for column in node.columns.values() if not column.name.startswith('_') -%}
            {%- do found.append((column.name, column.meta or column.config.meta or {})) -%}
        {%- endfor -%}
    {%- endif -%}
    {{ return(found) }}
{%- endmacro %}

{#- One table-level contract entry (id_column, parent, date_order). -#}
{% macro registry_meta(name, key) -%}
    {%- set node = registry_table(name) if execute else none -%}
    {%- if node is none -%}{{ return(none) }}{%- endif -%}
    {%- set meta = node.meta or node.config.meta or {} -%}
    {{ return(meta.get(key)) }}
{%- endmacro %}

{#- The ledger rows of one table not yet in this (incremental) model, values trimmed and
    empty = missing, with _is_deleted (record_status 'deleted', any case). -#}
{% macro ledger_rows(name) -%}
    select
        {%- for column, meta in registry_columns(name) %}
            nullif(trim({{ column }}), '') as {{ column }},
        {%- endfor %}
        coalesce(lower(trim(record_status)) = 'deleted', false) as _is_deleted,
        _extract_date,
        _source_file,
        _source_line,
        _run_id,
        _loaded_at,
        _raw_text,
        _read_error
    from {{ source('registry', name) }}
    {%- if is_incremental() %}
    where _loaded_at > (
        select coalesce(max(built._loaded_at), cast('1900-01-01' as timestamp))
        from {{ this }} as built
    )
    {%- endif %}
{%- endmacro %}

{#- The ledger rows of one table not yet staged (ledger_rows), each with every problem it has
    on its own (row_problems, in _problems). A repeated id within a file, as one run landed it
    (a failed night's copy of a file is not the fixed file's), is found without a window over
    the batch: a hash aggregate of one 64-bit hash per row (run, file, id) finds the few hashes
    that repeat, and only their rows are grouped by the exact key, so a hash collision costs
    nothing but a candidate. Grouping every row by its three texts took a third of the model's
    time. The batch is read three times (not materialized: trimming it again costs less than
    writing it to memory). -#}
{% macro checked_ledger_rows(name) -%}
    {%- set id_column = registry_meta(name, 'id_column') or 'null' -%}
    {%- set id_hash = row_hash(['_run_id', '_source_file', id_column]) -%}
    with

    ledger as {{ inlined() }} (
        {{ ledger_rows(name) }}
    ),

    repeated_hashes as (
        select {{ id_hash }} as _id_hash
        from ledger
        where {{ id_column }} is not null
        group by {{ id_hash }}
        having count(*) > 1
    ),

    repeated_ids as (
        select
            _run_id,
            _source_file,
            {{ id_column }} as _id,
            max(_source_line) as _dup_last
        from ledger
        where {{ id_hash }} in (select repeated_hashes._id_hash from repeated_hashes)
        group by _run_id, _source_file, {{ id_column }}
        having count(*) > 1
    ),

    numbered as (
        select
            ledger.*,
            repeated_ids._dup_last
        from ledger
        left join repeated_ids
            on
                ledger._run_id = repeated_ids._run_id
                and ledger._source_file = repeated_ids._source_file
                and ledger.{{ id_column }} = repeated_ids._id
    )

    select
        numbered.*,
        {{ row_problems(name) }} as _problems
    from numbered
{%- endmacro %}

{#- A problem of a row: (column, its value, reason code, message), or null when there is
    none. -#}
{% macro problem(column, value, code, message, test) -%}
    case when {{ test }} then {{ problem_struct(column, value, code, message) }} end
{%- endmacro %}

{#- Every problem a ledger row has against the contract, in column order: missing required
    values (only the id on a deletion), unparseable or future dates, unknown codes, values
    that are not numbers or out of range, a date before another of the same row, and a
    duplicate id within the file (every copy but the last). Expects the columns of
    ledger_rows() and _dup_last (the last line of a repeated id in its file). -#}
{% macro row_problems(name) -%}
    {%- set id_column = registry_meta(name, 'id_column') -%}
    {%- set tests = [] -%}
    {%- for column, meta in registry_columns(name) -%}
        {%- if meta.get('required') -%}
            {%- set test = column ~ ' is null' ~ ('' if column == id_column else ' and not _is_deleted') -%}
            {%- do tests.append(problem(column, column, 'missing_required', 'missing required value', test)) -%}
        {%- endif -%}
        {%- if meta.get('kind') == 'date' -%}
            {%- do tests.append(problem(column, column, 'bad_date', 'unparseable date (expected YYYY-MM-DD)',
                column ~ " is not null and " ~ parsed_date(column) ~ " is null")) -%}
            {%- do tests.append(problem(column, column, 'future_date', 'date after the extract date',
                parsed_date(column) ~ ' > _extract_date')) -%}
            {%- if meta.get('not_before') -%}
                {%- do tests.append(problem(column, column, 'impossible_date',
                    'before ' ~ meta.get('not_before') | replace('_date', ''),
                    parsed_date(column) ~ ' < ' ~ parsed_date(meta.get('not_before')))) -%}
            {%- endif -%}
        {%- elif meta.get('kind') == 'code' -%}
            {%- set allowed = [] -%}
            {%- for code in meta.get('codes') -%}{%- do allowed.append("'" ~ code | lower ~ "'") -%}{%- endfor -%}
            {%- do tests.append(problem(column, column, 'unknown_code', 'unknown code',
                'lower(' ~ column ~ ') not in (' ~ allowed | join(', ') ~ ')')) -%}
        {%- elif meta.get('kind') in ('integer', 'number') -%}
            {%- set low, high = meta.get('range') -%}
            {%- set what = 'an integer' if meta.get('kind') == 'integer' else 'a number' -%}
            {%- do tests.append(problem(column, column, 'not_a_number', 'not ' ~ what,
                column ~ ' is not null and ' ~ parsed_number(column, meta.get('kind')) ~ ' is null')) -%}
            {%- do tests.append(problem(column, column, 'out_of_range', 'outside ' ~ low ~ '-' ~ high,
                parsed_number(column, meta.get('kind')) ~ ' not between ' ~ low ~ ' and ' ~ high)) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if id_column -%}
        {%- do tests.append(problem(id_column, id_column, 'duplicate_id',
            'duplicate id in file (a later row replaces it)', '_source_line < _dup_last')) -%}
    {%- endif -%}
    {%- set malformed = problem('_row', '_raw_text', 'malformed_row', "' || _read_error || '",
        '_read_error is not null') -%}
    case
        when _read_error is not null then {{ problem_list([malformed]) }}
        else {{ present_problems(tests or [no_problem()]) }}
    end
{%- endmacro %}

{#- A date in ISO form (YYYY-MM-DD), or null when the text is not one. -#}
{% macro parsed_date(column) -%}
    case when {{ full_match(column, '[0-9]{4}-[0-9]{2}-[0-9]{2}') }}
        then try_cast({{ column }} as date) end
{%- endmacro %}

{#- An integer (digits with an optional sign) or a decimal number (no exponent, no
    thousands separator), or null when the text is not one. -#}
{% macro parsed_number(column, kind) -%}
    {%- if kind == 'integer' -%}
        case when {{ full_match(column, '[+-]?[0-9]+') }}
            then try_cast({{ column }} as bigint) end
    {%- else -%}
        case when {{ full_match(column, '[+-]?([0-9]+([.][0-9]*)?|[.][0-9]+)') }}
            then try_cast({{ column }} as double) end
    {%- endif -%}
{%- endmacro %}

{#- A code in its canonical spelling (the contract's), matched case-insensitively. -#}
{% macro canonical_code(name, column) -%}
    {%- set codes = [] -%}
    {%- for found, meta in registry_columns(name) if found == column -%}
        {%- do codes.extend(meta.get('codes') or []) -%}
    {%- endfor -%}
    case lower({{ column }})
        {%- for code in codes %}
            when '{{ code | lower }}' then '{{ code }}'
        {%- endfor %}
    end
{%- endmacro %}

{#- The names of the columns of one table that identify a person (quoted, for `in`), and
    '_row' (a malformed line's whole text) when it has any. -#}
{% macro identifying_columns(name) -%}
    {%- set found = ["''"] -%}
    {%- for column, meta in registry_columns(name) if meta.get('identifies') -%}
        {%- do found.append("'" ~ column ~ "'") -%}
    {%- endfor -%}
    {%- if found | length > 1 -%}{%- do found.append("'_row'") -%}{%- endif -%}
    {{ return(found | join(', ')) }}
{%- endmacro %}
