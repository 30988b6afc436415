-- Rule: a counted ledger row is quarantined when it has a problem of its own (its staging
-- row's _problems: contract, duplicate id, malformed line) or when it is a version later than
-- its id's current one that breaks a reference rule (orphan, impossible date against its
-- parent): the rows int_<table>_versions gives the verdict 'quarantined'. One row per
-- quarantined ledger row with every problem it has; the registry's store only (raw values,
-- MRNs). Source: docs/extract-contract.md ("Bad input").
{{ config(alias='rejected_rows') }}

with

{%- set tables = [
    ('patients', 'patient_mrn', 'patient_key'),
    ('procedures', 'procedure_key', 'patient_key'),
    ('tumors', 'tumor_key', 'null'),
    ('imaging', 'imaging_key', 'null'),
    ('adverse_events', 'event_key', 'null'),
] %}

rejected as (
    {%- for table, id_column, patient_key in tables %}
        select
            '{{ table }}' as entity,
            versions.{{ id_column }} as record_id,
            {{ 'versions.' ~ patient_key if patient_key != 'null' else 'cast(null as string)' }}
                as patient_key,
            case
                when {{ problem_count('versions._problems') }} > 0 then versions._problems
                else {{ problem_list(['versions._reference_problem']) }}
            end as problems,
            versions._run_id,
            versions._extract_date,
            versions._source_file,
            versions._source_line
        from {{ ref('int_' ~ table ~ '_versions') }} as versions
        where versions._verdict = 'quarantined'
        {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

shaped as (
    select
        rejected._run_id as run_id,
        cast(rejected._extract_date as string) as extract,  -- noqa: RF04
        rejected._source_file as file,  -- noqa: RF04
        rejected._source_line as line,  -- noqa: RF04
        rejected.entity,
        rejected.record_id,
        rejected.patient_key,
        {{ first_problem('rejected.problems') }}.col as column_name,
        {{ first_problem('rejected.problems') }}.val as raw_value,
        {{ first_problem('rejected.problems') }}.code as reason_code,
        {{ problems_text(
            'rejected.problems',
            "found.col || ': ' || found.msg || coalesce(' ''' || found.val || '''', '')"
        ) }} as reason,
        rejected.problems
    from rejected
)

select * from shaped
