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
