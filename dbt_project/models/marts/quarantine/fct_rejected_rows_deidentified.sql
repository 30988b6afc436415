-- The quarantine as the analysts' file shows it: every rejected row with its extract, file,
-- line, column, value and reasons, except where a value identifies a person (the contract's
-- `identifies` columns: a patient's MRN, name and birth date, a procedure's MRN): a patient's
-- row is named by its patient_key, and such values are redacted, in raw_value and in the
-- reason text. Source: docs/extract-contract.md.
{{ config(alias='rejected_rows_deidentified') }}

{%- set tables = ['patients', 'procedures', 'tumors', 'imaging', 'adverse_events'] %}

{#- A problem's value as the reason text shows it: empty where it identifies a person. -#}
{%- set hidden = [] %}
{%- for table in tables %}
    {%- do hidden.append(
        "when rejected.entity = '" ~ table ~ "' and found.col in ("
        ~ identifying_columns(table) ~ ") then ''"
    ) %}
{%- endfor %}
{%- set shown_value = 'case ' ~ hidden | join(' ')
    ~ " else coalesce(' ''' || found.val || '''', '') end" %}

with

rejected as (
    select * from {{ ref('fct_rejected_rows') }}
),

redacted as (
    select
        rejected.run_id,
        rejected.extract,
        rejected.file,
        rejected.line,
        rejected.entity,
        case when rejected.entity = 'patients' then rejected.patient_key else record_id end
            as record_id,
        rejected.column_name,
        case
            {%- for table in tables %}
                when rejected.entity = '{{ table }}'
                    and rejected.column_name in ({{ identifying_columns(table) }})
                    then '[redacted]'
            {%- endfor %}
            else raw_value
        end as raw_value,
        rejected.reason_code,
        {{ problems_text('rejected.problems', "found.col || ': ' || found.msg || " ~ shown_value) }}
            as reason
    from rejected
)

select * from redacted
