{#- Date arithmetic shared by the clinical definitions (metrics.md: "days between two dates are
    calendar days; years = days / 365.25"). Built on dbt's cross-database macros and ANSI
    extract(), so the models stay portable. -#}

{#- Calendar days from start_date to end_date (negative when end is earlier). -#}
{% macro days_between(start_date, end_date) -%}
    {{ dbt.datediff(start_date, end_date, 'day') }}
{%- endmacro %}

{#- A number of days as years of 365.25 days (double precision). -#}
{% macro days_to_years(days) -%}
    (cast({{ days }} as double) / 365.25)
{%- endmacro %}

{#- Completed years from start_date to end_date (age): the difference of the years, minus one
    while the anniversary (month, day) has not yet come in end_date's year. A 29 February
    start completes its year on 1 March in common years. -#}
{% macro completed_years(start_date, end_date) -%}
    (
        extract(year from {{ end_date }}) - extract(year from {{ start_date }})
        - case
            when extract(month from {{ end_date }}) < extract(month from {{ start_date }})
                then 1
            when extract(month from {{ end_date }}) = extract(month from {{ start_date }})
                and extract(day from {{ end_date }}) < extract(day from {{ start_date }})
                then 1
            else 0
        end
    )
{%- endmacro %}
