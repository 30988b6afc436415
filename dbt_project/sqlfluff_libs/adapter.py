"""Lint-time stand-in for dbt's `adapter` (only `dispatch`), see dbt.py beside it.

`adapter.dispatch('name', 'package')(args)` renders as a plain SQL call `name(args)`: enough
for sqlfluff to parse the surrounding model.
"""


def dispatch(macro_name, macro_namespace=None):
    def call(*args):
        return f"{macro_name}({', '.join(str(a) for a in args)})"

    return call


def type():
    return "duckdb"
