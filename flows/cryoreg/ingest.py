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
from typing import NamedTuple

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
    # rows of earlier nights this run removed (parent deleted, or its date corrected past them)
    # and re-admitted (parent arrived, or its date corrected to allow them)
    orphans: dict[str, int] = field(default_factory=lambda: {"cascaded": 0, "readmitted": 0})


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
    # released: an orphan re-admitted once its parent arrived (added later: upgrade in place)
    con.execute(
        "alter table quarantine.rejected_rows add column if not exists released_at timestamp"
    )
    con.execute(
        "alter table quarantine.rejected_rows add column if not exists released_run_id varchar"
    )
    con.execute(
        """create table if not exists audit.orphan_log (
            run_id varchar, action varchar, entity varchar, record_id varchar, extract varchar,
            file varchar, line bigint, parent_entity varchar, parent_id varchar,
            parent_file varchar, parent_line bigint, logged_at timestamp)"""
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


class Rule(NamedTuple):
    test: str  # SQL: true when the row has the problem
    problem: str  # SQL: the problem's struct when it has, else NULL


def _problem(column: Column, test: str, code: str, message: str) -> Rule:
    """One struct per detected problem; NULL when the row is fine for this rule."""
    return Rule(
        f"({test})",
        f"case when {test} then struct_pack(col := {_sql_str(column.name)}, "
        f"val := {_ident(column.name)}, code := {_sql_str(code)}, "
        f"msg := {_sql_str(message)}) end",
    )


def _any_problem(rules: list[Rule]) -> str:
    """SQL: the row breaks a rule. Cheap booleans first; the problem structs are then built
    for the few rows that have one (`_problems`), not for every row read."""
    return " or ".join(r.test for r in rules)


def _problems(rules: list[Rule]) -> str:
    """SQL: the list of a row's problems, in rule order."""
    return f"list_filter([{', '.join(r.problem for r in rules)}], lambda p: p is not null)"


def _row_rules(spec: ExtractFile, extract_date: str) -> list[Rule]:
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
    """Split `landing` into raw.<entity> (clean rows) and quarantine (rows with problems).

    Only the rows with a problem are materialised (`checked`, with their problems); the clean
    rest goes from `landing` to raw.<entity> by an anti-join on the line number.
    """
    rules = _row_rules(spec, extract)
    idc = _ident(spec.id_column)
    # duplicate ids: the last line of each repeated id, by a hash aggregate (a window
    # partitioned by id over the whole file costs a full sort)
    checked = f"""
        select *, {_problems(rules)} as problems
        from (select l.*, d._dup_last,
                     coalesce(lower(l.record_status) = 'deleted', false) as _is_deleted,
                     date {_sql_str(extract)} as _extract_date,
                     {_sql_str(label)} as _source_file
              from landing as l
              left join (select {idc}, max(_source_line) as _dup_last from landing
                         where {idc} is not null group by {idc} having count(*) > 1) as d
                on l.{idc} = d.{idc})
        where {_any_problem(rules)}
    """
    con.execute(f"create or replace temp table checked as {checked}")
    con.execute(
        f"insert into quarantine.rejected_rows ({QUARANTINE_COLUMNS}) "
        + _quarantine_select("select * from checked", run_id, spec)
    )
    cols = ", ".join(_ident(c) for c in spec.column_names)
    con.execute(
        f"""insert into raw.{spec.entity}
        select {cols}, date {_sql_str(extract)}, {_sql_str(label)}, _source_line,
               {_sql_str(run_id)}, current_timestamp
        from landing where _source_line not in (select _source_line from checked)"""
    )


def _versions(entity: str, keys: str | None = None) -> str:
    """The current version of every id in raw.<entity> (deleted ones too): latest extract,
    then latest line, as staging's current_version macro orders them. With `keys` (a query of
    id values) only those ids are versioned: a delta night touches few of them.

    Over the whole table, most ids have one version: only the ids with several (found by a
    hash aggregate) are ranked by the window, whose partitioning would otherwise copy every
    row. A keyed set is small: one semi-join scan, then the window over what it kept.
    """
    idc = _ident(BY_ENTITY[entity].id_column)
    rank = f"""qualify row_number() over (partition by {idc}
                                       order by _extract_date desc, _source_line desc) = 1"""
    if keys is not None:
        return f"(select * from raw.{entity} where {idc} in ({keys}) {rank})"
    return f"""(with multi as (select {idc} from raw.{entity} group by {idc} having count(*) > 1)
        select * from raw.{entity} where {idc} not in (select {idc} from multi)
        union all
        (select * from raw.{entity} where {idc} in (select {idc} from multi) {rank}))"""


def _live(entity: str, keys: str | None = None) -> str:
    """Live current rows; with `keys` (a query of id values) only those ids are versioned."""
    return f"(select * from {_versions(entity, keys)} where {LIVE})"


LIVE = "coalesce(lower(record_status), '') <> 'deleted'"
CASCADE_FILE = "cascade:"  # _source_file prefix of the tombstones the cascade appends
QUARANTINE_COLUMNS = (
    "run_id, extract, file, line, record_id, column_name, raw_value, reason_code, reason, "
    "raw_record, quarantined_at"
)


def _later(row: str, date: str, line: str) -> str:
    """SQL: raw row `row` is a later version than (date, line) in current-version order."""
    d, n = f"{row}._extract_date", f"{row}._source_line"
    return f"({d} > {date} or ({d} = {date} and {n} > {line}))"


def _record(spec: ExtractFile, alias: str = "") -> str:
    """SQL: a row's extract columns as the json kept in quarantine.rejected_rows.raw_record."""
    prefix = f"{alias}." if alias else ""
    fields = ", ".join(f"{_sql_str(c)}: {prefix}{_ident(c)}" for c in spec.column_names)
    return f"to_json({{{fields}}})"


def _anchor(spec: ExtractFile, refs: str | None) -> tuple[str, str | None]:
    """(live parent relation keyed by the foreign key, parent date column) for rows of one file.

    With `refs` (a query of foreign key values: a delta night's or the cascade's few rows) only
    those parents are versioned; without, every parent is (a first load), without the
    semi-join. Imaging's parent is a live tumor of a live procedure, whose date bounds the read's.
    """
    parent, _ = spec.parent
    if spec.entity == "imaging":
        procs = f"select procedure_id from raw.tumors where tumor_id in ({refs})" if refs else None
        return (
            f"(select t.tumor_id, pr.procedure_date from {_live('tumors', refs)} t "
            f"join {_live('procedures', procs)} pr using (procedure_id))",
            "procedure_date",
        )
    return _live(parent, refs), spec.date_order[0] if spec.date_order else None


def _reference_rules(
    con: duckdb.DuckDBPyConnection, spec: ExtractFile, refs: str | None
) -> list[Rule]:
    """Fill the temp table `parent_rows` (live parents: key, parent_date) and return the rules
    a row of `spec` breaks when its parent is missing or its date precedes the parent's
    (columns parent_key and parent_date joined on the row's `r` alias)."""
    parent_entity, key = spec.parent
    parent, parent_date = _anchor(spec, refs)
    fk = next(c for c in spec.columns if c.name == key)
    rules = [_problem(fk, "parent_key is null", "orphan", f"no such {key} in {parent_entity}")]
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
    con.execute(
        f"""create or replace temp table parent_rows as
        select {key}, {date_select} as parent_date from {parent} p"""
    )
    return rules


def _resolve(con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str) -> None:
    """Quarantine this run's current rows of one file whose parent is missing or whose dates
    contradict it, once the parents are final.

    A quarantined row does not exist: the id's previous version becomes current, and is judged
    in turn when this run loaded it too (until no row of the run is left to judge). A previous
    version from an earlier run is the cascade's (`_cascade`) or, when its parent's date may
    have changed, the re-judging's (`_rejudge`).
    """
    run = _sql_str(run_id)
    entity, (_, key) = spec.entity, spec.parent
    idc = _ident(spec.id_column)
    delta = con.execute(
        f"select exists (select 1 from raw.{entity} where _run_id <> {run})"
    ).fetchone()[0]
    refs = f"select {_ident(key)} from raw.{entity} where _run_id = {run}" if delta else None
    rules = _reference_rules(con, spec, refs)
    live = "coalesce(lower(r.record_status), '') <> 'deleted'"
    current = (
        f"not exists (select 1 from raw.{entity} o where o.{idc} = r.{idc} "
        f"and {_later('o', 'r._extract_date', 'r._source_line')})"
    )
    scope = ""
    while True:
        # this run's live rows that break a rule, then only those that are current
        checked = f"""
            select r.*, {_problems(rules)} as problems
            from (select r.*, p.{key} as parent_key, p.parent_date
                  from raw.{entity} r left join parent_rows p on r.{key} = p.{key}
                  where r._run_id = {run} and {live} {scope}) r
            where ({_any_problem(rules)}) and {current}
        """
        con.execute(f"create or replace temp table checked as {checked}")
        con.execute(
            f"insert into quarantine.rejected_rows ({QUARANTINE_COLUMNS}) "
            + _quarantine_select("select * from checked", run_id, spec)
        )
        (bad,) = con.execute(
            f"""delete from raw.{entity} r using checked c
            where r._source_file = c._source_file and r._source_line = c._source_line"""
        ).fetchone()
        if not bad:
            return
        con.execute(f"create or replace temp table judged_ids as select {idc} from checked")
        scope = f"and r.{idc} in (select {idc} from judged_ids)"


def _readmit(
    con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str, code: str = "orphan"
) -> int:
    """Load rows quarantined by earlier runs for their parent (`code` 'orphan': the parent was
    missing) or against its date ('impossible_date') that pass now.

    A row quarantined only for its missing parent is what all-at-once loading would have kept
    once that parent arrived (or came back); one quarantined because its date preceded its
    parent's (procedure before birth, read before its procedure) once the parent's date was
    corrected. Orphans come back when their parent has a row of this run and is live, to be
    judged by `_resolve` with the run's rows; date rows only when their anchor changed this run
    (`changed`) and they pass the reference rules against it now (no churn of rows that still
    fail). A row goes into raw.<entity> with its own extract, file and line and this run's run
    id and load time, unless a later version of its id is in raw already (not counting the
    cascade's tombstones, nor a row the cascade removed that a warehouse of an earlier release
    still holds under its tombstone: both give way to the re-admitted copy); its quarantine
    row is marked released.
    """
    run, code_sql = _sql_str(run_id), _sql_str(code)
    entity, (parent, key) = spec.entity, spec.parent
    idc, pk = _ident(spec.id_column), _ident(BY_ENTITY[parent].id_column)
    if code == "orphan":  # an orphan's quarantined value is its foreign key
        fk, changed = "q.raw_value", f"select {pk} from raw.{parent} where _run_id = {run}"
    else:
        fk, changed = f"json_extract_string(q.raw_record, {_sql_str('$.' + key)})", CHANGED
    con.execute(
        f"""create or replace temp table readmit as
        select q.rowid as _qrow, q.*, cast(q.extract as date) as _date, {fk} as _fk
        from quarantine.rejected_rows q
        where q.reason_code = {code_sql} and q.released_at is null and q.run_id <> {run}
          and q.file = q.extract || '/{spec.file_name}' and {fk} in ({changed})"""
    )
    if not con.execute("select count(*) from readmit").fetchone()[0]:
        return 0
    if code == "orphan":
        passing = f"q._fk in (select {pk} from {_live(parent, 'select _fk from readmit')})"
    else:  # the row's own date against its live anchor's, as the first pass judged it
        rules = _reference_rules(con, spec, "select _fk from readmit")
        own = spec.date_order[1]
        con.execute(
            f"""create or replace temp table readmit as
            select * exclude (parent_key, parent_date, {own}) from (
                select q.*, p.{key} as parent_key, p.parent_date,
                       json_extract_string(q.raw_record, {_sql_str("$." + own)}) as {own}
                from readmit q left join parent_rows p on q._fk = p.{key}) r
            where not ({_any_problem(rules)})"""
        )
        passing = "true"
    # a row in raw that is also in quarantine as an orphan not released: removed by the cascade
    cascaded = (
        f"(starts_with(r._source_file, '{CASCADE_FILE}') or exists ("
        "select 1 from quarantine.rejected_rows c where c.file = r._source_file "
        f"and c.line = r._source_line and c.record_id = r.{idc} and c.reason_code = 'orphan' "
        "and c.released_at is null))"
    )
    con.execute(
        f"""create or replace temp table readmit as
        select * from readmit q
        where {passing}
          and not exists (select 1 from raw.{entity} r
                          where r.{idc} = q.record_id and not {cascaded}
                            and {_later("r", "q._date", "q.line")})
        qualify row_number() over (partition by q.file, q.line
                                   order by q.quarantined_at desc) = 1"""
    )
    # the cascade's later tombstones of these ids (and rows it removed) give way
    con.execute(
        f"""delete from raw.{entity} r using readmit q
        where r.{idc} = q.record_id and {cascaded} and {_later("r", "q._date", "q.line")}"""
    )
    con.execute(
        f"""delete from raw.{entity} r using readmit q
        where r._source_file = q.file and r._source_line = q.line"""
    )
    cols = ", ".join(
        f"json_extract_string(q.raw_record, {_sql_str('$.' + c)})" for c in spec.column_names
    )
    (n,) = con.execute(
        f"""insert into raw.{entity}
        select {cols}, q._date, q.file, q.line, {run}, current_timestamp from readmit q"""
    ).fetchone()
    con.execute(
        f"""update quarantine.rejected_rows q
        set released_at = current_timestamp, released_run_id = {run}
        from readmit r
        where q.file = r.file and q.line = r.line and q.reason_code = {code_sql}
          and q.released_at is null and q.run_id <> {run}"""
    )
    con.execute(
        f"""insert into audit.orphan_log
        select {run}, 'readmitted', {_sql_str(entity)}, q.record_id, q.extract, q.file, q.line,
               {_sql_str(parent)}, p.{pk}, p._source_file, p._source_line, current_timestamp
        from readmit q join {_versions(parent, "select _fk from readmit")} p
          on q._fk = p.{pk}"""
    )
    return n


def _cascade(con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str) -> int:
    """Remove live rows whose parent this run deleted (or the cascade removed), as all-at-once
    loading would have quarantined them as orphans. Returns the rows removed.

    Each removed row leaves raw.<entity> for quarantine (reason 'orphan', at its own file and
    line, with its record) and gets an audit.orphan_log row naming the parent; then the id
    falls back to its previous version (`_fall_back`). Only parents with a deletion row this
    run are looked at.
    """
    run = _sql_str(run_id)
    entity, (parent, key) = spec.entity, spec.parent
    idc, pk, fk = _ident(spec.id_column), _ident(BY_ENTITY[parent].id_column), _ident(key)
    deletions = (
        f"select {pk} from raw.{parent} where _run_id = {run} and lower(record_status) = 'deleted'"
    )
    con.execute(
        f"""create or replace temp table dead as
        select {pk} as _pid, _extract_date as _pdate, _source_file as _pfile,
               _source_line as _pline
        from {_versions(parent, deletions)} where not ({LIVE})"""
    )
    if not con.execute("select count(*) from dead").fetchone()[0]:
        return 0
    children = f"select {idc} from raw.{entity} where {fk} in (select _pid from dead)"
    con.execute(
        f"""create or replace temp table doomed as
        select c.*, d.* from {_live(entity, children)} c join dead d on c.{fk} = d._pid"""
    )
    parent_note = (
        f"case when starts_with(c._pfile, '{CASCADE_FILE}') "
        f"then ' removed by the cascade from ' || substr(c._pfile, {len(CASCADE_FILE) + 1}) "
        "else ' deleted in ' || c._pfile || ' line ' || c._pline end"
    )
    con.execute(
        f"""insert into quarantine.rejected_rows ({QUARANTINE_COLUMNS})
        select {run}, strftime(c._extract_date, '%Y-%m-%d'), c._source_file, c._source_line,
               c.{idc}, {_sql_str(key)}, c.{fk}, 'orphan',
               {_sql_str(key)} || ': parent ' || chr(39) || c.{fk} || chr(39) || {parent_note}
               || '; removed from the live registry (cascade)',
               {_record(spec, "c")}, current_timestamp
        from doomed c"""
    )
    return _take_out_doomed(con, spec, run_id, "c._pid")


def _take_out_doomed(
    con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str, parent_id: str
) -> int:
    """The shared end of the cascade and the re-judging, once the rows of temp table `doomed`
    (columns _pdate, _pfile, _pline: the parent version that removes them) are quarantined:
    log them as 'cascaded' naming that parent (`parent_id`, an expression over alias c), take
    them out of raw.<entity> and let each id fall back (`_fall_back`). Returns the rows
    removed."""
    entity, parent = spec.entity, spec.parent[0]
    con.execute(
        f"""insert into audit.orphan_log
        select {_sql_str(run_id)}, 'cascaded', {_sql_str(entity)}, c.{_ident(spec.id_column)},
               strftime(c._extract_date, '%Y-%m-%d'), c._source_file, c._source_line,
               {_sql_str(parent)}, {parent_id}, c._pfile, c._pline, current_timestamp
        from doomed c"""
    )
    _tombstone_places(con, spec, "doomed")
    return _remove(con, entity, "doomed") + _fall_back(con, spec, run_id)


def _tombstone_places(con: duckdb.DuckDBPyConnection, spec: ExtractFile, rows: str) -> None:
    """Fill the temp table `cascaded`: per row of temp table `rows` (columns _pdate, _pfile,
    _pline: the parent version that removes it), where its id's tombstone goes if no version
    is left: after the removed row, rooted at 'cascade:<file of the parent's change>'."""
    idc = _ident(spec.id_column)
    root = f"'{CASCADE_FILE}' || regexp_replace(c._pfile, '^{CASCADE_FILE}', '')"
    con.execute(
        f"""create or replace temp table cascaded as
        select {idc}, greatest(c._extract_date, c._pdate) as _tdate, {root} as _tfile,
               case when c._pdate > c._extract_date then c._pline else c._source_line + 1 end
                   as _tline
        from {rows} c"""
    )


def _fall_back(con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str) -> int:
    """After the cascade or the re-judging removed the current rows of the ids in temp table
    `cascaded` (`_tombstone_places`), make each id what all-at-once loading gives. Returns the
    further rows removed.

    As `_resolve` does, the id's previous version is current and is judged against the live
    parents; one that breaks a rule goes too (one round per version depth). An id left with a
    version gets it back as current with this run's run id and load time (its own extract,
    file and line keep it in order); an id left with none gets a tombstone (record_status
    'deleted', the place `cascaded` gives, this run's run id and load time).
    """
    run = _sql_str(run_id)
    entity, (parent, key) = spec.entity, spec.parent
    idc, fk = _ident(spec.id_column), _ident(key)
    removed, scope = 0, "cascaded"
    while True:
        # the previous versions, now current: those that break a rule go as well
        con.execute(
            f"""create or replace temp table previous as
            select * from {_live(entity, f"select {idc} from {scope}")}"""
        )
        rules = _reference_rules(con, spec, f"select {fk} from previous")
        con.execute(
            f"""create or replace temp table checked as
            select r.*, {_problems(rules)} as problems
            from (select r.*, p.{fk} as parent_key, p.parent_date
                  from previous r left join parent_rows p on r.{fk} = p.{fk}) r
            where {_any_problem(rules)}"""
        )
        if not con.execute("select count(*) from checked").fetchone()[0]:
            break
        con.execute(
            f"insert into quarantine.rejected_rows ({QUARANTINE_COLUMNS}) "
            + _quarantine_select("select * from checked", run_id, spec)
        )
        con.execute(
            f"""insert into audit.orphan_log
            select {run}, 'cascaded', {_sql_str(entity)}, c.{idc},
                   strftime(c._extract_date, '%Y-%m-%d'), c._source_file, c._source_line,
                   {_sql_str(parent)}, c.{fk}, null, null, current_timestamp
            from checked c"""
        )
        removed += _remove(con, entity, "checked")
        con.execute(f"create or replace temp table judged as select {idc} from checked")
        scope = "judged"
    # the version left current (live or a deletion) is this run's change of the id's state
    con.execute(
        f"""update raw.{entity} r set _run_id = {run}, _loaded_at = current_timestamp
        from {_versions(entity, f"select {idc} from cascaded")} v
        where r.{idc} = v.{idc} and r._extract_date = v._extract_date
          and r._source_file = v._source_file and r._source_line = v._source_line"""
    )
    tomb = ", ".join(
        f"c.{_ident(c)}" if c == spec.id_column else "'deleted'" if c == "record_status" else "null"
        for c in spec.column_names
    )
    con.execute(
        f"""insert into raw.{entity}
        select {tomb}, c._tdate, c._tfile, c._tline, {run}, current_timestamp
        from cascaded c where c.{idc} not in (select {idc} from raw.{entity})"""
    )
    return removed


# temp table of the foreign-key values whose date anchor changed this run (`_changed`)
CHANGED = "select _key from changed"


def _changed(con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str) -> bool:
    """Fill the temp table `changed` with the foreign-key values of `spec` whose date anchor
    has a row of this run (a new version, a deletion, a tombstone, a re-admitted or restored
    row): the patient of a procedure; the tumor of a read, or the tumor's procedure.

    False (and nothing computed) when no row can need it: no live row of an earlier run to
    re-judge and no earlier date rejection to re-admit, as on a first load.
    """
    run = _sql_str(run_id)
    parent, key = spec.parent
    pk = _ident(BY_ENTITY[parent].id_column)
    (needed,) = con.execute(
        f"""select exists (select 1 from raw.{spec.entity} where _run_id <> {run})
            or exists (select 1 from quarantine.rejected_rows
                       where reason_code = 'impossible_date' and released_at is null
                         and run_id <> {run} and file = extract || '/{spec.file_name}')"""
    ).fetchone()
    if not needed:
        return False
    keys = f"select {pk} from raw.{parent} where _run_id = {run}"
    if spec.entity == "imaging":
        keys += (
            " union select tumor_id from raw.tumors where procedure_id in "
            f"(select procedure_id from raw.procedures where _run_id = {run})"
        )
    con.execute(f"create or replace temp table changed as select {pk} as _key from ({keys})")
    return bool(con.execute("select count(*) from changed").fetchone()[0])


def _rejudge(con: duckdb.DuckDBPyConnection, spec: ExtractFile, run_id: str) -> int:
    """Judge again the current live rows of earlier runs whose date anchor changed this run
    (temp table `changed`), as all-at-once loading judges them against the final parent:
    a procedure now before its patient's corrected birth date, a read now before its
    procedure's corrected date (or that of the procedure its tumor moved to). Returns the rows
    removed.

    A row that breaks a rule leaves raw.<entity> for quarantine with the first pass's reason
    and message (and an audit.orphan_log row 'cascaded' naming the parent), and its id falls
    back to its previous version (`_fall_back`); the cascade then takes a removed parent's
    children. Rows of this run were judged against the final parents already.
    """
    run = _sql_str(run_id)
    entity, (parent, key) = spec.entity, spec.parent
    idc, pk, fk = _ident(spec.id_column), _ident(BY_ENTITY[parent].id_column), _ident(key)
    rules = _reference_rules(con, spec, CHANGED)
    children = f"select {idc} from raw.{entity} where {fk} in ({CHANGED}) and _run_id <> {run}"
    con.execute(
        f"""create or replace temp table checked as
        select r.*, {_problems(rules)} as problems
        from (select r.*, p.{fk} as parent_key, p.parent_date
              from {_live(entity, children)} r left join parent_rows p on r.{fk} = p.{fk}
              where r._run_id <> {run} and r.{fk} in ({CHANGED})) r
        where {_any_problem(rules)}"""
    )
    if not con.execute("select count(*) from checked").fetchone()[0]:
        return 0
    con.execute(
        f"insert into quarantine.rejected_rows ({QUARANTINE_COLUMNS}) "
        + _quarantine_select("select * from checked", run_id, spec)
    )
    # the parent's current version: named in the log, and where a tombstone goes
    con.execute(
        f"""create or replace temp table doomed as
        select c.*, coalesce(p._extract_date, c._extract_date) as _pdate,
               coalesce(p._source_file, c._source_file) as _pfile,
               coalesce(p._source_line, c._source_line) as _pline
        from checked c left join {_versions(parent, f"select {fk} from checked")} p
          on c.{fk} = p.{pk}"""
    )
    return _take_out_doomed(con, spec, run_id, f"c.{fk}")


def _remove(con: duckdb.DuckDBPyConnection, entity: str, rows: str) -> int:
    """Delete from raw.<entity> the rows of temp table `rows` (by id and lineage)."""
    idc = _ident(BY_ENTITY[entity].id_column)
    (n,) = con.execute(
        f"""delete from raw.{entity} r using {rows} c
        where r.{idc} = c.{idc} and r._extract_date = c._extract_date
          and r._source_file = c._source_file and r._source_line = c._source_line"""
    ).fetchone()
    return n


def _resolve_references(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """After all of the run's extracts are applied, make the live registry what loading every
    folder at once would give: parents before children, re-admit orphans whose parent is live
    now, quarantine this run's orphans and date contradictions, cascade deletions to the live
    rows of earlier runs, re-judge the earlier rows whose parent's date may have changed and
    re-admit the date rejections that pass now. Returns the rows cascaded (removed from the
    live registry) and re-admitted."""
    counts = {"cascaded": 0, "readmitted": 0}
    for spec in FILES:
        if spec.parent is None:
            continue
        counts["readmitted"] += _readmit(con, spec, run_id)
        _resolve(con, spec, run_id)
        counts["cascaded"] += _cascade(con, spec, run_id)
        if spec.date_order and _changed(con, spec, run_id):
            counts["cascaded"] += _rejudge(con, spec, run_id)
            counts["readmitted"] += _readmit(con, spec, run_id, "impossible_date")
    return counts


def orphan_counts(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, int]:
    """Rows a run removed by the cascade and re-admitted, from audit.orphan_log."""
    rows = con.execute(
        "select action, count(*) from audit.orphan_log where run_id = ? group by all", [run_id]
    ).fetchall()
    found = dict(rows)
    return {"cascaded": found.get("cascaded", 0), "readmitted": found.get("readmitted", 0)}


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
        result.orphans = _resolve_references(con, run_id)
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
