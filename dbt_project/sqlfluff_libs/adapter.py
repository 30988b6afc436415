"""Lint-time stand-in for dbt's `adapter` (`dispatch`, `get_columns_in_relation`), see dbt.py
beside it.

`adapter.dispatch('name', 'package')(args)` renders the DuckDB form of the project's
engine macros (macros/engine.sql) where the surrounding SQL needs one to parse, and a plain
SQL call `name(args)` otherwise: enough for sqlfluff to parse the surrounding model.
"""

DUCKDB_FORMS = {
    "inlined": lambda: "not materialized",
    "problem_list": lambda items: f"[{', '.join(items)}]",
    "present_problems": lambda items: (
        f"list_filter([{', '.join(items)}], lambda found: found is not null)"
    ),
    "problem_struct": lambda column, value, code, message: (
        f"struct_pack(col := '{column}', val := {value}, code := '{code}', msg := '{message}')"
    ),
    "no_problem": lambda: "cast(null as struct(col varchar, val varchar, code varchar, msg varchar))",
    "problems_text": lambda problems, text: (
        f"array_to_string(list_transform({problems}, lambda found: {text}), '; ')"
    ),
    "full_match": lambda column, pattern: f"regexp_full_match({column}, '{pattern}')",
    "first_problem": lambda problems: f"{problems}[1]",
}


def dispatch(macro_name, macro_namespace=None):
    if macro_name in DUCKDB_FORMS:
        return DUCKDB_FORMS[macro_name]

    def call(*args):
        return f"{macro_name}({', '.join(str(a) for a in args)})"

    return call


def type():
    return "duckdb"


def get_columns_in_relation(relation):
    return []
