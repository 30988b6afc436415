"""Publish: the analysts' file and the run's outputs appear all at once, or not at all.

The published file is built anew every night from the registry's store: the marts, the
audit tables and the de-identified quarantine, nothing else (no ledger, no staging, no
identifier). It is written under a per-run name beside the published file and moved over it
with one os.replace, atomic on one file system: open readers keep the old inode, and no one
sees a half-built warehouse.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb

from cryoreg.config import RunPaths

# What the analysts' file holds: (schema, table in the store, table in the published file)
PUBLISHED_TABLES = (
    ("marts", "fct_tumor", "fct_tumor"),
    ("marts", "fct_procedure", "fct_procedure"),
    ("marts", "dim_patient", "dim_patient"),
    ("marts", "fct_adverse_event", "fct_adverse_event"),
    ("marts", "fct_tumor_attrition", "fct_tumor_attrition"),
    ("quarantine", "rejected_rows_deidentified", "rejected_rows"),
    ("audit", "check_results", "check_results"),
    ("audit", "file_accounting", "file_accounting"),
    ("audit", "load_log", "load_log"),
    ("audit", "night_metrics", "night_metrics"),
)
AUDIT = "audit"  # the schema of the night's checks and accounting
# the folder of out/ that keeps every night's outputs: a night adds to it, never replaces it
NIGHTS = "nights"


def open_store(paths: RunPaths) -> duckdb.DuckDBPyConnection:
    """The registry's store, created owner-only (0600) on first use."""
    store = paths.store
    store.parent.mkdir(parents=True, exist_ok=True)
    old = os.umask(0o077)  # DuckDB creates the file: owner-only from its first byte
    try:
        con = duckdb.connect(str(store))
    finally:
        os.umask(old)
    os.chmod(store, 0o600)
    con.execute("set enable_progress_bar = false")
    return con


class DiskSpaceError(RuntimeError):
    """Not enough free space for a file a run must write: fail before writing it."""


def ensure_free_space(folder: Path, needed: int, what: str) -> None:
    """Fail early, naming the space needed, rather than halfway through writing a file."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskSpaceError(
            f"{folder}: {free / 2**20:,.0f} MiB free, {what} needs about "
            f"{needed / 2**20:,.0f} MiB; free some space and run again"
        )


def build_candidate(paths: RunPaths, run_id: str) -> Path:
    """Write the analysts' file for this run from the store, under the run's own name: the
    marts and the quarantine, which the statistics read while the night's checks run."""
    candidate = paths.candidate(run_id)
    # the new file is about as large as the last one (or a quarter of the store, the first time)
    last = paths.warehouse.stat().st_size if paths.warehouse.exists() else 0
    guess = last or paths.store.stat().st_size // 4
    ensure_free_space(candidate.parent, int(guess * 1.2) + 16 * 2**20, "the published file")
    discard(candidate)
    _copy_tables(paths, candidate, [t for t in PUBLISHED_TABLES if t[0] != AUDIT])
    return candidate


def complete_candidate(paths: RunPaths, candidate: Path) -> None:
    """Add the audit tables to the run's file once the night's checks are recorded."""
    _copy_tables(paths, candidate, [t for t in PUBLISHED_TABLES if t[0] == AUDIT])


def _copy_tables(paths: RunPaths, candidate: Path, tables: list[tuple[str, str, str]]) -> None:
    """Copy store tables into the run's file, streamed as Arrow from the store's own connection.

    The night's checks use the store meanwhile, in this process; a DuckDB file is open in one
    database of a process at a time, and attaching the run's file to the store's would keep it
    in use until every transaction that listed the store's databases had ended.
    """
    with open_store(paths) as store, duckdb.connect(str(candidate)) as con:
        for schema in sorted({s for s, _, _ in tables}):
            con.execute(f"create schema if not exists {schema}")
        for schema, source, target in tables:
            con.register("rows_", store.sql(f"select * from {schema}.{source}").to_arrow_reader())
            try:
                con.execute(f"create table {schema}.{target} as select * from rows_")
            finally:
                con.unregister("rows_")


def publish(paths: RunPaths, candidate: Path, staged_out: Path) -> list[Path]:
    """Swap in the new warehouse, then move the run's outputs into OUT; returns their paths.

    The outputs replace the last night's, except nights/: the night's own folder is added to it
    (before the index that links it), and the earlier nights' stay."""
    os.replace(candidate, paths.warehouse)
    published = []
    for item in sorted(staged_out.iterdir()):
        if item.name != NIGHTS:
            published.append(_replace(item, paths.out / item.name))
            continue
        history = paths.out / NIGHTS
        history.mkdir(exist_ok=True)
        for kept in sorted(item.iterdir(), key=lambda p: p.name == "index.html"):
            published.append(_replace(kept, history / kept.name))
        item.rmdir()
    staged_out.rmdir()
    return published


def _replace(item: Path, target: Path) -> Path:
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(item, target)
    return target


def discard(candidate: Path) -> None:
    """Remove a run's own candidate file (and its write-ahead log)."""
    for leftover in (candidate, candidate.with_name(candidate.name + ".wal")):
        leftover.unlink(missing_ok=True)


def discard_leftovers(paths: RunPaths) -> None:
    """Remove what killed runs left (their candidates and staged outputs). Called with the
    warehouse's run lock held, so no other run is building."""
    for leftover in paths.warehouse.parent.glob(f".{paths.warehouse.name}.*.building*"):
        leftover.unlink(missing_ok=True)
    for leftover in paths.out.glob(".run-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def discard_staged_out(staged_out: Path) -> None:
    shutil.rmtree(staged_out, ignore_errors=True)
