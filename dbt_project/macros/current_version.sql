{#- The current versions of a raw registry table (registry-extract.md: upsert by id, deletes by
    record_status): per id, the version with the latest extract date, then the latest line of
    the file. Also per id: _id_loaded_at = the latest load of any of its versions, and
    _is_deleted = its current version is a deletion (record_status 'deleted', any case).

    Full build: every id, deletions dropped. Incremental build (the staging models): only the
    ids with a raw row loaded after the model's watermark (the latest _loaded_at it holds),
    deletions included, so that delete+insert on the id replaces or removes them; the post-hook
    remove_deleted_ids() then drops the deletions. Ingest gives every change of an id's live
    state (a new version, a deletion, a parent's cascade tombstone, a re-admitted orphan) a
    newer _loaded_at, so the night's batch is complete. Portable SQL (row_number, max over,
    lower, coalesce). -#}
{% macro current_version(relation, id_column) -%}
    select
        versions.*,
        lower(coalesce(versions.record_status, '')) = 'deleted' as _is_deleted
    from (
        select
            raw_rows.*,
            max(raw_rows._loaded_at) over (
                partition by raw_rows.{{ id_column }}
            ) as _id_loaded_at,
            row_number() over (
                partition by raw_rows.{{ id_column }}
                order by raw_rows._extract_date desc, raw_rows._source_line desc
            ) as _version_rank
        from {{ relation }} as raw_rows
        {% if is_incremental() %}
            where raw_rows.{{ id_column }} in (
                select changed.{{ id_column }}
                from {{ relation }} as changed
                where changed._loaded_at > ({{ incremental_watermark() }})
            )
        {% endif %}
    ) as versions
    where
        versions._version_rank = 1
        {% if not is_incremental() %}
            and lower(coalesce(versions.record_status, '')) <> 'deleted'
        {% endif %}
{%- endmacro %}

{#- How far an incremental model got: max(column) of its own rows (_loaded_at: the latest raw
    load it absorbed; _built_at: the latest build it took rows from), or a time before any
    when it is empty (then every row is new). -#}
{% macro incremental_watermark(column='_loaded_at') -%}
    select coalesce(max(built.{{ column }}), cast('1900-01-01' as timestamp))
    from {{ this }} as built
{%- endmacro %}

{#- When this build started: the _built_at of the rows an incremental intermediate model
    (re)computes, so that the models after it find them by `_built_at > their watermark`. -#}
{% macro build_time() -%}
    cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
{%- endmacro %}

{#- Post-hook of the incremental models: the night's batch carries a tombstone row
    (_is_deleted) for each key to remove, so that delete+insert deletes its old rows; drop the
    tombstones themselves. -#}
{% macro remove_deleted_ids() -%}
    delete from {{ this }} where _is_deleted
{%- endmacro %}

{#- A predicate limiting an incremental model's batch to the keys it touched this night (the
    CTE touched_tumors); true in a full build. -#}
{% macro touched_only(column, touched='touched_tumors', key='tumor_key') -%}
    {%- if is_incremental() -%}
        {{ column }} in (select touched.{{ key }} from {{ touched }} as touched)
    {%- else -%}
        true
    {%- endif -%}
{%- endmacro %}
