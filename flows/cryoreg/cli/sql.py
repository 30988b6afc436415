"""`cryoreg sql`: a read-only SQL prompt on the published warehouse, for analysts.

PyPI's DuckDB command line is a 1.x build, which cannot open a file written by DuckDB 2.0;
this opens it with the project's own DuckDB, read-only, so it never blocks the nightly run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb


def run_sql(warehouse: Path, query: str | None) -> int:
    if not warehouse.exists():
        raise FileNotFoundError(f"{warehouse}: no published warehouse (run `cryoreg run` first)")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        if query:
            _show(con, query)
            return 0
        return _prompt(con)


def _show(con: duckdb.DuckDBPyConnection, query: str) -> None:
    relation = con.sql(query)
    if relation is not None:
        relation.show(max_rows=200, max_width=200)


def _prompt(con: duckdb.DuckDBPyConnection) -> int:
    """Statements end with ';'. Errors are printed, the prompt goes on; Ctrl-D quits."""
    interactive = sys.stdin.isatty()
    if interactive:
        print("read-only SQL on the warehouse; try: select * from marts.fct_tumor limit 5;")
    buffer: list[str] = []
    while True:
        try:
            line = input("cryoreg> " if not buffer else "    ...> ") if interactive else None
        except EOFError:
            return 0
        if line is None:
            text = sys.stdin.read()
            if text.strip():
                _show(con, text)  # several statements: DuckDB runs all, shows the last
            return 0
        buffer.append(line)
        if line.rstrip().endswith(";"):
            statement, buffer = "\n".join(buffer), []
            try:
                _show(con, statement)
            except duckdb.Error as exc:
                print(f"error: {str(exc).splitlines()[0]}")
