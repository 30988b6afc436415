"""Landing: append new extract folders to the registry's ledger, as received.

Only what has to happen outside the warehouse happens here: find the extract folders, keep
the load log with each folder's content hash (a re-run is a no-op, a changed folder an error),
check each file as a whole (encoding, CSV shape, header: one clear line each) and append its
rows, as text, with their lineage, to raw.<table>. Nothing is updated or deleted: every rule
about rows (checks, versions, references, quarantine) is the dbt project's, over the ledger.

A run's rows count only once it has published (raw.run_events): a night that fails or is
killed leaves rows nothing derives from, and its folders load again when fixed.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

from cryoreg.contract import BY_NAME, FILES, LINEAGE, ExtractFile
from cryoreg.ingest.folders import Extract, RegistryInputError, discover_extracts
from cryoreg.ingest.ledger import begin_run, check_load_log, ensure_store, ident
from cryoreg.publish.warehouse import ensure_free_space

MAX_LINE_BYTES = 64 * 1024 * 1024  # free text of up to 16 MB and more loads


@dataclass
class FileAccount:
    extract: str
    file: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    unknown_columns: list[str] = field(default_factory=list)


@dataclass
class IngestResult:
    run_id: str
    extracts: list[Extract]
    loaded: list[str]
    skipped: list[str]
    files: list[FileAccount]
    warnings: list[str]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def read_header(path: Path, label: str) -> list[str]:
    """Normalised header names (trimmed, lower case); the file must be UTF-8 CSV."""
    with path.open("rb") as handle:  # the header line alone: a bad byte below it is the body's
        raw = handle.readline(MAX_LINE_BYTES)
    try:
        first = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first, reason = None, f"invalid byte at position {exc.start} of the header"
    if first is None:  # raised outside the except block: no frames holding the connection
        raise RegistryInputError(f"{label}: not UTF-8 text ({reason})")
    if not first.strip():
        raise RegistryInputError(f"{label}: empty file, no header row")
    names = next(csv.reader(io.StringIO(first)))
    return [n.strip().lower() for n in names]


def checked_header(path: Path, spec: ExtractFile, label: str) -> list[str]:
    """The file's header, which must hold every required column of the contract, once."""
    header = read_header(path, label)
    missing = [c for c in spec.required_names if c not in header]
    if missing:
        raise RegistryInputError(f"{label}: missing required column {', '.join(missing)}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise RegistryInputError(f"{label}: column {', '.join(dupes)} appears more than once")
    return header


def _land_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    spec: ExtractFile,
    extract: str,
    label: str,
    run_id: str,
    loaded_at: datetime,
) -> FileAccount:
    """Append one CSV's rows to raw.<table>, text as received, checking its header first."""
    header = checked_header(path, spec, label)
    account = FileAccount(extract, label)
    account.unknown_columns = [h for h in header if h not in spec.column_names]
    positional = {f"c{i}": "VARCHAR" for i in range(len(header))}
    by_name = {name: f"c{i}" for i, name in enumerate(header)}
    select = ", ".join(by_name.get(c, "null") + f" as {ident(c)}" for c in spec.column_names)
    target = _ledger_target(spec)

    def lineage(line: str) -> str:
        return f"date {_sql_str(extract)}, {_sql_str(label)}, {line}, {_sql_str(run_id)}, ?"

    def reader(more: str = "") -> str:
        return f"""read_csv({_sql_str(str(path))}, header = false, skip = 1,
            auto_detect = false, delim = ',', quote = '"', escape = '"', columns = {positional},
            strict_mode = true, null_padding = false, max_line_size = {MAX_LINE_BYTES}{more})"""

    reason = None
    try:
        # read into memory first: DuckDB keeps the file's order, so a row's line is its rowid
        # + 2 (the header is line 1); numbering rows with a window instead costs as much again
        # as reading the file
        con.execute(f"create or replace temp table landing as select {select} from {reader()}")
        (account.read,) = con.execute(
            f"insert into {target} select landing.*, {lineage('rowid + 2')} from landing",
            [loaded_at],
        ).fetchone()
    except duckdb.Error as exc:
        reason = _csv_reason(str(exc))
    finally:
        con.execute("drop table if exists landing")
    if reason is not None and ROW_SHAPE in reason:
        reason = _land_with_malformed_rows(con, spec, target, select, lineage, reader, loaded_at)
        account.read = con.execute(
            f"select count(*) from raw.{spec.entity} where _source_file = ? and _run_id = ?",
            [label, run_id],
        ).fetchone()[0]
    if reason is not None:  # raised outside the except block (no frames holding the connection)
        raise RegistryInputError(f"{label}: not a valid UTF-8 CSV file: {reason}")
    return account


def _ledger_target(spec: ExtractFile, *more: str) -> str:
    """raw.<table> (its extract columns, the lineage and `more`), for an insert."""
    return f"raw.{spec.entity} ({', '.join(map(ident, [*spec.column_names, *LINEAGE, *more]))})"


ROW_SHAPE = "Expected Number of Columns"  # the reader's words for a wrong field count
SHAPE_ERRORS = ("MISSING COLUMNS", "TOO MANY COLUMNS")


def _land_with_malformed_rows(
    con: duckdb.DuckDBPyConnection,
    spec: ExtractFile,
    target: str,
    select: str,
    lineage,
    reader,
    at: datetime,
) -> str | None:
    """A file with lines whose field count is wrong: the well-formed rows land as usual, each
    malformed line lands as a row of its own with its text and the reader's reason (staging
    quarantines it as malformed_row). Any other reader error is still the file's, returned.

    The reader skips the malformed lines; the well-formed rows keep their line numbers by
    taking, in order (of their rowids), the lines no malformed line holds.
    """
    con.execute("drop table if exists reject_errors; drop table if exists reject_scans")
    con.execute(
        f"""create or replace temp table landing as
        select {select} from {reader(", store_rejects = true, ignore_errors = true")}"""
    )
    other = con.execute(
        "select error_message from reject_errors where error_type not in ? limit 1",
        [list(SHAPE_ERRORS)],
    ).fetchone()
    if other:
        return _csv_reason(other[0])
    con.execute(
        f"""insert into {target}
        with bad as (select distinct line from reject_errors),
        lines as (
            select l.range as line, row_number() over (order by l.range) as _k
            from range(2, (select count(*) from landing) + (select count(*) from bad) + 2) l
            where l.range not in (select line from bad))
        select landing.*, {lineage("lines.line")}
        from landing join lines on landing.rowid + 1 = lines._k""",
        [at],
    )
    con.execute(
        f"""insert into {_ledger_target(spec, "_raw_text", "_read_error")}
        select {", ".join(["null"] * len(spec.column_names))},
               {lineage("line")}, csv_line, error_type || ': ' || error_message
        from (select distinct on (line) * from reject_errors order by line)""",
        [at],
    )
    return None


def _csv_reason(message: str) -> str:
    """The CSV reader's own reason, in one line (field count, line length, invalid byte)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        low = line.lower()
        if "expected" in low and ("column" in low or "field" in low):
            return line
        if "unicode" in low or "maximum line size" in low:
            return line
    return lines[0] if lines else message


def ingest(
    con: duckdb.DuckDBPyConnection,
    root: Path,
    run_id: str,
    loaded_at: datetime | None = None,
    spark=None,
) -> IngestResult:
    """Land every extract folder not loaded by a published run, oldest first: into the DuckDB
    store, or with `spark` (con then a SparkConnection) into the ledger on Spark."""
    ensure_store(con, spark=spark is not None)
    if spark is None:
        con.execute("set preserve_insertion_order = true")  # the default; lines are rowids
    warnings: list[str] = []
    extracts = discover_extracts(root, warnings)
    already = check_load_log(con, extracts)
    result = IngestResult(run_id, extracts, [], [], [], warnings)
    loaded_at = loaded_at or datetime.now()
    new = [e for e in extracts if e.name not in already]
    if new and spark is None:  # the ledger and its staging grow by ~3x the text they land
        (store,) = con.execute(
            "select path from duckdb_databases() where database_name = current_database()"
        ).fetchone()
        size = sum(p.stat().st_size for e in new for p in e.path.iterdir() if p.is_file())
        if store:
            ensure_free_space(Path(store).parent, 3 * size, "landing the new extracts")
    begin_run(con, run_id)
    for ext in extracts:
        if ext.name in already:
            result.skipped.append(ext.name)
            continue
        present = sorted(p.name for p in ext.path.iterdir() if p.is_file())
        for name in present:
            if name not in BY_NAME:
                result.warnings.append(f"{ext.name}/{name}: not a registry file, ignored")
        for spec in FILES:
            path = ext.path / spec.file_name
            if not path.exists():
                continue
            label = f"{ext.name}/{spec.file_name}"
            if spark is None:
                account = _land_file(con, path, spec, ext.name, label, run_id, loaded_at)
            else:
                from cryoreg.ingest.spark_landing import land_file

                account = land_file(spark, path, spec, ext.name, label, run_id, loaded_at)
            if account.unknown_columns:
                result.warnings.append(
                    f"{label}: unknown column(s) ignored: {', '.join(account.unknown_columns)}"
                )
            result.files.append(account)
        con.execute(
            "insert into audit.load_log values (?, ?, ?, ?)",
            [ext.name, ext.content_hash, run_id, loaded_at],
        )
        result.loaded.append(ext.name)
    return result
