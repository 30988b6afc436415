"""The ledger's bookkeeping in the store: its tables, what became of each run, the load log.

A run's rows count only once it has published (raw.run_events): a night that fails or is
killed leaves rows nothing derives from, and its folders load again when fixed.
"""

from __future__ import annotations

import duckdb

from cryoreg.contract import FILES
from cryoreg.ingest.folders import Extract, RegistryInputError


def ident(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def ensure_store(con, spark: bool = False) -> None:
    """Create the ledger (raw.*), the run log and the load log on first use (in the DuckDB
    store, or on Spark as Parquet tables), and the store's audit tables."""
    text = "string" if spark else "varchar"
    quote = (lambda name: f"`{name}`") if spark else ident
    for schema in ("raw", "audit"):
        con.execute(f"create schema if not exists {schema}")
    for spec in FILES:
        cols = ", ".join(f"{quote(c)} {text}" for c in spec.column_names)
        con.execute(
            f"create table if not exists raw.{spec.entity} ({cols}, _extract_date date, "
            f"_source_file {text}, _source_line bigint, _run_id {text}, _loaded_at timestamp, "
            f"_raw_text {text}, _read_error {text})"
        )
        if not spark:
            for added in ("_raw_text", "_read_error"):  # a ledger from before malformed lines
                con.execute(
                    f"alter table raw.{spec.entity} add column if not exists {added} varchar"
                )
    con.execute(
        f"""create table if not exists raw.run_events (
            run_id {text}, event {text}, event_at timestamp)"""
    )
    con.execute(
        f"""create table if not exists audit.load_log (
            extract {text}, content_hash {text}, run_id {text}, loaded_at timestamp)"""
    )
    if not spark:
        ensure_audit(con)


def ensure_audit(con: duckdb.DuckDBPyConnection) -> None:
    """The store's own audit tables (file accounting), on either engine kept in DuckDB."""
    con.execute("create schema if not exists audit")
    con.execute(
        """create table if not exists audit.file_accounting (
            run_id varchar, extract varchar, file varchar, rows_read bigint,
            rows_loaded bigint, rows_quarantined bigint, unknown_columns varchar[])"""
    )


def record_event(con: duckdb.DuckDBPyConnection, run_id: str, event: str) -> None:
    """Append what became of a run to raw.run_events (started, published, failed)."""
    con.execute("insert into raw.run_events values (?, ?, current_timestamp)", [run_id, event])


def begin_run(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """Mark runs that started and never ended (killed) abandoned, then start this one.

    Runs hold the warehouse's lock from start to end, so no other run is in progress.
    """
    con.execute(
        """insert into raw.run_events
        select run_id, 'abandoned', current_timestamp from raw.run_events
        group by run_id having count(*) filter (where event <> 'started') = 0"""
    )
    record_event(con, run_id, "started")


def previous_run_ended_well(con: duckdb.DuckDBPyConnection, run_id: str) -> bool:
    """The run before this one published (or had nothing new): what is published is what a
    build now would give, unless new folders arrived."""
    last = con.execute(
        """select event from raw.run_events where run_id <> ? and event <> 'started'
        order by event_at desc limit 1""",
        [run_id],
    ).fetchone()
    return last is not None and last[0] in ("published", "nothing_new")


PUBLISHED_LOADS = """
    select l.extract, l.content_hash from audit.load_log l
    where l.run_id in (select run_id from raw.run_events where event = 'published')"""


def check_load_log(con: duckdb.DuckDBPyConnection, extracts: list[Extract]) -> set[str]:
    """Names loaded by published runs; a loaded folder whose content changed is an error."""
    seen = dict(con.execute(PUBLISHED_LOADS).fetchall())
    for ext in extracts:
        if ext.name in seen and seen[ext.name] != ext.content_hash:
            raise RegistryInputError(
                f"{ext.path}: extract changed after it was loaded "
                f"(hash {ext.content_hash[:12]} vs {seen[ext.name][:12]}); refusing to reload"
            )
    return set(seen)
