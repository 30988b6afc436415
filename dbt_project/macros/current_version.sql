{#- The live rows of a raw registry table: per id, the current version (latest extract date,
    then latest physical line of the file), dropped when that version is a deletion
    (record_status = 'deleted', any case). registry-extract.md: upsert by id, deletes by
    record_status. Portable SQL (row_number, lower, coalesce). -#}
{% macro current_version(relation, id_column) -%}
    select versions.*
    from (
        select
            raw_rows.*,
            row_number() over (
                partition by raw_rows.{{ id_column }}
                order by raw_rows._extract_date desc, raw_rows._source_line desc
            ) as _version_rank
        from {{ relation }} as raw_rows
    ) as versions
    where
        versions._version_rank = 1
        and lower(coalesce(versions.record_status, '')) <> 'deleted'
{%- endmacro %}
