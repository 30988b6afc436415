"""Ingest: load new extract folders into raw.*, quarantining bad rows, all in set-based SQL.

Row problems never stop a run: the row goes to quarantine.rejected_rows with every problem it
has. File problems (missing required column, not UTF-8 CSV, empty root, too many rejected rows)
stop the run with one line naming the file.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cryoreg.registry import BY_ENTITY, BY_NAME, FILES, Column, ExtractFile

EXTRACT_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INTEGER_PATTERN = r"[+-]?[0-9]+"
NUMBER_PATTERN = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)"
LINEAGE = ("_extract_date", "_source_file", "_source_line", "_run_id", "_loaded_at")


class RegistryInputError(RuntimeError):
    """A file-level problem: the run must stop and publish nothing."""


@dataclass
class FileAccount:
    extract: str
    file: str
    read: int = 0
    loaded: int = 0
    quarantined: int = 0
    unknown_columns: list[str] = field(default_factory=list)


@dataclass
class Extract:
    name: str
    path: Path
    content_hash: str


@dataclass
class IngestResult:
    extracts: list[Extract]
    loaded: list[str]
    skipped: list[str]
    files: list[FileAccount]
    warnings: list[str]


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def folder_hash(folder: Path) -> str:
    """Content hash of an extract folder: file names and bytes, in name order."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def discover_extracts(root: Path) -> list[Extract]:
    """Extract folders under root, oldest first; an empty or missing root is a file error."""
    if not root.is_dir():
        raise RegistryInputError(f"{root}: extracts root does not exist")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and EXTRACT_FOLDER.match(p.name))
    if not folders:
        raise RegistryInputError(f"{root}: extracts root holds no extract folder (YYYY-MM-DD)")
    return [Extract(p.name, p, folder_hash(p)) for p in folders]


def ensure_schemas(con: duckdb.DuckDBPyConnection) -> None:
    """Create raw, quarantine and audit tables on first use."""
    for schema in ("raw", "quarantine", "audit"):
        con.execute(f"create schema if not exists {schema}")
    for spec in FILES:
        cols = ", ".join(f"{_ident(c)} varchar" for c in spec.column_names)
        con.execute(
            f"create table if not exists raw.{spec.entity} ({cols}, _extract_date date, "
            "_source_file varchar, _source_line bigint, _run_id varchar, _loaded_at timestamp)"
        )
    con.execute(
        """create table if not exists quarantine.rejected_rows (
            run_id varchar, extract varchar, file varchar, line bigint, record_id varchar,
            column_name varchar, raw_value varchar, reason_code varchar, reason varchar,
            raw_record json, quarantined_at timestamp)"""
    )
    con.execute(
        """create table if not exists audit.load_log (
            extract varchar, content_hash varchar, run_id varchar, loaded_at timestamp)"""
    )
    con.execute(
        """create table if not exists audit.file_accounting (
            run_id varchar, extract varchar, file varchar, rows_read bigint,
            rows_loaded bigint, rows_quarantined bigint, unknown_columns varchar[])"""
    )


def read_header(path: Path, label: str) -> list[str]:
    """Normalised header names (trimmed, lower case); the file must be UTF-8 CSV."""
    try:
        with path.open("r", encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except UnicodeDecodeError as exc:
        first, reason = None, exc.reason
    if first is None:  # raised outside the except block: no context whose frames hold the
        # connection (DuckDB leak warnings after the one-line error)
        raise RegistryInputError(f"{label}: not UTF-8 text ({reason})")
    if not first.strip():
        raise RegistryInputError(f"{label}: empty file, no header row")
    names = next(csv.reader(io.StringIO(first)))
    return [n.strip().lower() for n in names]


def _problem(column: Column, test: str, code: str, message: str) -> str:
    """One struct per detected problem; NULL when the row is fine for this rule."""
    return (
        f"case when {test} then struct_pack(col := {_sql_str(column.name)}, "
        f"val := {_ident(column.name)}, code := {_sql_str(code)}, "
        f"msg := {_sql_str(message)}) end"
    )


def _row_rules(spec: ExtractFile, extract_date: str) -> list[str]:
    """SQL expressions that detect every in-row problem of one file's rows."""
    rules = []
    for col in spec.columns:
        c = _ident(col.name)
        if col.required:
            test = f"{c} is null and not _is_deleted"
            if col.name == spec.id_column:
                test = f"{c} is null"
            rules.append(_problem(col, test, "missing_required", "missing required value"))
        if col.kind == "date":
            rules.append(
                _problem(
                    col,
                    f"{c} is not null and (not regexp_full_match({c}, '\\d{{4}}-\\d{{2}}-\\d{{2}}')"
                    f" or try_strptime({c}, '%Y-%m-%d') is null)",
                    "bad_date",
                    "unparseable date (expected YYYY-MM-DD)",
                )
            )
            rules.append(
                _problem(
                    col,
                    f"try_cast({c} as date) > date {_sql_str(extract_date)}",
                    "future_date",
                    "date after the extract date",
                )
            )
        elif col.kind == "code":
            allowed = ", ".join(_sql_str(v.lower()) for v in col.codes)
            rules.append(
                _problem(col, f"lower({c}) not in ({allowed})", "unknown_code", "unknown code")
            )
        elif col.kind in ("integer", "number"):
            # a strict pattern: DuckDB's casts would also take '3.5' -> 4, '0x10' or '1_000'
            pattern = INTEGER_PATTERN if col.kind == "integer" else NUMBER_PATTERN
            sql_type = "bigint" if col.kind == "integer" else "double"
            rules.append(
                _problem(
                    col,
                    f"{c} is not null and not regexp_full_match({c}, '{pattern}')",
                    "not_a_number",
                    f"not {'an integer' if col.kind == 'integer' else 'a number'}",
                )
            )
            rules.append(
                _problem(
                    col,
                    f"regexp_full_match({c}, '{pattern}') "
                    f"and cast({c} as {sql_type}) not between {col.low} and {col.high}",
                    "out_of_range",
                    f"outside {col.low:g}-{col.high:g}",
                )
            )
    if spec.entity == "patients":
        for later in ("death_date", "last_contact_date"):
            rules.append(
                _problem(
                    next(c for c in spec.columns if c.name == later),
                    f"try_cast({later} as date) < try_cast(birth_date as date)",
                    "impossible_date",
                    "before birth",
                )
            )
    id_col = next(c for c in spec.columns if c.name == spec.id_column)
    idc = _ident(spec.id_column)
    rules.append(
        _problem(
            id_col,
            f"{idc} is not null and _source_line < _dup_last",
            "duplicate_id",
            "duplicate id in file (a later row replaces it)",
        )
    )
    return rules


def _quarantine_select(checked_sql: str, run_id: str, spec: ExtractFile) -> str:
    """Shape rows that have problems into quarantine.rejected_rows."""
    record = ", ".join(f"{_sql_str(c)}: {_ident(c)}" for c in spec.column_names)
    shown_value = "coalesce(' ' || chr(39) || p.val || chr(39), '')"
    return f"""
        select {_sql_str(run_id)}, strftime(_extract_date, '%Y-%m-%d'), _source_file,
               _source_line, {_ident(spec.id_column)}, problems[1].col, problems[1].val,
               problems[1].code,
               array_to_string(list_transform(problems,
                   lambda p: p.col || ': ' || p.msg || {shown_value}), '; '),
               to_json({{{record}}}), current_timestamp
        from ({checked_sql}) as checked
        where len(problems) > 0
    """


def _land_file(
    con: duckdb.DuckDBPyConnection, path: Path, spec: ExtractFile, extract: str, label: str
) -> FileAccount:
    """Read one CSV into the temp table `landing`, checking its header first."""
    header = read_header(path, label)
    missing = [c for c in spec.required_names if c not in header]
    if missing:
        raise RegistryInputError(f"{label}: missing required column {', '.join(missing)}")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise RegistryInputError(f"{label}: column {', '.join(dupes)} appears more than once")
    account = FileAccount(extract, label)
    account.unknown_columns = [h for h in header if h not in spec.column_names]
    positional = {f"c{i}": "VARCHAR" for i in range(len(header))}
    by_name = {name: f"c{i}" for i, name in enumerate(header)}
    select = ", ".join(
        f"nullif(trim({by_name[c]}), '') as {_ident(c)}" if c in by_name else f"null as {_ident(c)}"
        for c in spec.column_names
    )
    reason = None
    try:
        con.execute(
            f"""create or replace temp table landing as
            select row_number() over () + 1 as _source_line, {select}
            from read_csv({_sql_str(str(path))}, header = false, skip = 1, auto_detect = false,
                          delim = ',', quote = '"', escape = '"', columns = {positional},
                          strict_mode = true, null_padding = false)"""
        )
    except duckdb.Error as exc:
        detail = str(exc).splitlines()
        reason = next((d for d in detail if "unicode" in d.lower()), detail[0])
    if reason is not None:  # raised outside the except block: no context whose frames hold
        # the connection (DuckDB leak warnings at exit; `from None` keeps __context__)
        raise RegistryInputError(f"{label}: not a valid UTF-8 CSV file: {reason}")
    account.read = con.execute("select count(*) from landing").fetchone()[0]
    return account


def _load_landing(
    con: duckdb.DuckDBPyConnection, spec: ExtractFile, extract: str, label: str, run_id: str
) -> None:
    """Split `landing` into raw.<entity> (clean rows) and quarantine (rows with problems)."""
    rules = ",\n".join(_row_rules(spec, extract))
    idc = _ident(spec.id_column)
    # duplicate ids: the last line of each repeated id, by a hash aggregate (a window
    # partitioned by id over the whole file costs a full sort)
    checked = f"""
        select *, list_filter([{rules}], lambda p: p is not null) as problems
        from (select l.*, d._dup_last,
                     coalesce(lower(l.record_status) = 'deleted', false) as _is_deleted,
                     date {_sql_str(extract)} as _extract_date,
                     {_sql_str(label)} as _source_file
              from landing as l
              left join (select {idc}, max(_source_line) as _dup_last from landing
                         where {idc} is not null group by {idc} having count(*) > 1) as d
                on l.{idc} = d.{idc})
    """
    con.execute(f"create or replace temp table checked as {checked}")
    con.execute(
        "insert into quarantine.rejected_rows "
        + _quarantine_select("select * from checked", run_id, spec)
    )
    cols = ", ".join(_ident(c) for c in spec.column_names)
    con.execute(
        f"""insert into raw.{spec.entity}
        select {cols}, _extract_date, _source_file, _source_line, {_sql_str(run_id)},
               current_timestamp
        from checked where len(problems) = 0"""
    )


def _current(entity: str) -> str:
    """The current version of every live id in raw.<entity>."""
    spec = BY_ENTITY[entity]
    idc = _ident(spec.id_column)
    return f"""(select * from raw.{entity}
        qualify row_number() over (partition by {idc}
                                   order by _extract_date desc, _source_line desc) = 1)"""


def _live(entity: str, keys: str | None = None) -> str:
    """Live current rows; with `keys` (a query of id values) only those ids are versioned."""
    live = "coalesce(lower(record_status), '') <> 'deleted'"
    if keys is None:
        return f"(select * from {_current(entity)} where {live})"
    spec = BY_ENTITY[entity]
    idc = _ident(spec.id_column)
    current = f"""(select * from raw.{entity} where {idc} in ({keys})
        qualify row_number() over (partition by {idc}
                                   order by _extract_date desc, _source_line desc) = 1)"""
    return f"(select * from {current} where {live})"


def _resolve_references(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Quarantine this run's rows whose parent is missing or whose dates contradict it.

    Runs after all of the run's extracts are applied, parents before children, so that a row
    orphaned by a quarantined parent is caught too.
    """
    run = _sql_str(run_id)

    def run_ids(entity: str) -> str:
        """Ids this run touched: only their versions are looked at (a delta night is small)."""
        idc = _ident(BY_ENTITY[entity].id_column)
        return f"select {idc} from raw.{entity} where _run_id = {run}"

    def keys(entity: str, key: str) -> str:
        """Parent keys referenced by this run's rows of entity."""
        return f"select {key} from raw.{entity} where _run_id = {run}"

    tumor_keys = keys("imaging", "tumor_id")
    tumor_procedures = f"select procedure_id from raw.tumors where tumor_id in ({tumor_keys})"
    anchors = {
        # entity -> (parent relation, parent key, parent date expression)
        "procedures": (
            _live("patients", keys("procedures", "patient_mrn")),
            "patient_mrn",
            "birth_date",
        ),
        "tumors": (_live("procedures", keys("tumors", "procedure_id")), "procedure_id", None),
        "imaging": (
            f"(select t.tumor_id, pr.procedure_date from {_live('tumors', tumor_keys)} t "
            f"join {_live('procedures', tumor_procedures)} pr "
            "using (procedure_id))",
            "tumor_id",
            "procedure_date",
        ),
        "adverse_events": (
            _live("procedures", keys("adverse_events", "procedure_id")),
            "procedure_id",
            None,
        ),
    }
    for entity, (parent, key, parent_date) in anchors.items():
        spec = BY_ENTITY[entity]
        fk = next(c for c in spec.columns if c.name == key)
        rules = [_problem(fk, "parent_key is null", "orphan", f"no such {key} in {spec.parent[0]}")]
        if parent_date:
            own_date = spec.date_order[1]
            own = next(c for c in spec.columns if c.name == own_date)
            rules.append(
                _problem(
                    own,
                    f"try_cast(r.{own_date} as date) < try_cast(parent_date as date)",
                    "impossible_date",
                    spec.date_order[2],
                )
            )
        date_select = f"p.{parent_date}" if parent_date else "null"
        checked = f"""
            select r.*, list_filter([{", ".join(rules)}], lambda p: p is not null) as problems
            from (select r.*, p.{key} as parent_key, {date_select} as parent_date
                  from {_live(entity, run_ids(entity))} r left join {parent} p on r.{key} = p.{key}
                  where r._run_id = {run}) r
        """
        con.execute(f"create or replace temp table checked as {checked}")
        con.execute(
            "insert into quarantine.rejected_rows "
            + _quarantine_select("select * from checked", run_id, spec)
        )
        con.execute(
            f"""delete from raw.{entity} r using checked c
            where len(c.problems) > 0 and r._source_file = c._source_file
              and r._source_line = c._source_line"""
        )


def _check_load_log(con: duckdb.DuckDBPyConnection, extracts: list[Extract]) -> set[str]:
    """Names already loaded; a loaded folder whose content changed is a file error."""
    seen = dict(con.execute("select extract, content_hash from audit.load_log").fetchall())
    for ext in extracts:
        if ext.name in seen and seen[ext.name] != ext.content_hash:
            raise RegistryInputError(
                f"{ext.path}: extract changed after it was loaded "
                f"(hash {ext.content_hash[:12]} vs {seen[ext.name][:12]}); refusing to reload"
            )
    return set(seen)


def ingest(
    con: duckdb.DuckDBPyConnection, root: Path, run_id: str, quarantine_limit: float
) -> IngestResult:
    """Load every extract folder not loaded before, then resolve references across them."""
    ensure_schemas(con)
    extracts = discover_extracts(root)
    already = _check_load_log(con, extracts)
    result = IngestResult(extracts, [], [], [], [])
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
            account = _land_file(con, path, spec, ext.name, label)
            if account.unknown_columns:
                result.warnings.append(
                    f"{label}: unknown column(s) ignored: {', '.join(account.unknown_columns)}"
                )
            _load_landing(con, spec, ext.name, label, run_id)
            result.files.append(account)
        con.execute(
            "insert into audit.load_log values (?, ?, ?, current_timestamp)",
            [ext.name, ext.content_hash, run_id],
        )
        result.loaded.append(ext.name)
    if result.loaded:
        _resolve_references(con, run_id)
    _account(con, result, run_id, quarantine_limit)
    return result


def _account(
    con: duckdb.DuckDBPyConnection, result: IngestResult, run_id: str, limit: float
) -> None:
    """Fill loaded/quarantined per file, prove read = loaded + quarantined, apply the limit."""
    loaded: dict[str, int] = {}
    for spec in FILES:
        loaded.update(
            con.execute(
                f"select _source_file, count(*) from raw.{spec.entity} "
                "where _run_id = ? group by all",
                [run_id],
            ).fetchall()
        )
    rejected = dict(
        con.execute(
            "select file, count(*) from quarantine.rejected_rows where run_id = ? group by all",
            [run_id],
        ).fetchall()
    )
    for acc in result.files:
        acc.loaded = loaded.get(acc.file, 0)
        acc.quarantined = rejected.get(acc.file, 0)
        if acc.read != acc.loaded + acc.quarantined:
            raise RegistryInputError(
                f"{acc.file}: row accounting broken: read {acc.read} != loaded {acc.loaded}"
                f" + quarantined {acc.quarantined}"
            )
        con.execute(
            "insert into audit.file_accounting values (?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                acc.extract,
                acc.file,
                acc.read,
                acc.loaded,
                acc.quarantined,
                acc.unknown_columns,
            ],
        )
    for acc in result.files:
        if acc.read and acc.quarantined / acc.read > limit:
            first = con.execute(
                "select reason from quarantine.rejected_rows where run_id = ? and file = ? "
                "order by line limit 1",
                [run_id, acc.file],
            ).fetchone()[0]
            raise RegistryInputError(
                f"{acc.file}: {acc.quarantined} of {acc.read} rows quarantined "
                f"({acc.quarantined / acc.read:.1%}), above the limit of {limit:.1%}; "
                f"first problem: {first}"
            )
