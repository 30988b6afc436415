"""Contracts: pandera (polars) models of the five extract files, derived from registry.py.

They run after ingest on the raw rows this run loaded. Ingest's SQL quarantine should already
have rejected every row that breaks the extract contract, so any failure here is a row that
slipped through: a fatal conformance failure. Relational facts that need the whole table (how
often an id occurs in its file, whether the parent exists, the parent's date) are computed in
DuckDB and checked row by row here; the frames travel through Arrow into polars, in chunks.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pandera.polars as pa
import polars as pl

from cryoreg.quality import CheckResult
from cryoreg.registry import BY_ENTITY, FILES, Column, ExtractFile

CHUNK_ROWS = 1_000_000
ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
INTEGER = r"^[+-]?[0-9]+$"
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
LINEAGE = ("_extract_date", "_source_file", "_source_line")

COMPLETENESS = {"required", "not_nullable"}
CONFORMANCE = {
    "iso_date",
    "code",
    "integer",
    "number",
    "range",
    "unique_id_in_file",
    "parent_exists",
    "field_uniqueness",
    "str_matches",
    "isin",
    "column_in_dataframe",
    "schema",
}


def _deleted() -> pl.Expr:
    return pl.col("record_status").str.to_lowercase().eq("deleted").fill_null(False)


def _parse_date(name: str) -> pl.Expr:
    return pl.col(name).str.to_date("%Y-%m-%d", strict=False)


def _parsed(name: str) -> str:
    """The column holding a text date parsed (null when it does not parse): see with_dates."""
    return f"_date {name}"


def _as_date(name: str) -> pl.Expr:
    return pl.col(_parsed(name))


def with_dates(frame: pl.DataFrame, spec: ExtractFile) -> pl.DataFrame:
    """The frame with each text date column (and the parent's date) parsed once.

    Two or three checks read each date (format, not after the extract, not before birth or
    the parent); parsing is most of their cost on millions of rows.
    """
    dates = [c.name for c in spec.columns if c.kind == "date"] + ["_parent_date"]
    return frame.with_columns(_parse_date(c).alias(_parsed(c)) for c in dates if c in frame.columns)


def _rule(name: str, build) -> pa.Check:
    """An element-wise check whose expression may read other columns of the row."""
    return pa.Check(lambda data: data.lazyframe.select(build(data.key)), name=name)


def _column_checks(spec: ExtractFile, col: Column) -> list[pa.Check]:
    checks = []
    if col.required:
        if col.name == spec.id_column:
            checks.append(_rule("required", lambda k: pl.col(k).is_not_null()))
        else:
            checks.append(_rule("required", lambda k: pl.col(k).is_not_null() | _deleted()))
    if col.kind == "date":
        checks.append(
            _rule(
                "iso_date",
                lambda k: (
                    pl.col(k).is_null()
                    | (pl.col(k).str.contains(ISO_DATE) & _as_date(k).is_not_null())
                ),
            )
        )
        checks.append(
            _rule(
                "not_after_extract",
                lambda k: (_as_date(k) <= pl.col("_extract_date")).fill_null(True),
            )
        )
    elif col.kind == "code":
        allowed = [c.lower() for c in col.codes]
        checks.append(
            _rule("code", lambda k: pl.col(k).str.to_lowercase().is_in(allowed).fill_null(True))
        )
    elif col.kind in ("integer", "number"):
        pattern = INTEGER if col.kind == "integer" else NUMBER
        low, high = col.low, col.high
        checks.append(
            _rule(col.kind, lambda k: pl.col(k).is_null() | pl.col(k).str.contains(pattern))
        )
        checks.append(
            _rule(
                "range",
                lambda k: (
                    pl.col(k).cast(pl.Float64, strict=False).is_between(low, high).fill_null(True)
                ),
            )
        )
    if spec.entity == "patients" and col.name in ("death_date", "last_contact_date"):
        checks.append(
            _rule(
                "not_before_birth",
                lambda k: (_as_date(k) >= _as_date("birth_date")).fill_null(True),
            )
        )
    if spec.date_order and col.name == spec.date_order[1]:
        checks.append(
            _rule(
                "not_before_parent",
                lambda k: (_as_date(k) >= _as_date("_parent_date")).fill_null(True),
            )
        )
    if spec.parent and col.name == spec.parent[1]:
        checks.append(_rule("parent_exists", lambda k: pl.col("_parent_found").fill_null(True)))
    return checks


def extract_schema(spec: ExtractFile) -> pa.DataFrameSchema:
    """The pandera model of one extract file's raw rows (every value is text as received)."""
    columns = {
        col.name: pa.Column(pl.String, checks=_column_checks(spec, col), nullable=True)
        for col in spec.columns
    }
    columns["record_status"] = pa.Column(pl.String, nullable=True)
    columns["_extract_date"] = pa.Column(pl.Date, nullable=False)
    columns["_copies_in_file"] = pa.Column(pl.Int64, nullable=False)
    return pa.DataFrameSchema(
        columns,
        checks=[
            pa.Check(
                lambda data: data.lazyframe.select(pl.col("_copies_in_file") == 1),
                name="unique_id_in_file",
            )
        ],
        name=f"raw.{spec.entity}",
        strict=False,
    )


SCHEMAS: dict[str, pa.DataFrameSchema] = {spec.entity: extract_schema(spec) for spec in FILES}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _version(prefix: str = "") -> str:
    """An id's version (extract date, then line) as one bigint: aggregates fast, orders alike."""
    return (
        f"(date_diff('day', date '1970-01-01', {prefix}_extract_date)::bigint << 40)"
        f" + {prefix}_source_line"
    )


def current_rows(entity: str, columns: tuple[str, ...], keys: str | None = None) -> str:
    """The current version of each id (deleted ids dropped, as staging and ingest see them)
    with `columns` of that version; only ids in `keys` (a subquery) when given.

    A hash aggregate (arg_max on the version), not a window over every row: a window sorts the
    whole table, which on a delta night costs more than the night's checks.
    """
    spec = BY_ENTITY[entity]
    idc, version = _q(spec.id_column), _version()
    picks = "".join(f", arg_max_null({_q(c)}, {version}) as {_q(c)}" for c in columns)
    scope = f"where {idc} in ({keys})" if keys else ""
    return f"""(select {idc}{picks} from raw.{entity} {scope} group by {idc}
        having coalesce(lower(arg_max_null(record_status, {version})), '') <> 'deleted')"""


def _night(entity: str, column: str) -> str:
    return f"select {_q(column)} from raw.{entity} where _run_id = $run_id"


def _parent_relation(spec: ExtractFile, scoped: bool) -> str | None:
    """(key, _pdate) of each live parent; scoped: only the parents the night's rows name."""
    if spec.parent is None:
        return None
    parent, key = spec.parent
    keys = _night(spec.entity, key) if scoped else None
    if spec.entity == "imaging":
        tumors = current_rows("tumors", ("procedure_id",), keys)
        procedures = current_rows(
            "procedures",
            ("procedure_date",),
            f"select procedure_id from {tumors}" if scoped else None,
        )
        return (
            f"(select t.tumor_id, pr.procedure_date as _pdate from {tumors} t "
            f"join {procedures} pr using (procedure_id))"
        )
    date_col = spec.date_order[0] if spec.date_order else None
    live = current_rows(parent, (date_col,) if date_col else (), keys)
    pdate = _q(date_col) if date_col else "null"
    return f"(select {_q(key)}, {pdate} as _pdate from {live})"


def delta_sql(spec: ExtractFile, scoped: bool = False) -> str:
    """This run's raw rows of one file with the relational facts the checks need.

    References are judged only for rows that are the current live version of their id, as
    ingest judges them after all of the run's extracts are applied. Rows come in no order
    (sorting 10M wide rows costs more than the checks): first failing rows are put in file
    order afterwards. Copies per file and current versions are hash aggregates, not window
    functions (a sort of every row), and only ids with more than one row are joined back: a
    row whose id has no other row is its id's only copy and its current version.

    Only rows extracted on or after the night's first extract date can be a later version of
    a night's row (versions order by extract date first), so older nights' rows are never read
    for that (DuckDB skips their row groups). scoped: the night is a small part of the table
    (a delta night), so parents are looked up only for the keys the night's rows name; on a
    first night every key is named and the lookup would cost more than it saves.
    """
    idc, table = _q(spec.id_column), f"raw.{spec.entity}"
    cols = ", ".join(f"r.{_q(c)}" for c in spec.column_names)
    lineage = ", ".join(f"r.{c}" for c in LINEAGE)
    night = "_run_id = $run_id"
    multi = f"""select {idc}, max({_version()}) as v from {table}
        where _extract_date >= (select min(_extract_date) from {table} where {night})
        group by {idc} having count(*) > 1"""
    rel = _parent_relation(spec, scoped)
    if rel:
        key = _q(spec.parent[1])
        judged = (
            f"(m.{idc} is null or m.v = {_version('r.')}) "
            "and coalesce(lower(r.record_status), '') <> 'deleted'"
        )
        parent_cols = (
            f"case when {judged} then p.{key} is not null end as _parent_found, "
            f"case when {judged} then p._pdate end::varchar as _parent_date"
        )
        joins = f"""left join multi m on r.{idc} = m.{idc}
        left join {rel} p on r.{key} = p.{key}"""
    else:
        joins = ""
        parent_cols = "null::boolean as _parent_found, null::varchar as _parent_date"
    return f"""with multi as materialized ({multi})
        select {cols}, {lineage}, coalesce(c.n, 1) as _copies_in_file, {parent_cols}
        from {table} r
        left join (select _source_file, {idc}, count(*)::bigint as n from {table}
                   where {night} and {idc} in (select {idc} from multi)
                   group by all having count(*) > 1) c
            on r._source_file = c._source_file and r.{idc} = c.{idc}
        {joins}
        where r.{night}
    """


def night_share(con: duckdb.DuckDBPyConnection, entity: str, run_id: str) -> tuple[int, int]:
    """(rows this run loaded, all rows) of one raw table."""
    return con.execute(
        f"select count(*) filter (where _run_id = ?), count(*) from raw.{entity}", [run_id]
    ).fetchall()[0]


def is_small_night(loaded: int, total: int) -> bool:
    """A delta night: worth looking up only the ids it names (see delta_sql)."""
    return 0 < loaded * 4 < total


def delta_chunks(
    con: duckdb.DuckDBPyConnection, run_id: str, spec: ExtractFile, chunk_rows: int = CHUNK_ROWS
) -> Iterator[pl.DataFrame]:
    """This run's rows of one file as polars frames of at most chunk_rows rows.

    A file without rows this run yields nothing, and its query (whose parent relations are
    whole-table aggregates) is not run at all.
    """
    loaded, total = night_share(con, spec.entity, run_id)
    if not loaded:
        return
    sql = delta_sql(spec, scoped=is_small_night(loaded, total))
    reader = con.sql(sql, params={"run_id": run_id}).to_arrow_reader(chunk_rows)
    pending, size = [], 0
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        if size >= chunk_rows:
            yield with_dates(pl.from_arrow(_table(pending)), spec)
            pending, size = [], 0
    if pending:
        yield with_dates(pl.from_arrow(_table(pending)), spec)


def _table(batches):
    import pyarrow as pa_arrow

    return pa_arrow.Table.from_batches(batches)


def declared_checks(schema: pa.DataFrameSchema) -> list[tuple[str | None, str]]:
    """(column, check name) of every explicit check, so passes are recorded too."""
    found = []
    for name, col in schema.columns.items():
        found += [(name, chk.name) for chk in col.checks]
        if not col.nullable:
            found.append((name, "not_nullable"))
        if col.unique:
            found.append((name, "field_uniqueness"))
    found += [(None, chk.name) for chk in schema.checks]
    return found


def category_of(check: str) -> str:
    """Kahn et al. category of a check; named cross-column rules are plausibility checks."""
    if check in COMPLETENESS:
        return "completeness"
    if check in CONFORMANCE or check.startswith("dtype"):
        return "conformance"
    return "plausibility"


def failing_by_check(exc: Exception, schema_name: str | None = None) -> dict:
    """{(column, check): {rows, index}} from pandera's failure cases (values not kept)."""
    cases = getattr(exc, "failure_cases", None)
    if cases is None:
        return {(None, "schema"): {"rows": None, "index": [], "message": str(exc)[:300]}}
    if not isinstance(cases, pl.DataFrame):
        cases = pl.from_pandas(cases)
    grouped = cases.group_by(["column", "check"], maintain_order=True).agg(
        pl.col("index").drop_nulls().unique().sort().alias("index"),
        pl.len().alias("n"),
    )
    out = {}
    for column, check, index, n in grouped.iter_rows():
        column = column if column not in ("", None, schema_name) else None
        out[(column, _check_label(check))] = {
            "rows": len(index) if index else None,
            "index": index,
            "message": None if index else f"{n} schema failure(s)",
        }
    return out


def _check_label(check: str) -> str:
    """pandera names builtin checks with their arguments; keep the check's own name."""
    return str(check).split("(", 1)[0]


def validate_frames(
    schema: pa.DataFrameSchema,
    frames: Iterator[pl.DataFrame] | list[pl.DataFrame],
    target: str,
    severity: str = "fatal",
) -> list[CheckResult]:
    """Validate frames lazily (all failures in one pass) and return one result per check."""
    counts: dict[tuple[str | None, str], dict] = {
        key: {"rows": 0, "where": []} for key in declared_checks(schema)
    }
    total = 0
    for frame in frames:
        total += frame.height
        try:
            schema.validate(frame, lazy=True)
        except (pa.errors.SchemaErrors, pa.errors.SchemaError) as exc:
            for key, fail in failing_by_check(exc, schema.name).items():
                entry = counts.setdefault(key, {"rows": 0, "where": []})
                if fail["rows"] is None:
                    entry["rows"] = None
                    entry["message"] = fail["message"]
                elif entry["rows"] is not None:
                    entry["rows"] += fail["rows"]
                entry["where"] = _first_in_file_order(entry["where"], frame, fail["index"])
    results = []
    for (column, check), entry in counts.items():
        name = f"{target}.{column}:{check}" if column else f"{target}:{check}"
        details = {"first_failing_rows": _where(entry["where"])} if entry["where"] else {}
        if entry.get("message"):
            details["message"] = entry["message"]
        results.append(
            CheckResult(
                check_name=name,
                tool="pandera",
                category=category_of(check),
                severity=severity,
                threshold=0.0,
                failing_rows=entry["rows"],
                checked_rows=total,
                status="failed" if entry["rows"] is None else None,
                target=target,
                details=details,
            )
        )
    return results


def _first_in_file_order(
    found: list[tuple], frame: pl.DataFrame, index: list[int], keep: int = 5
) -> list[tuple]:
    """The first `keep` failing rows in file order, as (file, line) or ("", row number)."""
    if not index:
        return found
    if "_source_file" not in frame.columns:
        rows = [("", i) for i in index[:keep]]
    else:
        rows = (
            frame.select("_source_file", "_source_line")[index]
            .sort("_source_file", "_source_line")
            .head(keep)
            .rows()
        )
    return sorted(found + rows)[:keep]


def _where(found: list[tuple]) -> list[str]:
    """Failing rows named by lineage (file and line), never by their values."""
    return [f"{f}:{line}" if f else f"row {line}" for f, line in found]


def check_extracts(
    con: duckdb.DuckDBPyConnection, run_id: str, chunk_rows: int = CHUNK_ROWS
) -> list[CheckResult]:
    """Conformance of every raw row this run loaded; a run that loaded nothing is n/a."""
    results = []
    for spec in FILES:
        target = f"raw.{spec.entity}"
        results += validate_frames(
            SCHEMAS[spec.entity], delta_chunks(con, run_id, spec, chunk_rows), target
        )
    for res in results:
        if res.checked_rows == 0:
            res.status = "not_applicable"
    return results


def check_marts(con: duckdb.DuckDBPyConnection) -> list[CheckResult]:
    """The fixed marts against validate.MART_SCHEMAS, every check recorded (pass or fail)."""
    from cryoreg.validate import MART_SCHEMAS

    results = []
    for table, schema in MART_SCHEMAS.items():
        frame = pl.from_arrow(con.sql(_mart_sql(con, table, schema)).to_arrow_table())
        results += validate_frames(schema, [frame], f"marts.{table}")
    return results


def _mart_sql(con: duckdb.DuckDBPyConnection, table: str, schema: pa.DataFrameSchema) -> str:
    """Only the columns the (non-strict) schema names: a missing one still fails in pandera."""
    present = {
        name
        for (name,) in con.execute(
            "select column_name from information_schema.columns "
            "where table_schema = 'marts' and table_name = ?",
            [table],
        ).fetchall()
    }
    if schema.strict or not present:
        return f"select * from marts.{table}"
    wanted = [c for c in schema.columns if c in present]
    return f"select {', '.join(_q(c) for c in wanted) or '*'} from marts.{table}"
