{#- Fails on rows where the SQL expression is false. On a column, the expression is appended
    to the column ("between 0 and 120"); on a model it is a whole predicate. Rows where the
    expression is null pass (use not_null for presence). Written here because dbt packages
    (dbt_utils) cannot be installed without the dbt hub. -#}
{% test expression_is_true(model, expression, column_name=none) %}
    select *
    from {{ model }}
    where not ({% if column_name is not none %}{{ column_name }} {% endif %}{{ expression }})
{% endtest %}
