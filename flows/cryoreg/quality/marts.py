"""Contracts: pandera (polars) schemas of the frames that leave the warehouse for Python.

The marts' typed schema (validate.MART_SCHEMAS) is checked on every mart each night, as the
frames the analysis reads travel through Arrow into polars; every declared check is recorded
in audit.check_results, passed or not. Row conformance of the extracts is the dbt project's
(staging), never checked again here.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pandera.polars as pa
import polars as pl

from cryoreg.quality.checks import CheckResult

COMPLETENESS = {"required", "not_nullable"}
CONFORMANCE = {
    "iso_date",
    "code",
    "integer",
    "number",
    "range",
    "field_uniqueness",
    "str_matches",
    "isin",
    "column_in_dataframe",
    "schema",
}


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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


def check_marts(con: duckdb.DuckDBPyConnection) -> list[CheckResult]:
    """The fixed marts against validate.MART_SCHEMAS, every check recorded (pass or fail)."""
    from cryoreg.quality.mart_schemas import MART_SCHEMAS

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
