"""Lint-time stand-ins for the dbt cross-database macros the project uses (`dbt.datediff`, ...).

sqlfluff's jinja templater exposes modules in this folder as jinja globals; only a dbt run has
the real `dbt` namespace. These render plausible DuckDB SQL so the models parse and lint.
Not imported by dbt or the product. Add a stand-in here when a model uses another dbt macro.
"""


def datediff(first_date, second_date, datepart):
    return f"date_diff('{datepart}', {first_date}, {second_date})"


def type_string():
    return "varchar"
