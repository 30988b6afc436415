{#- Size group of a tumor diameter in millimetres (metrics.md; Glazer 2017 compares tumors
    < 4 cm with >= 4 cm): 'ge4cm' when diameter_mm >= 40, 'lt4cm' below, null when unknown. -#}
{% macro size_group(diameter_mm) -%}
    case
        when {{ diameter_mm }} >= 40 then 'ge4cm'
        when {{ diameter_mm }} < 40 then 'lt4cm'
    end
{%- endmacro %}
