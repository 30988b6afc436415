-- interfaces.md: the marts hold no MRN, name or birth date (nor free text that may hold
-- them). Fails on any marts column whose name says it is one. Runs after every mart:
-- depends_on: {{ ref('fct_tumor') }}, {{ ref('fct_procedure') }}, {{ ref('dim_patient') }}
-- depends_on: {{ ref('fct_adverse_event') }}, {{ ref('fct_tumor_attrition') }}
select
    table_name,
    column_name
from information_schema.columns
where
    table_catalog = '{{ target.database }}'
    and table_schema = '{{ generate_schema_name("marts", none) }}'
    and (
        lower(column_name) like '%mrn%'
        or lower(column_name) like '%name%'
        or lower(column_name) like '%birth%'
        or lower(column_name) = 'description'
    )
