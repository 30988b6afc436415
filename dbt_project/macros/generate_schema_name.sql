{#- Schemas are exactly the configured name (staging, intermediate, marts), never
    <target schema>_<name>: the warehouse's schemas are part of the analysts' interface. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
