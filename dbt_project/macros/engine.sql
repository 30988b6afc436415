{#- Where DuckDB's SQL and Spark's differ, one macro per construct, dispatched on the adapter
    (duckdb__..., spark__...), so that no model has a copy per engine. A row's problems are a
    list of structs (col, val, code, msg): how a list and a struct are written, counted,
    filtered, indexed and joined into text is all that differs. -#}

{#- One problem: (column, value as text, reason code, message). -#}
{% macro problem_struct(column, value, code, message) -%}
    {{ return(adapter.dispatch('problem_struct', 'cryoreg')(column, value, code, message)) }}
{%- endmacro %}

{% macro duckdb__problem_struct(column, value, code, message) -%}
    struct_pack(col := '{{ column }}', val := {{ value }}, code := '{{ code }}', msg := '{{ message }}')
{%- endmacro %}

{% macro spark__problem_struct(column, value, code, message) -%}
    named_struct(
        'col', '{{ column }}', 'val', cast({{ value }} as string),
        'code', '{{ code }}', 'msg', cast('{{ message }}' as string)
    )
{%- endmacro %}

{#- A null problem, typed (a row without a reference problem). -#}
{% macro no_problem() -%}
    {{ return(adapter.dispatch('no_problem', 'cryoreg')()) }}
{%- endmacro %}

{% macro duckdb__no_problem() -%}
    cast(null as struct(col varchar, val varchar, code varchar, msg varchar))
{%- endmacro %}

{% macro spark__no_problem() -%}
    cast(null as struct<col: string, val: string, code: string, msg: string>)
{%- endmacro %}

{#- The list of the given problems (SQL expressions). -#}
{% macro problem_list(items) -%}
    {{ return(adapter.dispatch('problem_list', 'cryoreg')(items)) }}
{%- endmacro %}

{% macro duckdb__problem_list(items) -%}
    [{{ items | join(', ') }}]
{%- endmacro %}

{% macro spark__problem_list(items) -%}
    array({{ items | join(', ') }})
{%- endmacro %}

{#- The list of those of the given problems that are not null. -#}
{% macro present_problems(items) -%}
    {{ return(adapter.dispatch('present_problems', 'cryoreg')(items)) }}
{%- endmacro %}

{% macro duckdb__present_problems(items) -%}
    list_filter([{{ items | join(',\n') }}], lambda found: found is not null)
{%- endmacro %}

{% macro spark__present_problems(items) -%}
    filter(array({{ items | join(',\n') }}), found -> found is not null)
{%- endmacro %}

{#- How many problems a list holds. -#}
{% macro problem_count(problems) -%}
    {{ return(adapter.dispatch('problem_count', 'cryoreg')(problems)) }}
{%- endmacro %}

{% macro duckdb__problem_count(problems) -%}
    len({{ problems }})
{%- endmacro %}

{% macro spark__problem_count(problems) -%}
    size({{ problems }})
{%- endmacro %}

{#- The first problem of a list. -#}
{% macro first_problem(problems) -%}
    {{ return(adapter.dispatch('first_problem', 'cryoreg')(problems)) }}
{%- endmacro %}

{% macro duckdb__first_problem(problems) -%}
    {{ problems }}[1]
{%- endmacro %}

{% macro spark__first_problem(problems) -%}
    element_at({{ problems }}, 1)
{%- endmacro %}

{#- The problems as one text: `text` (an expression of `found`, one problem) for each,
    joined by '; '. -#}
{% macro problems_text(problems, text) -%}
    {{ return(adapter.dispatch('problems_text', 'cryoreg')(problems, text)) }}
{%- endmacro %}

{% macro duckdb__problems_text(problems, text) -%}
    array_to_string(list_transform({{ problems }}, lambda found: {{ text }}), '; ')
{%- endmacro %}

{% macro spark__problems_text(problems, text) -%}
    array_join(transform({{ problems }}, found -> {{ text }}), '; ')
{%- endmacro %}

{#- True when the whole text matches the regular expression (no backslashes: the two engines
    read them differently in string literals). -#}
{% macro full_match(column, pattern) -%}
    {{ return(adapter.dispatch('full_match', 'cryoreg')(column, pattern)) }}
{%- endmacro %}

{% macro duckdb__full_match(column, pattern) -%}
    regexp_full_match({{ column }}, '{{ pattern }}')
{%- endmacro %}

{% macro spark__full_match(column, pattern) -%}
    ({{ column }} rlike '^({{ pattern }})$')
{%- endmacro %}

{#- One 64-bit hash of the given columns (texts) of a row. -#}
{% macro row_hash(columns) -%}
    {{ return(adapter.dispatch('row_hash', 'cryoreg')(columns)) }}
{%- endmacro %}

{% macro duckdb__row_hash(columns) -%}
    hash({{ columns | join(', ') }})
{%- endmacro %}

{% macro spark__row_hash(columns) -%}
    xxhash64({{ columns | join(', ') }})
{%- endmacro %}

{#- A common table expression's keyword that keeps it inlined where the engine would
    otherwise materialize it (DuckDB); nothing elsewhere. -#}
{% macro inlined() -%}
    {{ return(adapter.dispatch('inlined', 'cryoreg')()) }}
{%- endmacro %}

{% macro duckdb__inlined() -%}
    not materialized
{%- endmacro %}

{% macro default__inlined() -%}
{%- endmacro %}

{#- The marts' contract: enforced (columns, types, not-null constraints) where the engine
    enforces constraints. Spark without Delta Lake has no not-null constraints, and its types
    are spelled otherwise; there the same rules are the marts' tests and pandera's schemas. -#}
{% macro mart_contract() -%}
    {{ return({'enforced': target.type == 'duckdb'}) }}
{%- endmacro %}
