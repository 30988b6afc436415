{#- Building blocks of the incremental models' touched sets (which keys a night recomputes). -#}

{#- The `returns` column (default: `key`) of the rows of `relation` whose `key` has no row in
    `other`: new keys (relation = an input, other = this) or gone keys (relation = this,
    other = an input). `only` filters relation's rows (alias missing), `condition` other's
    rows (alias present). An anti-join, portable SQL. -#}
{% macro keys_missing_from(relation, other, key, returns=none, only=none, condition=none) -%}
    select missing.{{ returns or key }}
    from {{ relation }} as missing
    where
        {{ only or 'true' }}
        and not exists (
            select 1 from {{ other }} as present
            where
                present.{{ key }} = missing.{{ key }}
                and {{ condition or 'true' }}
        )
{%- endmacro %}

{#- The `key` column of the rows of `relation` (an incremental model) that this build wrote
    (_built_at = the build's start; a full build writes every row). A mart has no _built_at
    column of its own (its columns are a contract), so it finds its touched keys this way: the
    models before it ran in the same `dbt build`, and a build is published only whole. -#}
{% macro keys_rebuilt(relation, key) -%}
    select {{ key }} from {{ relation }} where _built_at = {{ build_time() }}
{%- endmacro %}

{#- Post-hook of the incremental marts: delete the rows whose key is no longer in `live`
    (a query of the model's key set). A mart's batch cannot carry tombstones (the contract
    fixes its columns and their not-null constraints), so removed keys go here. The anti-join
    runs only when the row counts differ: the batch inserted every new or changed key, so
    this holds every live key, and it holds no stale one exactly when the counts agree.
    `live_count` (default: the count of `live`) may name a cheaper relation of the same size.
    Nothing to run in a full build. -#}
{% macro delete_stale_keys(key, live, live_count=none) -%}
    {%- if execute and is_incremental() -%}
        {%- set counted = run_query(
            "select (select count(*) from " ~ this ~ "), (select count(*) from "
            ~ (live_count or "(" ~ live ~ ") as live") ~ ")"
        ) -%}
        {%- if counted.rows[0][0] != counted.rows[0][1] -%}
            delete from {{ this }}
            where {{ key }} not in (select live.{{ key }} from ({{ live }}) as live)
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

{#- The final select of a mart that is incremental by comparison: in an incremental build only
    the rows of `cte` (the whole model) that differ from the stored ones (new or changed;
    EXCEPT compares nulls as equal), which delete+insert then replaces by key. Exact without
    any touched-set reasoning, for marts that aggregate children (a child that moved to
    another parent or was deleted leaves no trace in the parent's inputs): the model is still
    computed whole, but only the changed rows are written (writing a table with its primary
    key index is most of a mart's cost). -#}
{% macro rows_changed(cte) -%}
    select * from {{ cte }}
    {%- if is_incremental() %}
        except
        select * from {{ this }}
    {%- endif %}
{%- endmacro %}

{#- Whether some row of this incremental model may have a `key` no longer in `live` (the
    staging model it reads), i.e. whether the anti-join that finds them must run tonight.
    Every key here was in `live` at the last build, and every row of `live` had a row here
    then (`live`'s relationships tests, error severity, guarantee that each of its rows joins
    its parents, and a build is published only when they pass). So with C = the rows of `live`
    loaded after this model's watermark (every id new since then is in C), the keys that left
    `live` number count(this) + count(C not here) - count(live): zero means none left and the
    anti-join can be skipped. Cheap: counts, and a join of the small C against this. Always
    true outside an incremental build, at parse time and in dbt unit tests (whose inputs are
    CTEs that no query can read in advance). -#}
{% macro keys_may_be_gone(live, key) -%}
    {%- if not (execute and is_incremental()) or '__dbt__cte__' in (this | string) -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set counted = run_query(
        "with changed as (select " ~ key ~ " from " ~ live ~ " where _loaded_at > ("
        ~ incremental_watermark() ~ ")) select (select count(*) from " ~ this
        ~ ") + (select count(*) from changed) - (select count(*) from changed inner join "
        ~ this ~ " as built on built." ~ key ~ " = changed." ~ key ~ "), (select count(*) from "
        ~ live ~ ")"
    ) -%}
    {{ return(counted.rows[0][0] != counted.rows[0][1]) }}
{%- endmacro %}
