"""`cryoreg sql`: a read-only SQL prompt on the published warehouse, for analysts.

PyPI's DuckDB command line is a 1.x build, which cannot open a file written by DuckDB 2.0;
this opens it with the project's own DuckDB, read-only, so it never blocks the nightly run.
Every statement's result is printed (a query given on the command line, each statement of a
piped file, or each one typed at the prompt), as a table, CSV or JSON, to the terminal or a
file. At the prompt, lines are edited and recalled with readline, and kept in a history file.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

import duckdb

FORMATS = ("table", "csv", "json")
MAX_TABLE_ROWS = 200  # rows a table shows; csv and json write every row
MAX_CELL = 60  # characters of a cell in a table
HISTORY_FILE = Path(os.environ.get("CRYOREG_SQL_HISTORY", "~/.cryoreg_sql_history")).expanduser()
TABLES_SQL = """
    select table_schema || '.' || table_name as "table", table_type as kind
    from information_schema.tables
    where table_schema not in ('information_schema', 'pg_catalog')
    order by 1"""
SHOW_TABLES = re.compile(r"^\s*show\s+(all\s+)?tables\s*;?\s*$", re.IGNORECASE)


class SqlUsageError(RuntimeError):
    """A wrong option of `cryoreg sql` (format, output file)."""


def run_sql(
    warehouse: Path, query: str | None, fmt: str = "table", output: Path | None = None
) -> int:
    """Run `query`, or a piped file, or the prompt; 0 unless a statement failed."""
    if fmt not in FORMATS:
        raise SqlUsageError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if not warehouse.exists():
        raise FileNotFoundError(f"{warehouse}: no published warehouse (run `cryoreg run` first)")
    with duckdb.connect(str(warehouse), read_only=True) as con, _target(output) as out:
        if query is not None:
            return _run_all(con, query, fmt, out)
        if not sys.stdin.isatty():
            return _run_all(con, sys.stdin.read(), fmt, out)
        return _prompt(con, fmt, out)


@contextmanager
def _target(output: Path | None) -> Iterator[TextIO]:
    if output is None:
        yield sys.stdout
        return
    try:
        handle = output.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise SqlUsageError(f"{output}: cannot write ({exc.strerror})") from None
    with handle:
        yield handle


def _run_all(con: duckdb.DuckDBPyConnection, text: str, fmt: str, out: TextIO) -> int:
    """Every statement of `text`, in order, each result printed; stops at the first error."""
    try:
        statements = duckdb.extract_statements(text)
    except duckdb.Error as exc:
        print(f"error: {_first_line(exc)}", file=sys.stderr)
        return 1
    for statement in statements:
        try:
            show_tables = SHOW_TABLES.match(statement.query)
            cursor = con.execute(TABLES_SQL if show_tables else statement)
            if cursor.description is None:
                continue
            columns = [d[0] for d in cursor.description]
            _print(columns, cursor, fmt, out)
        except duckdb.Error as exc:
            print(f"error: {_first_line(exc)}", file=sys.stderr)
            return 1
    return 0


def _print(columns: list[str], cursor, fmt: str, out: TextIO) -> None:
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        while batch := cursor.fetchmany(10_000):
            writer.writerows(batch)
    elif fmt == "json":
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
        out.write(json.dumps(rows, default=str, indent=1) + "\n")
    else:
        rows = cursor.fetchmany(MAX_TABLE_ROWS + 1)
        more = len(rows) > MAX_TABLE_ROWS
        out.write(render_table(columns, rows[:MAX_TABLE_ROWS], _width(out)))
        if more:
            out.write(f"(the first {MAX_TABLE_ROWS} rows; --format csv writes them all)\n")
    out.flush()


def _width(out: TextIO) -> int:
    return shutil.get_terminal_size((120, 24)).columns if out.isatty() else 160


def _cell(value) -> str:
    """Plain text of a value: integers of any width as digits, nulls as NULL."""
    if value is None:
        return "NULL"
    text = str(value).replace("\n", " ")
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 3] + "..."


def render_table(columns: list[str], rows: list[tuple], width: int) -> str:
    """Columns side by side when they fit the width; otherwise one record per block, one
    line per column, so that no column is hidden."""
    cells = [[_cell(v) for v in row] for row in rows]
    sizes = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    if sum(sizes) + 3 * len(sizes) + 1 <= width:
        rule = "+" + "+".join("-" * (s + 2) for s in sizes) + "+"
        lines = [rule, _row(columns, sizes), rule, *(_row(r, sizes) for r in cells), rule]
    else:
        name_size = max(len(c) for c in columns)
        lines = []
        for n, row in enumerate(cells, 1):
            lines.append(f"-[ row {n} ]" + "-" * max(0, min(width, 40) - 11 - len(str(n))))
            lines += [f"{c.ljust(name_size)} | {v}" for c, v in zip(columns, row, strict=True)]
    lines.append(f"({len(rows)} row{'' if len(rows) == 1 else 's'})")
    return "\n".join(lines) + "\n"


def _row(values: list[str], sizes: list[int]) -> str:
    return "| " + " | ".join(v.ljust(s) for v, s in zip(values, sizes, strict=True)) + " |"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _prompt(con: duckdb.DuckDBPyConnection, fmt: str, out: TextIO) -> int:
    """Statements end with ';'. Errors are printed, the prompt goes on; Ctrl-D quits."""
    _history()
    tables = [t for (t, _) in con.execute(TABLES_SQL).fetchall()]
    print("read-only SQL on the published warehouse; statements end with ';', Ctrl-D quits.")
    print("tables: " + ", ".join(tables))
    buffer: list[str] = []
    while True:
        try:
            line = input("cryoreg> " if not buffer else "    ...> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:  # Ctrl-C drops the statement being typed
            print()
            buffer = []
            continue
        buffer.append(line)
        if line.rstrip().endswith(";") or SHOW_TABLES.match(line):
            statement, buffer = "\n".join(buffer), []
            _run_all(con, statement, fmt, out)


def _history() -> None:
    """Line editing and a history kept between sessions (readline, where Python has it)."""
    try:
        import atexit
        import readline
    except ImportError:  # no readline: the prompt still works, without editing
        return
    readline.set_history_length(1000)
    with suppress(OSError):
        readline.read_history_file(HISTORY_FILE)

    def save() -> None:
        with suppress(OSError):
            readline.write_history_file(HISTORY_FILE)

    atexit.register(save)
